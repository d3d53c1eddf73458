"""OneFlow's CPU settings (oneflow_cpu.py, applied by backend.py): matrix products through
sgemm_interposer.c (PyTorch's MKL), the small ones on one thread below a limit measured once per machine
and cached, oneDNN's broadcast kernels off, kernels on the scheduler thread; a user's own values win;
without a compiler OneFlow keeps its own BLAS and says so. Each case in a fresh process: the settings
apply before OneFlow is imported."""
import glob
import json
import os
import subprocess
import sys

from conftest import ROOT

import oneflow_cpu

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
applied = backend.oneflow_cpu_applied
calls = applied["calls"]() if "calls" in applied else None
single = applied["single_thread_calls"]() if "single_thread_calls" in applied else None
print("PROBE " + json.dumps(dict(worst=worst, calls=calls, single=single, matmul=applied["matmul"],
      single_below=applied.get("single_below", "unset"), source=applied.get("single_below_source"),
      onednn=os.environ.get("ONEFLOW_ENABLE_ONEDNN_OPTS"),
      worker=os.environ.get("ONEFLOW_VM_COMPUTE_ON_WORKER_THREAD"), wait=os.environ.get("OMP_WAIT_POLICY"))))
""".replace("ROOT", repr(ROOT))


def probe(tmp_path, **env):
    clean = {k: v for k, v in os.environ.items() if k not in (
        "ONEFLOW_ENABLE_ONEDNN_OPTS", "ONEFLOW_VM_COMPUTE_ON_WORKER_THREAD", "OMP_WAIT_POLICY", "TINYBERT_ONEFLOW_CPU",
        "CC", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    # two threads whatever the caller runs with, so that there is a team to measure against
    clean.update(GLOG_minloglevel="2", XDG_CACHE_HOME=str(tmp_path / "cache"), OMP_NUM_THREADS="2")
    clean.update(env)
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
    built = sorted(os.listdir(tmp_path / "cache" / "tinybert"))
    assert len(built) == 3 and built[1] == "sgemm-threads.lock", built
    assert built[0].startswith("sgemm-threads-") and built[0].endswith(".json"), built
    assert built[2].startswith("sgemm_interposer-") and built[2].endswith(".so"), built
    assert r["source"].startswith("measured now"), r
    again, _ = probe(tmp_path)  # the cached library and measurement are reused, not rebuilt
    assert again["calls"] >= 12 and sorted(os.listdir(tmp_path / "cache" / "tinybert")) == built
    assert again["source"].startswith("measured earlier") and again["single_below"] == r["single_below"]


def test_small_products_run_on_one_thread_below_the_cached_limit_and_stay_right(tmp_path):
    first, _ = probe(tmp_path)
    (cached,) = glob.glob(str(tmp_path / "cache" / "tinybert" / "sgemm-threads-*.json"))
    with open(cached) as f:
        record = json.load(f)
    assert record["key"]["mkl_threads"] == 2 and record["key"]["wait_policy"] == "PASSIVE"
    assert [t["side"] for t in record["timings"]] == list(oneflow_cpu.SIDES)
    assert record["single_below"] == oneflow_cpu.choose_single_below(
        [(t["side"], t["one_thread_s"], t["team_s"]) for t in record["timings"]])
    # a limit between the probe's small products (7x5x3, 33x17x65) and its large one (64x312x1200)
    record["single_below"] = 100_000
    with open(cached, "w") as f:
        json.dump(record, f)
    r, _ = probe(tmp_path)
    assert r["single_below"] == 100_000 and r["source"].startswith("measured earlier")
    assert 0 < r["single"] < r["calls"], r  # some on one thread, the large ones on the team
    assert r["worst"] < 1e-5, r
    record["single_below"] = None  # the team never won: every product on one thread
    with open(cached, "w") as f:
        json.dump(record, f)
    r, _ = probe(tmp_path)
    assert r["single"] == r["calls"] >= 12 and r["worst"] < 1e-5, r


def test_one_thread_needs_no_measurement(tmp_path):
    r, _ = probe(tmp_path, OMP_NUM_THREADS="1")
    assert r["single_below"] == 0 and "one thread" in r["source"] and r["single"] == 0 and r["worst"] < 1e-5
    assert not glob.glob(str(tmp_path / "cache" / "tinybert" / "sgemm-threads-*.json"))


def test_the_limit_is_where_the_team_wins_from_then_on():
    def cubes(wins):  # side -> True where the team is faster by more than the margin
        return [(side, 1.0, 0.5 if won else 1.0) for side, won in zip(oneflow_cpu.SIDES, wins)]
    n = len(oneflow_cpu.SIDES)
    assert oneflow_cpu.choose_single_below(cubes([False] * 7 + [True] * (n - 7))) == oneflow_cpu.SIDES[7] ** 3
    # a win at a small side between losses is noise, not the line
    noisy = [False, True, False, False, False, True, True, True, True, True][:n]
    assert oneflow_cpu.choose_single_below(cubes(noisy)) == oneflow_cpu.SIDES[5] ** 3
    assert oneflow_cpu.choose_single_below(cubes([True] * n)) == oneflow_cpu.SIDES[0] ** 3
    assert oneflow_cpu.choose_single_below(cubes([False] * n)) is None
    # within the margin counts as a loss: a tie is left to one thread
    tie = [(side, 1.0, 1.0 / (oneflow_cpu.TEAM_MARGIN * 0.99)) for side in oneflow_cpu.SIDES]
    assert oneflow_cpu.choose_single_below(tie) is None


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
