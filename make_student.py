"""A random TinyBERT student on a teacher's vocabulary, for a teacher with no General TinyBERT of
its vocabulary (a RoBERTa, XLM-R, DeBERTa ... teacher): the student's shape, the teacher's vocabulary
size, padding id and tokenizer files (vocab.txt, or tokenizer.json and its companions).

    python make_student.py --teacher_model models/finetuned_teacher/SST-2 --output_dir models/student_init \\
        --backend torch

then task_distill.py --intermediate_distill --student_model models/student_init (see docs/teachers.md).
"""
import argparse

import backend
import cli
import modeling
import teachers


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--teacher_model", required=True, help="the teacher's model directory (its tokenizer is copied)")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--num_hidden_layers", type=int, default=4)
    p.add_argument("--hidden_size", type=int, default=312)
    p.add_argument("--num_attention_heads", type=int, default=12)
    p.add_argument("--intermediate_size", type=int, default=1200)
    p.add_argument("--seed", type=int, default=42)
    backend.add_argument(p)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    backend.check_bound(args.backend, modeling.flow)
    out = teachers.write_student(args.teacher_model, args.output_dir, modeling, args.num_hidden_layers,
                                 args.hidden_size, args.num_attention_heads, args.intermediate_size, args.seed)
    print(f"wrote {out}")


if __name__ == "__main__":
    cli.run(main)
