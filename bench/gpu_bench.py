"""The GPU figures in one table (bench/gpu_check.sh runs this after the GPU tests): task distillation,
data augmentation and inference on the GPU, this project against the reference implementation's
procedure, with the peak GPU memory of each. Torch backend; nothing from outside the repository.

    python bench/gpu_bench.py [--quick]

- Task distillation: bench_task_distill.py's runs (task_distill.main, BERT-base-shaped teacher ->
  TinyBERT-4L-312D student, random weights, max_seq_length 64, batch 32), stage 1 and stage 2, ours
  and --reference_mode, fp32 and bf16 teacher, on the demo's SST-2-style sentences (data/demo, four
  copies of its 320 training sentences). examples/s is the training loop's own figure (first step in).
- Augmentation: bench_augmentation.py's timing (candidates and N=20 sampled sentences per sentence) of
  the batched procedure and the reference's one-word-at-a-time one, BERT-base-shaped masked LM, random
  300-d GloVe vectors for the demo's words filled up to --glove_words.
- Inference: bench_inference.py's timing of BERT-base and TinyBERT-4L-312D classifiers, batch 32 x 128
  tokens (examples/s) and batch 1 x 128 (latency).
The models' vocabulary is written from the demo's words and padded to BERT's 30522 entries, so that
embeddings and the masked LM's output layer cost what BERT's do. Figures, not a test.
"""
import argparse
import contextlib
import io
import os
import random
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [ROOT, HERE, os.path.join(ROOT, "tests")]
os.environ.setdefault("BACKEND", "torch")
import backend  # noqa: E402
import bench_augmentation  # noqa: E402
import bench_inference  # noqa: E402
import bench_task_distill  # noqa: E402
import tiny_assets  # noqa: E402

flow = backend.framework()
BERT_VOCAB = 30522


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="a few steps of everything: checks the script, not speed")
    p.add_argument("--glove_words", type=int, default=30000)
    p.add_argument("--check_imports", action="store_true", help="import everything, print a line and stop")
    return p.parse_args()


class Peak:
    """Peak GPU memory (MiB) allocated by the framework inside the block; None on a CPU."""

    def __init__(self, device):
        self.on_gpu, self.mib = str(device).startswith("cuda"), None

    def __enter__(self):
        if self.on_gpu:
            flow.cuda.synchronize()
            flow.cuda.reset_peak_memory_stats()
        return self

    def __exit__(self, *exc):
        if self.on_gpu:
            flow.cuda.synchronize()
            self.mib = flow.cuda.max_memory_allocated() / 2 ** 20


def write_data(tmp, copies):
    """An SST-2 task directory: the demo's training sentences `copies` times, its dev set once."""
    out = os.path.join(tmp, "SST-2")
    os.makedirs(out)
    rows = open(os.path.join(tiny_assets.DEMO_SST2, "train.tsv"), encoding="utf-8").read().splitlines()
    with open(os.path.join(out, "train.tsv"), "w", encoding="utf-8") as f:
        f.write("\n".join([rows[0]] + rows[1:] * copies) + "\n")
    dev = open(os.path.join(tiny_assets.DEMO_SST2, "dev.tsv"), encoding="utf-8").read()
    with open(os.path.join(out, "dev.tsv"), "w", encoding="utf-8") as f:
        f.write(dev)
    return out, (len(rows) - 1) * copies


def task_distillation(tmp, vocab, device, quick):
    """Rows of (what, ours, reference, peak MiB) for both stages and teacher dtypes."""
    data, examples = write_data(tmp, 1 if quick else 4)
    steps = 2 if quick else examples // 32
    paths = bench_task_distill.make_models(tmp, vocab)
    with contextlib.redirect_stderr(io.StringIO()):  # progress bars
        bench_task_distill.run("intermediate", False, "fp32", min(steps, 4), data, paths, os.path.join(tmp, "warm"))
    rows = []
    for dtype in ("fp32", "bf16"):
        for stage, label in (("intermediate", "stage 1"), ("pred", "stage 2")):
            speed, peak = {}, 0.0
            for reference in (False, True):
                with Peak(device) as p, contextlib.redirect_stderr(io.StringIO()):
                    speed[reference], _ = bench_task_distill.run(stage, reference, dtype, steps, data, paths,
                                                                 os.path.join(tmp, "out"))
                peak = max(peak, p.mib or 0.0)
            rows.append((f"task distillation {label}, {dtype} teacher (examples/s)", speed[False], speed[True],
                         peak if device != "cpu" else None))
            print(f"  {rows[-1][0]}: {speed[False]:.1f} vs {speed[True]:.1f}", flush=True)
    return rows, steps


