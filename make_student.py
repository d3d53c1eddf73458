"""A random TinyBERT student on a teacher's vocabulary, for a teacher with no General TinyBERT of
its vocabulary (a RoBERTa, XLM-R, DeBERTa ... teacher): the student's shape, the teacher's vocabulary
size, padding id and tokenizer files (vocab.txt, or tokenizer.json and its companions).

    python make_student.py --teacher_model models/finetuned_teacher/SST-2 --output_dir models/student_init \\
        --backend torch
    # a large vocabulary (XLM-R's 250k tokens) cut to the tokens of the task's text:
    python make_student.py --teacher_model models/xlmr_sst2 --output_dir models/student_init \\
        --trim_vocab data/glue_data/SST-2 --task_name SST-2 --backend torch

then task_distill.py --intermediate_distill --student_model models/student_init (see docs/teachers.md).
"""
import argparse

import backend
import checkpoint
import cli
import glue
import modeling
import teachers
import vocabulary


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--teacher_model", required=True, help="the teacher's model directory (its tokenizer is copied)")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--num_hidden_layers", type=int, default=4)
    p.add_argument("--hidden_size", type=int, default=312)
    p.add_argument("--num_attention_heads", type=int, default=12)
    p.add_argument("--intermediate_size", type=int, default=1200)
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
    return args


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
    trimmed = texts = None
    if args.trim_vocab:
        trimmed, texts = trim(args.teacher_model, args.trim_vocab, args.task_name)
    params = teachers.write_student(args.teacher_model, args.output_dir, modeling, args.num_hidden_layers,
                                    args.hidden_size, args.num_attention_heads, args.intermediate_size, args.seed,
                                    trimmed)
    if trimmed:
        print(vocabulary.parameters_line(trimmed.teacher_vocab_size, trimmed.vocab_size, args.hidden_size, params))
        bad = vocabulary.mismatches(checkpoint.load_tokenizer(args.teacher_model),
                                    checkpoint.load_tokenizer(args.output_dir), trimmed.teacher_ids, texts)
        print(f"checked: the student's tokenizer gives the teacher's tokens for {len(texts) - bad:,} of "
              f"{len(texts):,} texts" + (f" ({bad:,} differ: distillation feeds the teacher the student's pieces)"
                                          if bad else ""))
    print(f"wrote {args.output_dir}")


if __name__ == "__main__":
    cli.run(main)
