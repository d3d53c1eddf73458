"""Which deep-learning framework runs: OneFlow (the original engine of this work) or PyTorch.

Every other module asks this one for the framework (`backend.framework()`) and never imports
`oneflow` or `torch` itself, so one `modeling.py` serves both. The choice, first match wins:
`backend.use(name)`, a `--backend NAME` argument on the command line, the `BACKEND` environment
variable, then `oneflow`.

OneFlow 0.9.0's binary links cuDNN 8 and cuBLAS 11 even on a CPU. Rather than asking users to set
LD_LIBRARY_PATH, we load those libraries from the `nvidia-*-cu11` wheels in the venv, globally,
before OneFlow is imported.
"""
import argparse
import ctypes
import glob
import importlib
import importlib.util
import os
import sys

BACKENDS = ("oneflow", "torch")
DEFAULT = "oneflow"

_chosen = None      # set by use()
_frameworks = {}    # name -> imported module


class BackendError(ValueError):
    pass


def _check(name):
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}: valid backends are {', '.join(BACKENDS)}")
    return name


def _from_argv(argv):
    for i, arg in enumerate(argv):
        if arg == "--backend" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--backend="):
            return arg.split("=", 1)[1]
    return None


def name():
    """The backend in force (see the module docstring for the order of precedence)."""
    if _chosen is not None:
        return _chosen
    return _check(_from_argv(sys.argv[1:]) or os.environ.get("BACKEND") or DEFAULT)


def use(backend_name):
    """Choose the backend for this process; call before importing modeling."""
    global _chosen
    _chosen = _check(backend_name)
    return _chosen


def add_argument(parser: argparse.ArgumentParser):
    """The `--backend` flag every script shares (the value is also read early, at import)."""
    parser.add_argument("--backend", choices=BACKENDS, default=None,
                        help=f"deep-learning framework to run on (default: $BACKEND, else {DEFAULT})")


def check_bound(wanted, flow):
    """Refuse a --backend other than `flow`, the framework the calling module bound at import (a
    script's main(argv) called in-process cannot switch); returns the backend's name."""
    bound = flow.__name__
    if wanted is not None and _check(wanted) != bound:
        raise BackendError(f"--backend {wanted}: this process already runs {bound} (its modules are bound at "
                           f"import); run the script in a new process with --backend {wanted} or BACKEND={wanted}")
    return bound


def _preload_oneflow_libraries():
    """Make OneFlow's cuDNN 8 / cuBLAS 11 dependencies resolvable from the nvidia wheels."""
    try:
        import nvidia  # namespace package of the nvidia-*-cu11 wheels
    except ImportError:
        return
    roots = list(getattr(nvidia, "__path__", []))
    # cublasLt before cublas, cublas before cudnn: each needs the one before it.
    for pattern in ("cublas/lib/libcublasLt.so*", "cublas/lib/libcublas.so*", "cudnn/lib/libcudnn*.so*"):
        for root in roots:
            for path in sorted(glob.glob(os.path.join(root, pattern))):
                try:
                    ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
                except OSError:
                    pass  # a wheel of another CUDA major version; OneFlow's import says what is missing


def framework(backend_name=None):
    """The framework module (`oneflow` or `torch`), imported on first use."""
    backend_name = _check(backend_name or name())
    if backend_name not in _frameworks:
        if backend_name == "oneflow":
            _preload_oneflow_libraries()
            try:
                _frameworks[backend_name] = importlib.import_module("oneflow")
            except ImportError as e:
                raise ImportError(
                    f"could not import oneflow ({e}). OneFlow 0.9.0 needs Python <= 3.10, numpy < 2 and the "
                    "nvidia-cudnn-cu11 / nvidia-cublas-cu11 wheels: run `bash setup_env.sh` and use .venv/bin/python, "
                    "or pass --backend torch") from e
        else:
            _frameworks[backend_name] = importlib.import_module("torch")
    return _frameworks[backend_name]


def device(gpu=True):
    """'cuda' when a GPU is visible to the framework and wanted, else 'cpu'."""
    flow = framework()
    return "cuda" if gpu and flow.cuda.is_available() else "cpu"


def import_for(module_name, backend_name):
    """A fresh copy of one of this project's modules bound to `backend_name`.

    Scripts pick one backend per process; tests compare both in one process with this.
    """
    global _chosen
    backend_name = _check(backend_name)
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), module_name + ".py")
    spec = importlib.util.spec_from_file_location(f"{module_name}__{backend_name}", path)
    module = importlib.util.module_from_spec(spec)
    before = _chosen
    _chosen = backend_name
    try:
        spec.loader.exec_module(module)
    finally:
        _chosen = before
    return module
