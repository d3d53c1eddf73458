"""OneFlow 0.9's settings on a CPU, applied by backend.py before `import oneflow`.

OneFlow as it comes runs BERT several times slower than PyTorch on the same CPU (bench/bench_train_step.py
prints both; docs/backends.md explains each setting and docs/benchmarks.md holds the figures). `tune()`
applies, unless TINYBERT_ONEFLOW_CPU=none (a variable the user set always wins):
- ONEFLOW_ENABLE_ONEDNN_OPTS=0: its oneDNN has no optimised kernel for broadcast binary operations
  (inside every LayerNorm and mask) and runs its reference one; OneFlow's own kernels are faster;
- ONEFLOW_VM_COMPUTE_ON_WORKER_THREAD=0: kernels run on the virtual machine's scheduler thread rather
  than on a worker thread that spins between them and takes CPU from the BLAS threads;
- OMP_WAIT_POLICY=PASSIVE (read when PyTorch's OpenMP starts, so only when OneFlow comes first): idle
  BLAS threads sleep instead of spinning on the core OneFlow's single-threaded kernels need;
- OneFlow's cblas_sgemm answered by PyTorch's MKL (`sgemm_interposer.c`, compiled once with `cc`, loaded
  globally): its bundled OpenBLAS is single-threaded and picks generic SSE3 kernels on CPUs it does not
  know; forcing a newer core type instead leaves the AVX registers dirty, which slows glibc's expf;
- products too small to gain from MKL's thread team run on one thread. Where that line lies depends on
  the machine (what it costs to wake a sleeping thread differs between CPUs and hypervisors by an order
  of magnitude), so it is measured once per machine, in about a second, and cached beside the
  interposer; nothing is assumed from the CPU's vendor.
"""
import ctypes
import fcntl
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time

import numpy as np

import files

ENV = "TINYBERT_ONEFLOW_CPU"  # auto (default): the settings above; none: OneFlow as it comes
INTERPOSER_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sgemm_interposer.c")
# Cube sides timed on one thread and on the team; the team must beat one thread by TEAM_MARGIN to be
# used, since a tie is better left to one thread (the other core stays free for OneFlow's own threads).
SIDES = (24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
TEAM_MARGIN = 1.1
applied = {"matmul": "not set up yet"}  # what tune() did (logs, tests, benches)


class BadSetting(ValueError):
    pass


def cache_dir():
    return os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "tinybert")


def build_interposer():
    """Path of sgemm_interposer.c compiled to a shared library (cached by its source's hash)."""
    with open(INTERPOSER_SOURCE, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:12]
    out = os.path.join(cache_dir(), f"sgemm_interposer-{digest}.so")
    if os.path.isfile(out):
        return out
    cc = shutil.which(os.environ.get("CC") or "cc")
    if cc is None:
        raise OSError("no C compiler (cc) on PATH to build sgemm_interposer.c")
    os.makedirs(cache_dir(), exist_ok=True)
    tmp = f"{out}.tmp-{os.getpid()}"
    done = subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", tmp, INTERPOSER_SOURCE], capture_output=True, text=True)
    if done.returncode:
        raise OSError(f"{cc} could not build {INTERPOSER_SOURCE}: {done.stderr.strip()[-300:]}")
    os.replace(tmp, out)  # whole or absent, even with several processes building at once
    return out


def cpu_model():
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def choose_single_below(timings):
    """m*n*k under which products run on one thread, from [(side, one_thread_s, team_s)] of cubes: the
    smallest cube from which on the team wins by TEAM_MARGIN at every larger side too (a win at one
    small side between losses is noise). None: the team never wins, every product runs on one thread."""
    wins = [team * TEAM_MARGIN < one for _, one, team in timings]
    for i in range(len(timings)):
        if all(wins[i:]):
            return timings[i][0] ** 3
    return None


def time_sgemm(sgemm, set_threads_local, sides=SIDES, budget_s=0.004, repeats=5):
    """[(side, one_thread_s, team_s)]: the best of `repeats` of each, one thread and team interleaved so
    that a burst of other work on the machine hits both alike."""
    proto = ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * 13)
    call = proto(sgemm)
    set_local = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)(set_threads_local)
    rng = np.random.default_rng(0)
    timings = []
    try:
        for side in sides:
            a, b = (rng.standard_normal((side, side)).astype(np.float32) for _ in range(2))
            c = np.zeros((side, side), np.float32)
            n, alpha, beta, no = ctypes.c_int(side), ctypes.c_float(1.0), ctypes.c_float(0.0), ctypes.c_char(b"N")
            args = [ctypes.addressof(x) for x in (no, no, n, n, n, alpha)] + [
                a.ctypes.data, ctypes.addressof(n), b.ctypes.data, ctypes.addressof(n), ctypes.addressof(beta),
                c.ctypes.data, ctypes.addressof(n)]
            call(*args)
            start = time.perf_counter()
            call(*args)
            reps = max(2, int(budget_s / max(time.perf_counter() - start, 1e-7)))
            best = {1: float("inf"), 0: float("inf")}
            for _ in range(repeats):
                for threads in (1, 0):  # 0: MKL's global thread count, the team
                    set_local(threads)
                    call(*args)  # the first call after a change may set things up
                    start = time.perf_counter()
                    for _ in range(reps):
                        call(*args)
                    best[threads] = min(best[threads], (time.perf_counter() - start) / reps)
            timings.append((side, best[1], best[0]))
    finally:
        set_local(0)
    return timings


