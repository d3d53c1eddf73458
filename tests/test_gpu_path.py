"""The GPU path's own checks, on a machine without a GPU: what a first GPU run would otherwise hit
(docs/gpu.md). Stand-ins play the GPU's part: an `nvidia-smi` on PATH, a framework object whose
`cuda` answers as a GPU machine's would. tests/test_gpu.py runs the same paths on a real GPU.
"""
import glob
import importlib.util
import mmap
import os
import subprocess
import sys
import types

import pytest

import backend

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HAVE_ONEFLOW = importlib.util.find_spec("oneflow") is not None


def stand_in(tmp_path, name, script):
    """An executable `name` in tmp_path/bin running the shell `script`; returns PATH with it first."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + script + "\n")
    path.chmod(0o755)
    return f"{bin_dir}{os.pathsep}{os.environ['PATH']}"


def gpu_check(env):
    return subprocess.run(["bash", "bench/gpu_check.sh"], cwd=ROOT, env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=300)


# ----------------------------------------------------------------------------------------------
# bench/gpu_check.sh checks its preconditions and fails loudly
# ----------------------------------------------------------------------------------------------
def test_gpu_check_fails_when_nvidia_smi_lists_a_gpu_torch_cannot_use(tmp_path):
    """A driver 535 machine (CUDA 12 era) with this torch, which sees no GPU here: the check stops with
    torch's CUDA build, the driver that build needs and the build to install instead."""
    import torch
    path = stand_in(tmp_path, "nvidia-smi", 'echo "NVIDIA A100-SXM4-80GB, 535.104.05"')
    done = gpu_check({"PATH": path, "PYTHON": sys.executable})
    assert done.returncode == 1, done.stdout + done.stderr
    failed = [line for line in done.stderr.splitlines() if "FAILED" in line]
    assert len(failed) == 1, done.stderr
    line = failed[0]
    assert "NVIDIA A100-SXM4-80GB (driver 535.104.05)" in line and f"torch {torch.__version__}" in line
    if torch.version.cuda is None:  # the CPU build (CI's torch-only venv)
        assert "is a CPU-only build" in line
    else:
        major = int(torch.version.cuda.split(".")[0])
        assert f"built for CUDA {torch.version.cuda}" in line
        if major >= 13:
            assert "which needs driver >= 580.65.06" in line
    assert "pip install torch --index-url https://download.pytorch.org/whl/cu126" in line  # driver 535 runs CUDA 12
    assert "== 1. GPU tests ==" not in done.stdout  # nothing ran


def test_gpu_check_names_the_packages_its_python_lacks(tmp_path):
    """A Python without site-packages stands in for a bare server's python3."""
    path = stand_in(tmp_path, "bare-python", f'exec "{sys.executable}" -S "$@"')
    done = gpu_check({"PATH": path, "PYTHON": "bare-python"})
    assert done.returncode == 1
    assert "FAILED: no Python with every package the GPU runs need" in done.stderr
    assert "bare-python lacks: torch numpy transformers tokenizers safetensors sklearn scipy tqdm matplotlib" \
        in done.stderr
    assert "requirements-torch.txt" in done.stderr


class FakeFramework:
    """What unusable_gpu reads of a framework: its name, version, CUDA build, and whether it sees a GPU."""

    def __init__(self, cuda_build, sees_gpu=False, name="torch", version="2.14.1"):
        self.__name__, self.__version__ = name, version
        self.version = types.SimpleNamespace(cuda=cuda_build)
        self.cuda = types.SimpleNamespace(is_available=lambda: sees_gpu)


@pytest.mark.parametrize("driver,build,says", [
    ("535.104.05", "13.0", ["built for CUDA 13.0, which needs driver >= 580.65.06", "whl/cu126"]),
    ("470.82.01", "12.6", ["built for CUDA 12.6, which needs driver >= 525.60.13", "whl/cu118"]),
    ("390.157", "12.6", ["needs driver >= 525.60.13", "update the NVIDIA driver"]),
    ("580.95.05", None, ["is a CPU-only build", "whl/cu130"]),
    ("580.95.05", "13.0", ["sees no GPU although the driver is new enough", "CUDA_VISIBLE_DEVICES"]),
])
def test_why_the_framework_sees_no_gpu(driver, build, says):
    reason = backend.unusable_gpu(FakeFramework(build), gpus=[("NVIDIA H100", driver)])
    assert reason.startswith(f"nvidia-smi lists NVIDIA H100 (driver {driver}) but torch 2.14.1")
    for text in says:
        assert text in reason, reason


