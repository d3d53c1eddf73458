"""backend.py's OneFlow CPU settings: matrix products through sgemm_interposer.c (PyTorch's MKL),
oneDNN's broadcast kernels off, kernels on the scheduler thread; a user's own values win; without a
compiler OneFlow keeps its own BLAS and says so. Each case in a fresh process: the settings apply
before OneFlow is imported."""
import json
import os
import subprocess
import sys

from conftest import ROOT

PROBE = r"""
import json, os, sys
import numpy as np
sys.path.insert(0, ROOT)
import backend
flow = backend.framework("oneflow")
rng = np.random.default_rng(0)
worst = 0.0
for m, k, n in [(7, 5, 3), (64, 312, 1200), (33, 17, 65)]:
    a = rng.standard_normal((m, k)).astype("float32")
    b = rng.standard_normal((k, n)).astype("float32")
    want = a.astype("float64") @ b
    got = [flow.matmul(flow.tensor(a), flow.tensor(b)),                               # N, N
           flow.nn.functional.linear(flow.tensor(a), flow.tensor(b.T.copy())),        # N, T
           flow.matmul(flow.tensor(a.T.copy()).transpose(0, 1), flow.tensor(b)),      # T, N
           flow.matmul(flow.tensor(np.stack([a, 2 * a])), flow.tensor(b))[1] / 2]     # batched
    worst = max(worst, max(float(np.abs(g.numpy() - want).max() / np.abs(want).max()) for g in got))
calls = backend.oneflow_cpu["calls"]() if "calls" in backend.oneflow_cpu else None
print("PROBE " + json.dumps(dict(worst=worst, calls=calls, matmul=backend.oneflow_cpu["matmul"],
      onednn=os.environ.get("ONEFLOW_ENABLE_ONEDNN_OPTS"),
      worker=os.environ.get("ONEFLOW_VM_COMPUTE_ON_WORKER_THREAD"), wait=os.environ.get("OMP_WAIT_POLICY"))))
""".replace("ROOT", repr(ROOT))


def probe(tmp_path, **env):
    clean = {k: v for k, v in os.environ.items() if k not in (
        "ONEFLOW_ENABLE_ONEDNN_OPTS", "ONEFLOW_VM_COMPUTE_ON_WORKER_THREAD", "OMP_WAIT_POLICY", "TINYBERT_ONEFLOW_CPU",
        "CC")}
    clean.update(GLOG_minloglevel="2", XDG_CACHE_HOME=str(tmp_path / "cache"), **env)
    done = subprocess.run([sys.executable, "-c", PROBE], env=clean, capture_output=True, text=True, timeout=300)
    lines = [line for line in done.stdout.splitlines() if line.startswith("PROBE ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    return json.loads(lines[-1][6:]), done.stderr


def test_products_go_through_the_interposer_and_are_right(tmp_path):
    r, _ = probe(tmp_path)
    assert r["matmul"].startswith("PyTorch's MKL")
    assert r["calls"] >= 12  # every product above went through it (and OneFlow's own, if any)
    assert r["worst"] < 1e-5, r
    assert (r["onednn"], r["worker"], r["wait"]) == ("0", "0", "PASSIVE")
    built = os.listdir(tmp_path / "cache" / "tinybert")
    assert len(built) == 1 and built[0].startswith("sgemm_interposer-") and built[0].endswith(".so")
    again, _ = probe(tmp_path)  # the cached library is reused, not rebuilt
    assert again["calls"] >= 12 and os.listdir(tmp_path / "cache" / "tinybert") == built


def test_none_leaves_oneflow_as_it_comes_and_user_values_win(tmp_path):
    r, _ = probe(tmp_path, TINYBERT_ONEFLOW_CPU="none")
    assert r["matmul"] == "OneFlow's own OpenBLAS" and r["calls"] is None and r["worst"] < 1e-5
    assert r["onednn"] is None and r["worker"] is None and r["wait"] is None
    r, _ = probe(tmp_path, ONEFLOW_ENABLE_ONEDNN_OPTS="1", OMP_WAIT_POLICY="ACTIVE")
    assert r["onednn"] == "1" and r["worker"] == "0" and r["wait"] == "ACTIVE" and r["calls"] >= 12


def test_without_a_compiler_oneflow_keeps_its_blas_and_says_why(tmp_path):
    r, stderr = probe(tmp_path, CC=str(tmp_path / "no-such-cc"))
    assert r["calls"] is None and r["worst"] < 1e-5 and r["onednn"] == "0"
    assert "no C compiler (cc) on PATH" in r["matmul"]
    assert "OneFlow's CPU matrix products stay on its single-threaded OpenBLAS" in stderr


def test_a_bad_setting_is_refused(tmp_path):
    env = dict(os.environ, TINYBERT_ONEFLOW_CPU="fast", GLOG_minloglevel="2")
    done = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {ROOT!r}); import backend; "
                           "backend.framework('oneflow')"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "TINYBERT_ONEFLOW_CPU=fast: use auto or none" in done.stderr


def test_ctrl_c_is_a_keyboard_interrupt_after_importing_oneflow():
    """OneFlow's import sets a SIGINT handler that ends the process silently; backend.py puts Python's back,
    so that an interrupted run can say where it stopped and how to continue."""
    # Python's own handler first: a child of a background job inherits SIGINT ignored, and keeps it so
    code = ("import os, signal, sys, time; signal.signal(signal.SIGINT, signal.default_int_handler)\n"
            "sys.path.insert(0, sys.argv[1]); import backend\n"
            "backend.framework('oneflow')\n"
            "try:\n    os.kill(os.getpid(), signal.SIGINT); time.sleep(5)\nexcept KeyboardInterrupt:\n"
            "    print('KeyboardInterrupt')\n")
    done = subprocess.run([sys.executable, "-c", code, ROOT], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, GLOG_minloglevel="2"))
    assert done.returncode == 0 and done.stdout == "KeyboardInterrupt\n", done.stderr[-2000:]
