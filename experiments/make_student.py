"""Write a randomly initialised TinyBERT student directory (config, vocab, weights).

    python experiments/make_student.py --vocab_from MODEL_DIR --layers 3 --hidden 312 --out DIR
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import backend  # noqa: E402

backend.use("torch")  # weights are written as safetensors: the same on either backend
import checkpoint  # noqa: E402
import modeling  # noqa: E402
import training  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--vocab_from", required=True, help="model directory whose vocab.txt the student shares")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--hidden", type=int, default=312)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--intermediate", type=int, default=None, help="default: hidden * 1200 / 312 (TinyBERT's ratio)")
    p.add_argument("--fit_size", type=int, default=768, help="the teacher's hidden size")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    training.set_seed(args.seed)
    vocab = checkpoint.find_vocab(args.vocab_from)
    n_vocab = sum(1 for _ in open(vocab, encoding="utf-8"))
    config = modeling.BertConfig(vocab_size=n_vocab, hidden_size=args.hidden, num_hidden_layers=args.layers,
                                 num_attention_heads=args.heads,
                                 intermediate_size=args.intermediate or round(args.hidden * 1200 / 312))
    model = modeling.TinyBertForSequenceClassification(config, num_labels=2, fit_size=args.fit_size)
    model.save_pretrained(args.out, vocab_file=vocab)
    print(f"wrote {args.out}: {args.layers} layers, hidden {args.hidden}, "
          f"{modeling.count_parameters(model) / 1e6:.1f}M parameters")


if __name__ == "__main__":
    main()