def test_no_reason_where_the_gpu_is_seen_or_there_is_none():
    assert backend.unusable_gpu(FakeFramework("13.0", sees_gpu=True), gpus=[("NVIDIA H100", "535.104.05")]) is None
    assert backend.unusable_gpu(FakeFramework("13.0"), gpus=[]) is None


def test_a_stage_falling_back_to_the_cpu_says_why(tmp_path, monkeypatch, capsys):
    """--gpu is the default: on a machine whose GPU torch cannot use, the run says so instead of quietly
    training on the CPU."""
    import torch
    if torch.cuda.is_available():
        pytest.skip("this torch sees a GPU")
    monkeypatch.setenv("PATH", stand_in(tmp_path, "nvidia-smi", 'echo "Tesla T4, 470.82.01"'))
    assert backend.device(True) == "cpu"
    err = capsys.readouterr().err
    assert err.startswith("warning: running on the CPU: nvidia-smi lists Tesla T4 (driver 470.82.01)"), err
    assert backend.device(False) == "cpu" and capsys.readouterr().err == ""  # --no-gpu: nothing to say


# ----------------------------------------------------------------------------------------------
# Launchers, random state, OneFlow
# ----------------------------------------------------------------------------------------------
def test_a_process_bound_to_one_gpu_trains_on_it_whatever_its_local_rank():
    assert backend.gpu_index(1, 4) == 1  # torchrun: every GPU visible, one per local rank
    assert backend.gpu_index(3, 1) == 0  # SLURM/Kubernetes: CUDA_VISIBLE_DEVICES leaves this process one
    with pytest.raises(backend.BackendError, match="LOCAL_RANK=2 but this process sees 2 GPUs"):
        backend.gpu_index(2, 2)


def test_the_gpu_generator_is_left_alone_until_cuda_is_in_use():
    """A --no-gpu run on a GPU machine must not create a CUDA context just to save the GPU's random state."""
    saved = []
    cuda = types.SimpleNamespace(is_available=lambda: True, is_initialized=lambda: False,
                                 get_rng_state=lambda: saved.append("get") or types.SimpleNamespace(numpy=lambda: 1))
    fake_torch = types.SimpleNamespace(__name__="torch", cuda=cuda)
    assert backend.cuda_rng(fake_torch) is None
    cuda.is_initialized = lambda: True
    get, _ = backend.cuda_rng(fake_torch)
    assert get() == 1 and saved == ["get"]


def test_oneflow_wheel_with_a_local_version_gets_the_advice_of_its_release():
    """0.9.0+cu117 is the 0.9.0 wheel: no warning on an A100, the 0.9.0 advice on an H100."""
    assert backend.oneflow_gpu_advice((8, 0), oneflow_version="0.9.0+cu117") is None
    assert "OneFlow 0.9.0's wheel has machine code" in backend.oneflow_gpu_advice((9, 0), "H100", "0.9.0+cu117")


def test_oneflow_tf32_is_off_unless_the_user_turns_it_on(monkeypatch):
    name = "ONEFLOW_EP_CUDA_ENABLE_TF32_EXECUTION"
    monkeypatch.delenv(name, raising=False)
    assert backend._oneflow_gpu_defaults() == {name: "0"} and os.environ[name] == "0"
    monkeypatch.setenv(name, "1")
    assert backend._oneflow_gpu_defaults() == {name: "1"}  # a value the user set wins
    if HAVE_ONEFLOW:  # the name is the one OneFlow's library reads (a misspelt one would change nothing)
        spec = importlib.util.find_spec("oneflow")
        libraries = glob.glob(os.path.join(os.path.dirname(os.path.dirname(spec.origin)), "oneflow.libs",
                                           "liboneflow*.so*"))
        assert libraries
        with open(libraries[0], "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            assert m.find(name.encode() + b"\0") >= 0


@pytest.mark.skipif(not HAVE_ONEFLOW, reason="OneFlow is not installed (torch-only environment)")
@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_fp16_on_oneflow_is_refused_in_one_line(device):
    training = backend.import_for("training", "oneflow")
    flow = backend.framework("oneflow")
    assert not hasattr(flow.amp.GradScaler(), "scale")  # why: OneFlow 0.9's eager scaler cannot scale a loss
    with pytest.raises(ValueError) as refused:
        training.MixedPrecision(True, device)
    message = str(refused.value)
    assert message.startswith("--fp16 is not supported on --backend oneflow") and "\n" not in message
    assert training.MixedPrecision(False, device).scaler is None  # fp32 stays available