def single_below(torch_cpu, torch_version):
    """(m*n*k limit: None puts every product on one thread, 0 none; where it came from): measured on
    this machine once, then read from the cache. The cache is keyed by what changes the answer: CPU model, CPUs this process may use, MKL's thread
    count, the OpenMP wait policy and PyTorch's version (its MKL)."""
    threads = torch_cpu.MKL_Get_Max_Threads()
    if threads <= 1:
        return 0, "MKL runs on one thread here (OMP_NUM_THREADS or MKL_NUM_THREADS=1): no team to wake"
    key = dict(cpu=cpu_model(), cpus=len(os.sched_getaffinity(0)), mkl_threads=threads,
               wait_policy=os.environ.get("OMP_WAIT_POLICY", ""), torch=torch_version)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    path = os.path.join(cache_dir(), f"sgemm-threads-{digest}.json")
    os.makedirs(cache_dir(), exist_ok=True)
    # one process measures while the others starting with it (the ranks of a launch) wait for its answer,
    # rather than all timing at once on the same cores
    with open(os.path.join(cache_dir(), "sgemm-threads.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found, limit = _read_cached(path, key)
        if found:
            return limit, f"measured earlier on this machine ({path})"
        timings = time_sgemm(ctypes.cast(torch_cpu.sgemm_, ctypes.c_void_p).value,
                             ctypes.cast(torch_cpu.MKL_Set_Num_Threads_Local, ctypes.c_void_p).value)
        limit = choose_single_below(timings)
        files.write_json_atomic(path, dict(key=key, single_below=limit, timings=[
            dict(side=s, one_thread_s=one, team_s=team) for s, one, team in timings]))
    return limit, f"measured now, cached in {path}"


def _read_cached(path, key):
    """(True, the cached limit) or (False, None) when nothing usable is cached for this key."""
    if not os.path.isfile(path) or os.path.islink(path):
        return False, None
    try:
        with open(path, encoding="utf-8") as f:
            cached = json.load(f)
        if cached.get("key") == key:
            return True, cached["single_below"]
    except (OSError, ValueError, KeyError, AttributeError):
        pass  # unreadable: measured again and rewritten
    return False, None


def tune():
    """The settings of the module docstring; call before `import oneflow`. Records what it did in
    `applied`; says on stderr when the faster matrix products could not be set up, and why."""
    mode = os.environ.get(ENV, "auto")
    if mode not in ("auto", "none"):
        raise BadSetting(f"{ENV}={mode}: use auto or none")
    if mode == "none":
        applied.update(matmul="OneFlow's own OpenBLAS")
        return
    for key, value in (("ONEFLOW_ENABLE_ONEDNN_OPTS", "0"), ("ONEFLOW_VM_COMPUTE_ON_WORKER_THREAD", "0"),
                       ("OMP_WAIT_POLICY", "PASSIVE")):
        os.environ.setdefault(key, value)  # a value the user set wins
        applied[key] = os.environ[key]
    try:
        import torch  # its MKL does the products; loaded before OneFlow on purpose
        torch_cpu = ctypes.CDLL(os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so"))
        sgemm = ctypes.cast(torch_cpu.sgemm_, ctypes.c_void_p).value
        interposer = ctypes.CDLL(build_interposer(), mode=ctypes.RTLD_GLOBAL)
        interposer.tinybert_set_sgemm(ctypes.c_void_p(sgemm))
    except (ImportError, OSError, AttributeError) as e:
        applied["matmul"] = f"OneFlow's own OpenBLAS ({e})"
        print(f"backend: OneFlow's CPU matrix products stay on its single-threaded OpenBLAS, several times "
              f"slower: {e}", file=sys.stderr)
        return
    interposer.tinybert_sgemm_calls.restype = ctypes.c_long
    interposer.tinybert_single_thread_calls.restype = ctypes.c_long
    applied.update(matmul="PyTorch's MKL sgemm_ (sgemm_interposer.c)", library=interposer._name,
                   calls=interposer.tinybert_sgemm_calls, single_thread_calls=interposer.tinybert_single_thread_calls)
    try:
        limit, source = single_below(torch_cpu, torch.__version__)
    except (AttributeError, OSError) as e:  # an MKL without the thread-local setting: the team does all
        applied.update(single_below=0, single_below_source=f"not measured ({e})")
        return
    interposer.tinybert_set_single_below(ctypes.c_void_p(ctypes.cast(torch_cpu.MKL_Set_Num_Threads_Local,
                                                                     ctypes.c_void_p).value),
                                         ctypes.c_double(float("inf") if limit is None else limit))
    applied.update(single_below=limit, single_below_source=source)
