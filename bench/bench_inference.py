"""CPU/GPU inference throughput of BERT-base and TinyBERT-4L-312D (random weights), on both backends,
next to transformers' BertForSequenceClassification on the same weights.

    .venv/bin/python bench/bench_inference.py [--batch 32 --seq 128 --repeats 3 --backends torch,oneflow]

Prints seconds per batch, examples/s and the student/teacher speed-up per implementation. Figures,
not a test: nothing here passes or fails.
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import backend  # noqa: E402
import oneflow_cpu  # noqa: E402  (cpu_model: every figure names its CPU)

SIZES = {
    "BERT-base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "TinyBERT-4L-312D": dict(hidden_size=312, num_hidden_layers=4, num_attention_heads=12, intermediate_size=1200),
}


def time_batches(run, repeats, warmup=1):
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def bench_ours(name, model_dir, ids, mask, repeats, gpu):
    m = backend.import_for("modeling", name)
    flow = backend.framework(name)
    backend.use(name)
    dev = backend.device(gpu)
    model = m.TinyBertForSequenceClassification.from_pretrained(model_dir, num_labels=2, verbose=False).eval().to(dev)
    ids_t = flow.tensor(ids, dtype=flow.int64, device=dev)
    mask_t = flow.tensor(mask, dtype=flow.int64, device=dev)

    def run():
        with flow.no_grad():
            logits = model(ids_t, None, mask_t, output_attentions=False)[0]
        logits.cpu().numpy()  # waits for the device
    return time_batches(run, repeats)


def bench_transformers(model_dir, ids, mask, repeats, gpu):
    import torch
    import transformers
    dev = "cuda" if gpu and torch.cuda.is_available() else "cpu"
    model = transformers.BertForSequenceClassification.from_pretrained(model_dir).eval().to(dev)
    ids_t, mask_t = torch.tensor(ids, device=dev), torch.tensor(mask, device=dev)

    def run():
        with torch.inference_mode():
            model(input_ids=ids_t, attention_mask=mask_t).logits.cpu()
    return time_batches(run, repeats)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--backends", default="torch,oneflow")
    p.add_argument("--gpu", action="store_true", help="run on CUDA when available")
    args = p.parse_args()
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, 30000, size=(args.batch, args.seq))
    mask = np.ones_like(ids)
    m = backend.import_for("modeling", "torch")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for size, cfg in SIZES.items():
            model_dir = os.path.join(tmp, size)
            m.TinyBertForSequenceClassification(m.BertConfig(**cfg), num_labels=2).save_pretrained(model_dir)
            results[(size, "transformers")] = bench_transformers(model_dir, ids, mask, args.repeats, args.gpu)
            for name in args.backends.split(","):
                results[(size, name)] = bench_ours(name, model_dir, ids, mask, args.repeats, args.gpu)
            for impl in ["transformers"] + args.backends.split(","):
                s = results[(size, impl)]
                print(f"{size:18s} {impl:13s} {s:8.3f} s/batch  {args.batch / s:8.1f} examples/s", flush=True)
    print(f"\nbatch {args.batch} x {args.seq} tokens, median of {args.repeats}, {os.cpu_count()} CPUs ({oneflow_cpu.cpu_model()})")
    for impl in ["transformers"] + args.backends.split(","):
        ratio = results[("BERT-base", impl)] / results[("TinyBERT-4L-312D", impl)]
        print(f"speed-up TinyBERT-4L-312D over BERT-base, {impl:13s}: {ratio:5.1f}x")


if __name__ == "__main__":
    main()