def augmentation(tmp, vocab, device, quick, glove_words):
    import checkpoint
    import data_augmentation as da
    import word_vectors as wv
    import modeling
    tokenizer = checkpoint.load_tokenizer(os.path.dirname(vocab))
    flow.manual_seed(0)
    model = modeling.BertForMaskedLM(modeling.BertConfig(vocab_size=BERT_VOCAB)).eval().to(device)
    glove_path = os.path.join(tmp, "glove.txt")
    count = 2000 if quick else glove_words
    bench_augmentation.write_glove(glove_path, tiny_assets.demo_words(), count, 300, 0)
    index = da.GloveIndex(wv.load_glove(glove_path, count), device)
    index.full_unit64()  # the reference normalises its matrix once, at load: not timed
    chunk, tokens = da.CPU_BATCHING if device == "cpu" else da.GPU_BATCHING
    fast = da.Augmentor(model, tokenizer, index, 15, device, tokens)
    ref = da.Augmentor(model, tokenizer, index, 15, device, reference_mode=True)
    texts = tiny_assets.demo_sentences()[:8 if quick else 256]
    settings = argparse.Namespace(N=20, p=0.4, seed=0)
    with Peak(device) as p:
        fast_s, ours = bench_augmentation.run_mode(da, fast, texts, settings)
        ref_s, theirs = bench_augmentation.run_mode(da, ref, texts, settings)
    same = sum(a[w] == b[w] for (_, a), (_, b) in zip(ours, theirs) for w in a)
    total = sum(len(a) for _, a in ours)
    print(f"  augmentation: identical candidate lists {same} of {total} (float32: near ties may swap)", flush=True)
    return [(f"augmentation, {len(texts)} sentences, {count // 1000}k GloVe (sentences/s)", len(texts) / fast_s,
             len(texts) / ref_s, p.mib)]


def inference(tmp, device, quick):
    """Rows of (what, student, teacher, peak MiB): batch 32 x 128 throughput, batch 1 x 128 latency."""
    m = backend.import_for("modeling", "torch")
    dirs = {}
    for size, cfg in bench_inference.SIZES.items():
        dirs[size] = os.path.join(tmp, size)
        m.TinyBertForSequenceClassification(m.BertConfig(**cfg), num_labels=2).save_pretrained(dirs[size])
    rng = np.random.default_rng(0)
    rows = []
    for batch, repeats in ((32, 2 if quick else 20), (1, 2 if quick else 50)):
        ids = rng.integers(1000, 30000, size=(batch, 128))
        seconds, peak = {}, 0.0
        for size in bench_inference.SIZES:
            with Peak(device) as p:
                seconds[size] = bench_inference.bench_ours("torch", dirs[size], ids, np.ones_like(ids), repeats,
                                                           device != "cpu")
            peak = max(peak, p.mib or 0.0)
        student, teacher = seconds["TinyBERT-4L-312D"], seconds["BERT-base"]
        if batch == 1:
            rows.append(("inference latency, batch 1 x 128 (ms; student vs teacher)", 1000 * student,
                         1000 * teacher, peak if device != "cpu" else None))
        else:
            rows.append((f"inference, batch {batch} x 128 (examples/s; student vs teacher)", batch / student,
                         batch / teacher, peak if device != "cpu" else None))
        print(f"  {rows[-1][0]}: {rows[-1][1]:.1f} vs {rows[-1][2]:.1f}", flush=True)
    return rows


def print_table(rows, header):
    print("\n" + header)
    print(f"{'measurement':66s} {'this project':>13s} {'compared':>11s} {'ratio':>7s} {'peak GPU MiB':>13s}")
    for what, ours, other, mib in rows:
        ratio = other / ours if what.startswith("inference latency") else ours / other
        shown = "-" if mib is None else f"{mib:.0f}"
        print(f"{what:66s} {ours:13.1f} {other:11.1f} {ratio:6.1f}x {shown:>13s}")


def describe(device):
    if device == "cpu":
        return f"CPU only (no CUDA): torch {flow.__version__}"
    props = flow.cuda.get_device_properties(0)
    return (f"{props.name}, compute {props.major}.{props.minor}, {props.total_memory / 2 ** 30:.0f} GiB; torch "
            f"{flow.__version__}, CUDA {flow.version.cuda}")


def main():
    args = parse_args()
    if args.check_imports:
        print("bench/gpu_bench.py: imports ok (torch", flow.__version__ + ")")
        return
    device = backend.device(True)
    start = time.perf_counter()
    random.seed(0)
    with tempfile.TemporaryDirectory(prefix="tinybert-gpu-bench-") as tmp:
        vocab = tiny_assets.write_vocab(os.path.join(tmp, "vocab"), size=BERT_VOCAB)
        print(f"task distillation ({describe(device)})", flush=True)
        rows, steps = task_distillation(tmp, vocab, device, args.quick)
        print("data augmentation", flush=True)
        rows += augmentation(tmp, vocab, device, args.quick, args.glove_words)
        print("inference", flush=True)
        rows += inference(tmp, device, args.quick)
    compared = ("'compared': --reference_mode (task distillation), the reference's one-word-at-a-time procedure "
                "(augmentation), the BERT-base teacher (inference)")
    print_table(rows, f"{describe(device)}; task distillation {steps} steps of batch 32 per run\n{compared}")
    print(f"\n{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
