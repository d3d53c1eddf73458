"""One student layer, operation by operation: where OneFlow's CPU time goes next to PyTorch's.

    .venv/bin/python bench/bench_ops.py [--batch 32 --seq 64 --threads 0]

Shapes are the demo's student (TinyBERT 312 wide, 12 heads of 26, 1,200 wide feed-forward) at --batch x
--seq tokens. Each backend runs in a fresh process with backend.py's CPU settings (OneFlow: see
backend.py); --threads N > 0 calls the framework's set_num_threads(N) first. Each row is the median of
15 calls under no_grad after 3 warm-up calls, in milliseconds. The rows marked "model" are what
modeling.py runs; the rows marked "plain" are the straightforward way, kept to show what the model's
choice saves. Figures, not a test.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import backend  # noqa: E402
import oneflow_cpu  # noqa: E402  (cpu_model: every figure names its CPU)


def child(name, batch, seq, threads):
    backend.use(name)
    flow = backend.framework(name)
    F = flow.nn.functional
    if threads > 0:
        flow.set_num_threads(threads)
    heads, size, hidden, wide = 12, 26, 312, 1200
    flow.manual_seed(0)
    x, other = flow.randn(batch, seq, hidden), flow.randn(batch, seq, hidden)
    inner = flow.randn(batch, seq, wide)
    q, k = flow.randn(batch, heads, seq, size), flow.randn(batch, heads, seq, size)
    scores, mask = flow.randn(batch, heads, seq, seq), flow.zeros(batch, 1, 1, seq)
    dense, up, down = flow.nn.Linear(hidden, hidden), flow.nn.Linear(hidden, wide), flow.nn.Linear(wide, hidden)
    norm = flow.nn.LayerNorm(hidden)
    attention_scores = backend.attention_scores(flow)
    scale = 1.0 / math.sqrt(size)
    ops = [
        ("linear 312 -> 312 (x4 a layer)", lambda: dense(x)),
        ("linear 312 -> 1200", lambda: up(x)),
        ("linear 1200 -> 312", lambda: down(inner)),
        ("residual add", lambda: x + other),
        ("LayerNorm (x2 a layer)", lambda: norm(x)),
        ("GELU, erf (on 1200 wide)", lambda: F.gelu(inner)),
        ("split heads (permute, copy)", lambda: x.reshape(batch, seq, heads, size).permute(0, 2, 1, 3).contiguous()),
        ("plain: q @ k^T * scale", lambda: flow.matmul(q, k.transpose(-1, -2)) * scale),
        ("model: attention_scores(q, k, scale)", lambda: attention_scores(q, k, scale)),
        ("plain: scores + mask, broadcast", lambda: scores + mask),
        ("model: scores + mask.expand(scores.shape)", lambda: scores + mask.expand(scores.shape)),
        ("softmax", lambda: F.softmax(scores, dim=-1)),
        ("probabilities @ v", lambda: flow.matmul(scores, q)),
    ]
    out = {}
    with flow.no_grad():
        for label, fn in ops:
            for _ in range(3):
                fn()
            times = []
            for _ in range(15):
                start = time.perf_counter()
                float(fn().reshape(-1)[0])  # waits for OneFlow's asynchronous kernels
                times.append(time.perf_counter() - start)
            out[label] = sorted(times)[len(times) // 2] * 1e3
    print("RESULT " + json.dumps(out))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq", type=int, default=64)
    p.add_argument("--threads", type=int, default=0, help="set_num_threads(N) in each framework; 0 leaves it")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args.child, args.batch, args.seq, args.threads)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", GLOG_minloglevel="2")
    results = {}
    for name in backend.BACKENDS:
        done = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", name, "--batch", str(args.batch),
                               "--seq", str(args.seq), "--threads", str(args.threads)],
                              env=env, capture_output=True, text=True)
        lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        if done.returncode or not lines:
            raise SystemExit(f"{name} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
        results[name] = json.loads(lines[-1][len("RESULT "):])
    threads = args.threads or "as set up"
    print(f"\nbatch {args.batch} x {args.seq} tokens, student shapes, threads {threads}, median of 15, ms, "
          f"{oneflow_cpu.cpu_model()}")
    print("| operation | torch | oneflow | oneflow / torch |\n|---|---|---|---|")
    for label, ms in results["torch"].items():
        of = results["oneflow"][label]
        print(f"| {label} | {ms:.2f} | {of:.2f} | {of / ms:.1f}x |")


if __name__ == "__main__":
    main()
