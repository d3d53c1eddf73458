"""The student's training step and inference on the CPU, OneFlow against PyTorch, one fresh process
per (backend, settings), so that each framework's thread and library settings apply from the start.

    .venv/bin/python bench/bench_train_step.py [--steps 10 --batch 32 --seq 64]
    .venv/bin/python bench/bench_train_step.py --oneflow_env none      # OneFlow as it comes, no tuning

Models (random weights, the demo's shapes): student TinyBERT-4L-312D (12 heads, 1,200 wide feed-forward,
fit_dense to 384), teacher 6L-384D (all-MiniLM-L6-v2's shape), student layers on teacher layers 2,3,5,6. Per process, after 2 warm-up steps,
the median of --steps of:
- finetune: the student's step on gold labels (forward, cross-entropy, backward, AdamW);
- stage 1: the teacher's forward (no gradient, attention scores and hidden states) then the student's
  forward, att_loss + rep_loss, backward, AdamW (task_distill.py --intermediate_distill);
- infer student / infer teacher: a forward pass without gradient, logits only.
OneFlow runs twice: as it comes (TINYBERT_ONEFLOW_CPU=none) and with oneflow_cpu.py's settings
(oneDNN's broadcast kernels off, kernels on the scheduler thread, matrix products through
sgemm_interposer.c, small ones on one thread, OpenMP threads that sleep when idle).
A batch is --batch sentences of --seq tokens, no padding. Each row also gives the process's CPU
seconds per wall second (user, system): system time is time the kernel spent, e.g. on threads that
spin. Figures, not a test: nothing here passes or fails.
"""
import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import backend  # noqa: E402  (only its names here: each child process binds its own framework)
import oneflow_cpu  # noqa: E402


def child(name, steps, batch, seq):
    import numpy as np
    backend.use(name)
    flow = backend.framework(name)
    modeling = backend.import_for("modeling", name)
    distillation = backend.import_for("distillation", name)
    training = backend.import_for("training", name)
    flow.manual_seed(0)
    student = modeling.TinyBertForSequenceClassification(
        modeling.BertConfig(hidden_size=312, num_hidden_layers=4, intermediate_size=1200), num_labels=2, fit_size=384)
    teacher = modeling.TinyBertForSequenceClassification(
        modeling.BertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536),
        num_labels=2).eval()
    rng = np.random.default_rng(0)
    ids = flow.tensor(rng.integers(1000, 30000, size=(batch, seq)), dtype=flow.int64)
    segments = flow.zeros((batch, seq), dtype=flow.int64)
    mask = flow.ones((batch, seq), dtype=flow.int64)
    labels = flow.tensor(rng.integers(0, 2, size=batch), dtype=flow.int64)
    optimizer = training.make_optimizer(student, 1e-4)
    layer_map = distillation.parse_layer_map("2,3,5,6", 6, 4)

    def finetune():
        logits = student(ids, segments, mask, output_attentions=False)[0]
        loss = flow.nn.functional.cross_entropy(logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return float(loss)

    def stage1():
        with flow.no_grad():
            _, t_atts, t_reps = teacher(ids, segments, mask)
        _, s_atts, s_reps = student(ids, segments, mask, is_student=True)
        loss = distillation.att_loss(s_atts, t_atts, layer_map) + distillation.rep_loss(s_reps, t_reps, layer_map)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return float(loss)

    def infer(model):
        def run():
            with flow.no_grad():
                return float(model(ids, segments, mask, output_attentions=False)[0].sum())
        return run

    out = {}
    for label, fn in (("finetune", finetune), ("stage 1", stage1), ("infer student", infer(student.eval())),
                      ("infer teacher", infer(teacher))):
        student.train(label in ("finetune", "stage 1"))
        for _ in range(2):
            fn()
        times, cpu0 = [], os.times()
        for _ in range(steps):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        cpu1 = os.times()
        wall = sum(times)
        out[label] = dict(seconds=float(np.median(times)), user=(cpu1.user - cpu0.user) / wall,
                          system=(cpu1.system - cpu0.system) / wall)
    out["threads"] = len(os.listdir("/proc/self/task"))
    if name == "oneflow":
        applied = backend.oneflow_cpu_applied
        out["matmul"] = applied["matmul"]
        if "single_below" in applied:
            out["matmul"] += (f"; on one thread below m*n*k = {applied['single_below']} "
                              f"({applied['single_below_source']})")
    print("RESULT " + json.dumps(out))


def run_child(name, env, args):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", name, "--steps", str(args.steps),
           "--batch", str(args.batch), "--seq", str(args.seq)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        raise SystemExit(f"{name} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq", type=int, default=64)
    p.add_argument("--oneflow_env", choices=["both", "none", "tuned"], default="both",
                   help="OneFlow as it comes (none), with oneflow_cpu.py's settings (tuned), or both")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args.child, args.steps, args.batch, args.seq)
    base = {k: v for k, v in os.environ.items()
            if k not in ("OPENBLAS_CORETYPE", "ONEFLOW_ENABLE_ONEDNN_OPTS", "ONEFLOW_VM_COMPUTE_ON_WORKER_THREAD",
                         "OMP_WAIT_POLICY", backend.ONEFLOW_CPU_ENV)}
    base.update(TF_CPP_MIN_LOG_LEVEL="3", GLOG_minloglevel="2")
    runs = [("torch", "torch", base)]
    if args.oneflow_env in ("both", "none"):
        runs.append(("oneflow, as it comes", "oneflow", dict(base, **{backend.ONEFLOW_CPU_ENV: "none"})))
    if args.oneflow_env in ("both", "tuned"):
        runs.append(("oneflow, oneflow_cpu.py settings", "oneflow", base))
    results = {label: run_child(name, env, args) for label, name, env in runs}
    kinds = ["finetune", "stage 1", "infer student", "infer teacher"]
    print(f"\nbatch {args.batch} x {args.seq} tokens, median of {args.steps} steps, {os.cpu_count()} CPUs "
          f"({oneflow_cpu.cpu_model()})")
    print("| run | " + " | ".join(f"{k} (s)" for k in kinds) + " | CPU user+sys per wall s | threads |")
    print("|---" * (len(kinds) + 3) + "|")
    torch_row = results["torch"]
    for label, r in results.items():
        cells = []
        for k in kinds:
            ratio = "" if label == "torch" else f" ({r[k]['seconds'] / torch_row[k]['seconds']:.1f}x torch)"
            cells.append(f"{r[k]['seconds']:.3f}{ratio}")
        cpu = f"{r['finetune']['user']:.2f}+{r['finetune']['system']:.2f}"
        print(f"| {label} | " + " | ".join(cells) + f" | {cpu} | {r['threads']} |")
    for label, r in results.items():
        if "matmul" in r:
            print(f"{label}: matrix products on {r['matmul']}")


if __name__ == "__main__":
    main()
