"""Run a stage script and SIGKILL it, from outside its code, once `N` optimizer steps are done.

    python tests/kill_after.py N script.py [script arguments]
    KILL_RANK=r: under a launcher, only the process of that RANK dies

The kill comes as the loss of step N+1 is checked (training.check_finite, called once per
micro-batch by training.fit), so the run dies mid-step with whatever N steps left on disk.
"""
import os
import runpy
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
steps, script, *rest = sys.argv[1:]
sys.argv = [script, *rest]
import training  # noqa: E402  (after sys.argv: backend.py reads --backend from it)

original = training.check_finite


def check_then_kill(step, terms):
    if step > int(steps) and os.environ.get("KILL_RANK", os.environ.get("RANK", "0")) == os.environ.get("RANK", "0"):
        os.kill(os.getpid(), signal.SIGKILL)
    return original(step, terms)


training.check_finite = check_then_kill
runpy.run_path(script, run_name="__main__")
