"""Which deep-learning framework runs: OneFlow (the original engine of this work) or PyTorch.

Every other module asks this one for the framework (`backend.framework()`) and never imports
`oneflow` or `torch` itself, so one `modeling.py` serves both. The choice, first match wins:
`backend.use(name)`, a `--backend NAME` argument on the command line, the `BACKEND` environment
variable, then `oneflow`.

OneFlow 0.9.0's binary links cuDNN 8 and cuBLAS 11 even on a CPU. Rather than asking users to set
LD_LIBRARY_PATH, we load those libraries from the `nvidia-*-cu11` wheels in the venv, globally,
before OneFlow is imported.

OneFlow 0.9.0 on a CPU, as it comes, runs BERT several times slower than PyTorch; `oneflow_cpu.py`
applies its CPU settings before OneFlow is imported (TINYBERT_ONEFLOW_CPU=none leaves OneFlow as it comes).
"""
import argparse
import atexit
import contextlib
import ctypes
import glob
import importlib
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import threading

import numpy as np

import oneflow_cpu

BACKENDS = ("oneflow", "torch")
DEFAULT = "oneflow"

_chosen = None      # set by use()
_frameworks = {}    # name -> imported module


class BackendError(ValueError):
    pass


class BackendUnavailable(ImportError):
    """The backend asked for (or the default) cannot be imported in this Python."""


