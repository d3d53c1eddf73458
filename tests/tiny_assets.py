"""Models and data made from this repository alone, for checks that run where neither ../shared nor the
MiniLM package exists (a GPU server, a torch-only environment): an uncased vocabulary built from the
demo's sentences (data/demo, written for this project), random BERT models on it, a GloVe-format file
and a one-sentence-a-line corpus. Everything is seeded: the same call writes the same files.

The vocabulary holds every letter as a word and as a ## piece, and every demo word except every fifth
one (in sorted order), so that those few split into several pieces, as rare words do in BERT's
vocabulary (data augmentation then asks GloVe for them instead of the masked LM). `size` pads it with
[unusedN] entries, e.g. to BERT-base's 30522, so that a model's embedding and LM head have BERT's cost.
"""
import os
import string

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_SST2 = os.path.join(ROOT, "data", "demo", "SST-2")
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PUNCTUATION = list(",.'!?;:-")


def demo_sentences(split="train"):
    with open(os.path.join(DEMO_SST2, f"{split}.tsv"), encoding="utf-8") as f:
        rows = f.read().splitlines()[1:]
    return [row.split("\t")[0].strip() for row in rows]


def demo_words():
    """The demo's distinct words (it is lower case, punctuation already spaced), sorted."""
    return sorted({w for split in ("train", "dev") for s in demo_sentences(split) for w in s.split()})


def split_words():
    """The demo words left out of the vocabulary: the tokenizer cuts them into several pieces."""
    return [w for i, w in enumerate(demo_words()) if i % 5 == 4 and w.isalpha()]


def write_vocab(directory, size=None):
    """`directory`/vocab.txt; returns its path."""
    left_out = set(split_words())
    letters = list(string.ascii_lowercase)
    tokens = SPECIALS + PUNCTUATION + letters + ["##" + c for c in letters]
    tokens += [w for w in demo_words() if w not in left_out and w not in tokens]
    if size is not None:
        if size < len(tokens):
            raise ValueError(f"a vocabulary of {size} cannot hold the {len(tokens)} tokens the demo needs")
        tokens += [f"[unused{i}]" for i in range(size - len(tokens))]
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "vocab.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(tokens) + "\n")
    return path


def vocab_size(vocab_path):
    with open(vocab_path, encoding="utf-8") as f:
        return sum(1 for _ in f)


def bert_config(modeling, vocab_path, layers=2, hidden=32, heads=4, intermediate=None, positions=128, dropout=0.0,
                **extra):
    return modeling.BertConfig(vocab_size=vocab_size(vocab_path), hidden_size=hidden, num_hidden_layers=layers,
                               num_attention_heads=heads, intermediate_size=intermediate or 2 * hidden,
                               max_position_embeddings=positions, hidden_dropout_prob=dropout,
                               attention_probs_dropout_prob=dropout, **extra)


def write_classifier(modeling, directory, vocab_path, fit_size=None, seed=0, **config):
    """A random TinyBertForSequenceClassification (2 labels, SST-2's order) saved to `directory`;
    `fit_size`: the teacher's width it will learn from (default: its own)."""
    modeling.flow.manual_seed(seed)
    cfg = bert_config(modeling, vocab_path, **config)
    model = modeling.TinyBertForSequenceClassification(cfg, num_labels=2, fit_size=fit_size or cfg.hidden_size)
    model.config.extra["id2label"] = {"0": "0", "1": "1"}
    model.save_pretrained(str(directory), vocab_file=vocab_path)
    return str(directory)


def write_masked_lm(modeling, directory, vocab_path, seed=0, **config):
    modeling.flow.manual_seed(seed)
    modeling.BertForMaskedLM(bert_config(modeling, vocab_path, **config)).save_pretrained(
        str(directory), vocab_file=vocab_path)
    return str(directory)


def write_glove(path, dim=16, extra_words=200, seed=0):
    """Random vectors for every demo word (those the vocabulary splits included) and `extra_words`
    made-up ones, in GloVe's text format."""
    rng = np.random.default_rng(seed)
    words = demo_words() + [f"zzword{i:05d}" for i in range(extra_words)]
    with open(path, "w", encoding="utf-8") as f:
        for word, vector in zip(words, rng.standard_normal((len(words), dim))):
            f.write(word + " " + " ".join(f"{x:.5f}" for x in vector) + "\n")
    return str(path)


def write_corpus(path, split="train"):
    """The demo's sentences, one a line, a blank line after every tenth (a document)."""
    lines = [s + ("\n" if i % 10 == 9 else "") for i, s in enumerate(demo_sentences(split))]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return str(path)
