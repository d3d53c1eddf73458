"""Models and word vectors made from the packaged all-MiniLM-L6-v2 for the demo and the CPU experiments,
where no BERT-base, masked LM or GloVe file can be downloaded.

    python experiments/demo_assets.py student --vocab_from DIR --layers 3 --hidden 312 --fit_size 384 --out DIR
    python experiments/demo_assets.py mlm --from DIR --out DIR
    python experiments/demo_assets.py glove --from DIR --out FILE

student: a randomly initialised TinyBERT directory sharing DIR's vocabulary.
mlm:     a BertForMaskedLM with DIR's encoder and an *untrained* prediction head (identity transform,
         decoder tied to the word embeddings): it lets data augmentation run end to end, but its
         word predictions are close to arbitrary. experiments/train_mlm_head.py trains this head
         (what run_demo.sh does when a WikiText corpus is at hand); a real run uses bert-base-uncased.
glove:   DIR's input embeddings of whole-word vocabulary entries, written as a GloVe text file.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import backend  # noqa: E402

backend.use("torch")  # weights are written as safetensors: the same on either backend
import checkpoint  # noqa: E402
import files  # noqa: E402
import modeling  # noqa: E402
import training  # noqa: E402


def make_student(args):
    training.set_seed(args.seed)
    vocab = checkpoint.find_vocab(args.vocab_from)
    n_vocab = sum(1 for _ in open(vocab, encoding="utf-8"))
    config = modeling.BertConfig(vocab_size=n_vocab, hidden_size=args.hidden, num_hidden_layers=args.layers,
                                 num_attention_heads=args.heads,
                                 intermediate_size=args.intermediate or round(args.hidden * 1200 / 312))
    model = modeling.TinyBertForSequenceClassification(config, num_labels=2, fit_size=args.fit_size)
    model.save_pretrained(args.out, vocab_file=vocab)
    print(f"wrote {args.out}: random student, {args.layers} layers, hidden {args.hidden}, "
          f"{modeling.count_parameters(model) / 1e6:.1f}M parameters")


def untrained_head_state(config):
    """cls.predictions tensors of a head that passes the encoder's output through (identity
    transform, zero bias): what experiments/train_mlm_head.py starts from."""
    h = config.hidden_size
    head = {"transform.dense.weight": np.eye(h, dtype=np.float32), "transform.dense.bias": np.zeros(h, np.float32),
            "transform.LayerNorm.weight": np.ones(h, np.float32), "transform.LayerNorm.bias": np.zeros(h, np.float32),
            "bias": np.zeros(config.vocab_size, np.float32)}
    return {f"cls.predictions.{k}": v for k, v in head.items()}


def make_mlm(args):
    config = modeling.BertConfig.from_json_file(checkpoint.find_config(args.source))
    state = checkpoint.load_state_dict(args.source)
    state.update(untrained_head_state(config))
    model = modeling.BertForMaskedLM(config)
    model.load_numpy_state_dict(state, source=args.source)
    model.save_pretrained(args.out, vocab_file=checkpoint.find_vocab(args.source))
    print(f"wrote {args.out}: {args.source}'s encoder with an untrained masked-LM head (demo only)")


def make_glove(args):
    state = checkpoint.load_state_dict(args.source)
    table = state["bert.embeddings.word_embeddings.weight"]
    words = [w.rstrip("\n") for w in open(checkpoint.find_vocab(args.source), encoding="utf-8")]
    rows = [(w, table[i]) for i, w in enumerate(words) if w.isalpha() and w.isascii()]
    with files.atomic_file(args.out, "w", encoding="utf-8") as f:
        for w, v in rows:
            f.write(w + " " + " ".join(f"{x:.5f}" for x in v) + "\n")
    print(f"wrote {args.out}: {len(rows)} words x {table.shape[1]} dims")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    s = sub.add_parser("student")
    s.add_argument("--vocab_from", required=True, help="model directory whose vocab.txt the student shares")
    s.add_argument("--layers", type=int, default=4)
    s.add_argument("--hidden", type=int, default=312)
    s.add_argument("--heads", type=int, default=12)
    s.add_argument("--intermediate", type=int, default=None, help="default: hidden * 1200 / 312 (TinyBERT's ratio)")
    s.add_argument("--fit_size", type=int, default=768, help="the teacher's hidden size")
    s.add_argument("--seed", type=int, default=42)
    for name in ("mlm", "glove"):
        q = sub.add_parser(name)
        q.add_argument("--from", dest="source", required=True, help="model directory (e.g. all-MiniLM-L6-v2)")
    for q in sub.choices.values():
        q.add_argument("--out", required=True)
    args = p.parse_args()
    {"student": make_student, "mlm": make_mlm, "glove": make_glove}[args.what](args)


if __name__ == "__main__":
    main()
