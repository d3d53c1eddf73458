"""A TinyBERT student on a teacher's vocabulary, for a teacher with no General TinyBERT of its
vocabulary (a RoBERTa, XLM-R, DeBERTa ... teacher): the teacher's vocabulary size, padding id and
tokenizer files (vocab.txt, or tokenizer.json and its companions), and either a random encoder of the
student's shape or (--init_from_teacher) the teacher's own embeddings and every k-th layer, whole or
narrowed by keeping evenly spaced units.

    python make_student.py --teacher_model models/finetuned_teacher/SST-2 --output_dir models/student_init \\
        --backend torch
    # a large vocabulary (XLM-R's 250k tokens) cut to the tokens of the task's text:
    python make_student.py --teacher_model models/xlmr_sst2 --output_dir models/student_init \\
        --trim_vocab data/glue_data/SST-2 --task_name SST-2 --backend torch
    # a 4-layer student of the teacher's width starting from its layers 3, 6, 9, 12:
    python make_student.py --teacher_model models/roberta_sst2 --output_dir models/student_init --init_from_teacher
    # the same, 312 wide (evenly spaced hidden units, 26 of each head's 64 dimensions, 1200 feed-forward units):
    python make_student.py --teacher_model models/roberta_sst2 --output_dir models/student_init --init_from_teacher \
        --hidden_size 312 --intermediate_size 1200

then task_distill.py --intermediate_distill --student_model models/student_init (see docs/teachers.md).
"""
import argparse

import backend
import checkpoint
import cli
import distillation
import glue
import modeling
import teachers
import vocabulary

SHAPE = dict(hidden_size=312, num_attention_heads=12, intermediate_size=1200)  # TinyBERT-4's


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--teacher_model", required=True, help="the teacher's model directory (its tokenizer is copied)")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--num_hidden_layers", type=int, default=4)
    for name in SHAPE:
        p.add_argument(f"--{name}", type=int, help=f"default {SHAPE[name]}; the teacher's with --init_from_teacher, "
                                                   "where a smaller value keeps an evenly spaced part of its")
    p.add_argument("--init_from_teacher", action="store_true",
                   help="start from the teacher's embeddings and the layers --layer_map names (a BERT, RoBERTa, "
                        "XLM-R or ELECTRA teacher), of its width or, with a smaller --hidden_size, "
                        "--num_attention_heads or --intermediate_size, an evenly spaced selection of its units")
    p.add_argument("--layer_map", default="",
                   help="with --init_from_teacher: the teacher layer of each student layer, e.g. 1,2,3,4 (default: the "
                        "uniform map task_distill.py's stage 1 uses, so each layer starts as the one it learns from)")
    p.add_argument("--trim_vocab", metavar="DATA_DIR",
                   help="keep only the special tokens and the tokens of this GLUE task directory's text (every split "
                        "file in it: train, dev, test, train_aug): the student's embeddings and tokenizer cover them "
                        "alone (needs --task_name; docs/teachers.md says what text outside it gets)")
    p.add_argument("--task_name", help="the GLUE task of --trim_vocab: " + ", ".join(glue.PROCESSORS))
    p.add_argument("--seed", type=int, default=42)
    backend.add_argument(p)
    args = p.parse_args(argv)
    if args.trim_vocab and not args.task_name:
        p.error("--trim_vocab needs --task_name (which columns of the task's files are text)")
    for name in ("num_hidden_layers", *SHAPE):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name} {getattr(args, name)}: must be at least 1")
    if args.layer_map and not args.init_from_teacher:
        p.error("--layer_map picks the teacher layers --init_from_teacher copies; a random student has none")
    return args


def student_shape(teacher_dir, given, init_from_teacher):
    """{hidden_size, num_attention_heads, intermediate_size}: those given, else TinyBERT-4's; with the
    teacher's layers copied, those given else the teacher's (a wider value is refused by
    teachers.width_selection when the layers are cut)."""
    defaults = teachers.teacher_shape(teacher_dir) if init_from_teacher else SHAPE
    return {k: defaults[k] if given[k] is None else given[k] for k in SHAPE}


def trim(teacher_dir, data_dir, task):
    """(the Trimmed tokenizer of the task's text, the texts)."""
    texts, splits = glue.task_texts(data_dir, task)
    size = int(checkpoint.read_json(checkpoint.find_config(teacher_dir))["vocab_size"])
    trimmed = vocabulary.trim(teacher_dir, texts, size)
    print(f"{len(texts):,} texts of {task} ({', '.join(splits)}) use {trimmed.vocab_size:,} of the teacher's "
          f"{size:,} tokens (special tokens included)")
    return trimmed, texts


def main(argv=None):
    args = parse_args(argv)
    backend.check_bound(args.backend, modeling.flow)
    shape = student_shape(args.teacher_model, {k: getattr(args, k) for k in SHAPE}, args.init_from_teacher)
    layer_map = None
    if args.init_from_teacher:
        depth = int(checkpoint.read_json(checkpoint.find_config(args.teacher_model))["num_hidden_layers"])
        layer_map = distillation.parse_layer_map(args.layer_map, depth, args.num_hidden_layers)
    trimmed = texts = None
    if args.trim_vocab:
        trimmed, texts = trim(args.teacher_model, args.trim_vocab, args.task_name)
    params, copied = teachers.write_student(args.teacher_model, args.output_dir, modeling, args.num_hidden_layers,
                                            shape["hidden_size"], shape["num_attention_heads"],
                                            shape["intermediate_size"], args.seed, trimmed, layer_map)
    if layer_map:
        print(f"initialised from the teacher: embeddings and layers {', '.join(map(str, layer_map))} as student layers "
              f"1..{len(layer_map)} ({len(copied)} tensors; the pooler "
              f"{'too' if any(n.startswith('bert.pooler.') for n in copied) else 'is random: the teacher has none'})")
        theirs = teachers.teacher_shape(args.teacher_model)
        cut = [f"{k} {theirs[k]} -> {shape[k]}" for k in SHAPE if shape[k] != theirs[k]]
        if cut:
            print("  narrower than the teacher, by uniform weight selection (the same evenly spaced units in every "
                  "tensor): " + ", ".join(cut))
    if trimmed:
        print(vocabulary.parameters_line(trimmed.teacher_vocab_size, trimmed.vocab_size, shape["hidden_size"], params))
        bad = vocabulary.mismatches(checkpoint.load_tokenizer(args.teacher_model),
                                    checkpoint.load_tokenizer(args.output_dir), trimmed.teacher_ids, texts)
        print(f"checked: the student's tokenizer gives the teacher's tokens for {len(texts) - bad:,} of "
              f"{len(texts):,} texts" + (f" ({bad:,} differ: distillation feeds the teacher the student's pieces)"
                                          if bad else ""))
    print(f"wrote {args.output_dir}")


if __name__ == "__main__":
    cli.run(main)