def _unavailable_hook(kind, error, tb, previous=sys.excepthook):
    """An uncaught BackendUnavailable ends the script as cli.run ends a user error: one line, status 2."""
    import cli
    if not issubclass(kind, BackendUnavailable) or cli.debug_wanted(sys.argv):
        return previous(kind, error, tb)
    print(f"error: {cli.error_line(error)}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(cli.EXIT_USER_ERROR)


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


ONEFLOW_CPU_ENV = oneflow_cpu.ENV
oneflow_cpu_applied = oneflow_cpu.applied  # what the OneFlow CPU settings did (logs, tests, benches)


def _tune_oneflow_cpu():
    try:
        oneflow_cpu.tune()
    except oneflow_cpu.BadSetting as e:
        raise BackendError(str(e)) from None


@contextlib.contextmanager
def _keep_sigint_handler():
    """OneFlow's import puts a handler of its own on SIGINT, which ends the process at Ctrl-C without a word;
    Python's, put back, raises KeyboardInterrupt, which training.fit turns into the step reached and the
    command to continue."""
    main = threading.current_thread() is threading.main_thread()  # only the main thread may set handlers
    previous = signal.getsignal(signal.SIGINT) if main else None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


# OneFlow 0.9's CUDA stream turns on TF32 tensor-core math for every fp32 matrix product on Ampere and
# later unless this variable says no (liboneflow reads it, default true). TF32 keeps 10 bits of mantissa:
# OneFlow's GPU logits would then differ from torch's (which leaves TF32 off for matrix products) and
# from the CPU's by about 1e-3 relative. fp32 means fp32 here; a user who wants the speed sets it to 1.
ONEFLOW_GPU_ENV = {"ONEFLOW_EP_CUDA_ENABLE_TF32_EXECUTION": "0"}


def _oneflow_gpu_defaults():
    """Apply ONEFLOW_GPU_ENV before `import oneflow` (a value the user set wins); returns what is in force."""
    for key, value in ONEFLOW_GPU_ENV.items():
        os.environ.setdefault(key, value)
    return {key: os.environ[key] for key in ONEFLOW_GPU_ENV}


def framework(backend_name=None):
    """The framework module (`oneflow` or `torch`), imported on first use."""
    backend_name = _check(backend_name or name())
    if backend_name not in _frameworks:
        if backend_name == "oneflow":
            _preload_oneflow_libraries()
            _oneflow_gpu_defaults()
            _tune_oneflow_cpu()
            try:
                with _keep_sigint_handler():
                    _frameworks[backend_name] = importlib.import_module("oneflow")
            except ImportError as e:
                # raised while a stage script imports its modules, before cli.run can catch it: the hook
                # turns it into one line there too
                sys.excepthook = _unavailable_hook
                raise BackendUnavailable(
                    f"could not import oneflow ({e}). OneFlow 0.9.0 needs Python <= 3.10, numpy < 2 and the "
                    "nvidia-cudnn-cu11 / nvidia-cublas-cu11 wheels: run `bash setup_env.sh` and use .venv/bin/python, "
                    "or pass --backend torch (BACKEND=torch for the run_*.sh wrappers)") from e
        else:
            _frameworks[backend_name] = importlib.import_module("torch")
    return _frameworks[backend_name]


def cuda_rng(flow):
    """(get, set) of the current CUDA device's random generator state as a uint8 numpy array, or None
    where this process does not use CUDA. PyTorch's dropout on a GPU draws from it (not from the CPU
    generator). OneFlow 0.9's nn.Dropout does not: each module draws from a flow.Generator() of its
    own, which no checkpoint saves, so a resumed OneFlow run with dropout differs on any device.

    PyTorch: only once CUDA is initialised (a model or tensor was put on a GPU). Asking for the state
    sooner would create a CUDA context in a --no-gpu run or a gloo rank on a GPU machine, which fails
    on a GPU in exclusive-process mode that another process holds."""
    if not flow.cuda.is_available():
        return None
    if flow.__name__ == "torch" and not flow.cuda.is_initialized():
        return None
    if flow.__name__ == "oneflow":  # 0.9 has no oneflow.cuda.get_rng_state
        def generator():
            return flow._oneflow_internal.default_generator(f"cuda:{flow.cuda.current_device()}")
        return (lambda: generator().get_state().numpy(),
                lambda state: generator().set_state(flow.from_numpy(np.array(state))))
    return (lambda: flow.cuda.get_rng_state().numpy(),
            lambda state: flow.cuda.set_rng_state(flow.from_numpy(np.array(state))))


def attention_scores(flow):
    """A function (q, k, scale) -> q @ k^T * scale for [B, heads, L, head_size] tensors, with autograd,
    the fastest way the framework has. OneFlow 0.9's matmul copies k^T into a contiguous tensor first,
    and on a CPU that copy (the innermost dimension moves) is most of the product's time; its
    batch_matmul reads k transposed and applies the scale itself (bench/bench_ops.py measures both).
    PyTorch's matmul takes the view as it is."""
    if flow.__name__ != "oneflow":
        return lambda q, k, scale: flow.matmul(q, k.transpose(-1, -2)) * scale

    def oneflow_scores(q, k, scale):
        b, heads, length, size = q.shape
        flat = (b * heads, length, size)
        scores = flow._C.batch_matmul(q.reshape(flat), k.reshape(flat), transpose_a=False, transpose_b=True,
                                      alpha=scale)
        return scores.reshape(b, heads, length, k.shape[2])
    return oneflow_scores


def device(gpu=True):
    """'cuda' when a GPU is visible to the framework and wanted, else 'cpu' (saying on stderr why, when
    the machine has an NVIDIA GPU that the framework cannot use: the run would otherwise quietly train
    on the CPU)."""
    flow = framework()
    if gpu and flow.cuda.is_available():
        warn_oneflow_gpu(flow)
        return "cuda"
    if gpu:
        reason = unusable_gpu(flow)
        if reason:
            print(f"warning: running on the CPU: {reason}", file=sys.stderr)
    return "cpu"


# ----------------------------------------------------------------------------------------------
# A GPU the framework cannot use
# ----------------------------------------------------------------------------------------------
# The oldest Linux driver that runs programs built with each CUDA major version (NVIDIA's CUDA
# compatibility table, "minor version compatibility": any 12.x build runs on a 12.0-era driver).
CUDA_MIN_DRIVER = {11: "450.80.02", 12: "525.60.13", 13: "580.65.06"}
TORCH_BUILDS = "https://download.pytorch.org/whl"  # one index per CUDA build: .../cu126, .../cpu


def nvidia_smi_gpus():
    """[(name, driver version)] of the GPUs `nvidia-smi` lists; [] where it is missing or fails."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        done = subprocess.run([smi, "--query-gpu=name,driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return []
    if done.returncode:
        return []
    return [tuple(part.strip() for part in line.rsplit(",", 1)) for line in done.stdout.splitlines() if "," in line]


def _version(text):
    return tuple(int(part) for part in text.split(".") if part.isdigit())


def _build_for(driver):
    """The newest CUDA major version a driver runs, as (major, pip index URL); None below CUDA 11's."""
    fits = [major for major, least in CUDA_MIN_DRIVER.items() if _version(driver) >= _version(least)]
    if not fits:
        return None
    major = max(fits)
    return major, {11: f"{TORCH_BUILDS}/cu118", 12: f"{TORCH_BUILDS}/cu126", 13: f"{TORCH_BUILDS}/cu130"}[major]


def unusable_gpu(flow, gpus=None):
    """One line on why `flow` sees no GPU although nvidia-smi lists one (`gpus`, default: ask it), with
    what to do; None where the framework sees a GPU or the machine shows none."""
    if flow.cuda.is_available():
        return None
    gpus = nvidia_smi_gpus() if gpus is None else gpus
    if not gpus:
        return None
    gpu, driver = gpus[0]
    version = getattr(flow, "__version__", "?")
    built = getattr(getattr(flow, "version", None), "cuda", None)
    seen = f"nvidia-smi lists {gpu} (driver {driver}) but {flow.__name__} {version}"
    build = _build_for(driver)
    install = (f"install a torch built for CUDA {build[0]}: pip install torch --index-url {build[1]} (or TORCH_SPEC, "
               "docs/gpu.md)" if build else "update the NVIDIA driver (docs/gpu.md)")
    if flow.__name__ != "torch":
        return f"{seen} sees no GPU; use --backend torch, or see docs/gpu.md"
    if built is None:
        return f"{seen} is a CPU-only build; {install}"
    needed = CUDA_MIN_DRIVER.get(_version(built)[0])
    if needed and _version(driver) < _version(needed):
        return f"{seen} is built for CUDA {built}, which needs driver >= {needed}; update the driver or {install}"
    return (f"{seen} (CUDA {built}) sees no GPU although the driver is new enough: check CUDA_VISIBLE_DEVICES "
            f"({os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}) and this container's access to /dev/nvidia*")


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


# ----------------------------------------------------------------------------------------------
# Data-parallel training under a launcher (torchrun, or `python -m oneflow.distributed.launch`)
# ----------------------------------------------------------------------------------------------
class Distributed:
    """This process's place in a data-parallel job: rank, world size, device, and the collectives the
    training loop needs. One process without a launcher is rank 0 of a world of 1, and every
    collective is then a no-op."""

    def __init__(self, flow, rank=0, world=1, device_index=0):
        # device_index: this process's GPU (gpu_index), where it trains on one
        self.flow, self.rank, self.world, self.device_index = flow, rank, world, device_index

    @property
    def is_main(self):
        """Rank 0 alone evaluates, logs and saves."""
        return self.rank == 0

    def wrap(self, model):
        """The model every rank trains through (its gradients averaged over ranks); saving and
        evaluation use the unwrapped model."""
        if self.world == 1:
            return model
        ddp = self.flow.nn.parallel.DistributedDataParallel
        if self.flow.__name__ == "torch":
            on_gpu = next(model.parameters()).is_cuda
            # stage 1 leaves the classifier out of its loss, stage 2 fit_dense: parameters without gradients
            return ddp(model, device_ids=[self.device_index] if on_gpu else None, find_unused_parameters=True)
        return _flat_outputs(self.flow, model, ddp)

    def all_gather(self, array):
        """[array of rank 0, array of rank 1, ...]; arrays of one shape and dtype on every rank."""
        if self.world == 1:
            return [array]
        flow = self.flow
        device = "cuda" if flow.__name__ == "torch" and flow.distributed.get_backend() == "nccl" else "cpu"
        local = flow.tensor(np.ascontiguousarray(array), device=device)
        gathered = [flow.zeros_like(local) for _ in range(self.world)]
        if flow.__name__ == "torch":
            flow.distributed.all_gather(gathered, local)
        else:
            flow.comm.all_gather(gathered, local)
        return [g.cpu().numpy() for g in gathered]

    def barrier(self):
        if self.world == 1:
            return
        if self.flow.__name__ == "torch":
            self.flow.distributed.barrier()
        else:
            self.flow.comm.barrier()


def _flat_outputs(flow, model, ddp):
    """OneFlow 0.9's DistributedDataParallel accepts only a flat tuple of tensors as a module's output;
    the models return (logits, [scores per layer], [hidden states]), with None for skipped scores. Run
    the model under DDP through a module that flattens its output, and rebuild it outside."""
    def flatten(value, flat):
        if isinstance(value, (list, tuple)):
            return type(value), [flatten(v, flat) for v in value]
        if value is None:
            return None
        flat.append(value)
        return len(flat) - 1

    def rebuild(shape, flat):
        if shape is None or isinstance(shape, int):
            return None if shape is None else flat[shape]
        kind, parts = shape
        items = [rebuild(p, flat) for p in parts]
        return kind(*items) if hasattr(kind, "_fields") else kind(items)  # a namedtuple, or a list/tuple

    last = {}  # the structure of the latest output (kept off the module: DDP hooks see its attributes)

    class Flat(flow.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *args, **kwargs):
            flat = []
            last["shape"] = flatten(self.model(*args, **kwargs), flat)
            return tuple(flat)

    wrapped = ddp(Flat())

    def call(*args, **kwargs):
        flat = list(wrapped(*args, **kwargs))
        return rebuild(last["shape"], flat)
    return call


def distributed(gpu=True, timeout_s=1800):
    """(Distributed, device) for this process: under torchrun or OneFlow's launcher (WORLD_SIZE > 1)
    joins the job (NCCL on GPUs, gloo on CPUs for torch; OneFlow reads its launcher's environment);
    otherwise one process. A rank that dies ends the job: the launcher stops the others, and a
    collective waiting for a lost machine gives up after `timeout_s`."""
    flow = framework()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Distributed(flow), device(gpu)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    on_gpu = gpu and flow.cuda.is_available()
    index = gpu_index(local_rank, flow.cuda.device_count()) if on_gpu else local_rank
    dev = f"cuda:{index}" if on_gpu else "cpu"
    if on_gpu:
        warn_oneflow_gpu(flow, index)
    if flow.__name__ == "torch":
        import datetime
        if on_gpu:
            flow.cuda.set_device(index)
        if not flow.distributed.is_initialized():
            flow.distributed.init_process_group("nccl" if on_gpu else "gloo",
                                                timeout=datetime.timedelta(seconds=timeout_s))
            atexit.register(_leave_process_group, flow)
    elif flow.env.get_world_size() != world:
        raise BackendError(f"WORLD_SIZE={world} but OneFlow sees {flow.env.get_world_size()} processes: "
                           "start OneFlow jobs with `python -m oneflow.distributed.launch`")
    return Distributed(flow, rank, world, index), dev


def gpu_index(local_rank, count):
    """The GPU this process trains on. torchrun gives each process its LOCAL_RANK and leaves every GPU
    visible; a launcher that binds one GPU per process through CUDA_VISIBLE_DEVICES (SLURM, Kubernetes)
    leaves each process one GPU, index 0, whatever its local rank."""
    if local_rank < count:
        return local_rank
    if count == 1:
        return 0
    raise BackendError(f"LOCAL_RANK={local_rank} but this process sees {count} GPUs (CUDA_VISIBLE_DEVICES="
                       f"{os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}): give each process its own GPU, or all")


def _leave_process_group(flow):
    """At exit: NCCL warns of leaked resources, and may hang the exit, when the group is not destroyed."""
    if flow.distributed.is_initialized():
        flow.distributed.destroy_process_group()


# ----------------------------------------------------------------------------------------------
# OneFlow 0.9 on GPUs newer than its binary
# ----------------------------------------------------------------------------------------------
# The compute capabilities OneFlow 0.9.0's PyPI wheel (CUDA 11.7) has machine code for: the cubins in
# the .nv_fatbin sections of liboneflow, libcutlass and its NCCL 2.12. None of the three carries the
# PTX that a driver could compile for a newer GPU (only the fused fp16 attention kernels hold their own
# sm_80/86/89 code). A cubin runs on its major version from its minor up: 8.6 code serves an 8.9 GPU.
ONEFLOW_09_ARCHS = ((6, 0), (6, 1), (7, 0), (7, 5), (8, 0), (8, 6))
_warned_gpus = set()


def oneflow_gpu_advice(capability, gpu_name="this GPU", oneflow_version="0.9.0"):
    """What to expect from OneFlow on a GPU of compute `capability` (major, minor) and what to set;
    None where the OneFlow 0.9.0 wheel has machine code for it."""
    major, minor = capability
    oneflow_version = oneflow_version.split("+")[0]  # 0.9.0+cu117 is the 0.9.0 wheel built for CUDA 11.7
    if oneflow_version == "0.9.0" and any(m == major and n <= minor for m, n in ONEFLOW_09_ARCHS):
        return None
    built = ", ".join(f"{m}.{n}" for m, n in ONEFLOW_09_ARCHS)
    if oneflow_version == "0.9.0":
        expect = (f"OneFlow 0.9.0's wheel has machine code for compute capability {built} and no PTX for the "
                  f"driver to compile, so its kernels have nothing to run on {gpu_name} ({major}.{minor}): expect "
                  "'no kernel image is available for execution on the device' at the first GPU operation (OneFlow's "
                  "own warning adds that it may instead hang for a long time).")
    else:
        expect = (f"OneFlow {oneflow_version} may lack machine code for {gpu_name} ({major}.{minor}): if it carries "
                  "PTX, the driver compiles every kernel it loads at the first start, which can take many minutes; "
                  "if not, expect 'no kernel image is available for execution on the device'.")
    return (f"{expect} Use --backend torch (PyTorch's CUDA wheels carry code for this GPU), or a OneFlow built for "
            f"it (CMAKE_CUDA_ARCHITECTURES={major}{minor}). A build that runs from PTX compiles at every start unless "
            "the driver's cache keeps the result: before starting, export CUDA_CACHE_MAXSIZE=4294967296 (4 GiB, the "
            "largest allowed; the default is too small for a framework's kernels, so they are compiled again each "
            "time), CUDA_CACHE_PATH=<a persistent, writable directory> (default ~/.nv/ComputeCache; containers "
            "often lose it) and leave CUDA_CACHE_DISABLE unset; CUDA_MODULE_LOADING=LAZY compiles only the kernels "
            "a run uses instead of all of them at start-up.")


def warn_oneflow_gpu(flow, device_index=0):
    """On OneFlow on CUDA, print oneflow_gpu_advice for the GPU in use, once per GPU and process."""
    if flow.__name__ != "oneflow" or device_index in _warned_gpus or not flow.cuda.is_available():
        return None
    _warned_gpus.add(device_index)
    advice = oneflow_gpu_advice(tuple(flow.cuda.get_device_capability(device_index)),
                                flow.cuda.get_device_name(device_index), getattr(flow, "__version__", "0.9.0"))
    if advice:
        print(f"warning: {advice}", file=sys.stderr)
    return advice
