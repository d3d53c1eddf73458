"""Label sentences with a trained student: a model directory (OneFlow or PyTorch) or an .onnx file.

    echo "a gripping, funny film ." | python predict.py --model models/student_model/SST-2
    python predict.py --model student.onnx --task_name MRPC --input pairs.tsv --output predictions.tsv

Input (stdin, or --input FILE): `text`, one sentence a line; or `tsv`, one example a line with the
task's text columns (sentence, or sentence1<TAB>sentence2 for MRPC, QQP, MNLI, QNLI, RTE, WNLI,
STS-B). --input_format auto takes tsv for *.tsv files and pair tasks, text otherwise.

Output (stdout, or --output FILE written atomically): one line per input line, in input order:
`label<TAB>p(label_1)<TAB>p(label_2)...` (softmax probabilities, in the model's label order), or the
score for a regressor (STS-B). A blank input line gives a blank output line, so line N of the output
answers line N of the input (--header adds a first line naming the columns, shifting that by one).
Bad input stops with FILE:LINE: bytes that are not UTF-8, a tsv row with the wrong number of columns,
a file without a single sentence. Inputs longer than --max_seq_length are truncated and counted.
"""
import argparse
import logging
import os
import sys
from typing import List, NamedTuple, Optional

import numpy as np

import backend
import files
import cli
import glue
import inference

STDIN = "-"
DEFAULT_MAX_SEQ_LENGTH = 128  # BERT's usual sentence budget; a model with fewer positions caps it


class InputError(ValueError):
    pass


class Row(NamedTuple):
    line: int
    texts: Optional[List[str]]  # None: a blank line


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__.split("\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True,
                   help="model directory (any weight format) or an .onnx file from export_onnx.py")
    p.add_argument("--task_name",
                   help="GLUE task: label names and whether inputs are pairs (default: the model's labels)")
    p.add_argument("--input", default=STDIN, help="input file (default: stdin)")
    p.add_argument("--input_format", choices=["auto", "text", "tsv"], default="auto")
    p.add_argument("--output", help="output tsv (default: stdout)")
    p.add_argument("--header", action="store_true", help="start the output with a line naming its columns")
    p.add_argument("--max_seq_length", type=int,
                   help=f"longer inputs are truncated (and counted); default {DEFAULT_MAX_SEQ_LENGTH}, or the model's "
                        "max_position_embeddings where that is smaller")
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--num_threads", type=int, help="CPU threads (PyTorch, onnxruntime; default: theirs)")
    # on by default, as in every training stage; None (not given) rather than True, so that main() can say
    # once on stderr that the GPU was chosen without being asked for: this script used to default to the CPU
    p.add_argument("--gpu", action=argparse.BooleanOptionalAction, default=None,
                   help="run a model directory on CUDA when available (the default; an .onnx file runs on the CPU); "
                        "--no-gpu forces the CPU")
    backend.add_argument(p)
    args = p.parse_args(argv)
    if args.batch_size < 1:
        p.error(f"--batch_size {args.batch_size}: must be at least 1")
    if args.max_seq_length is not None and args.max_seq_length < 3:
        p.error(f"--max_seq_length {args.max_seq_length}: needs room for [CLS] and two [SEP] (at least 3)")
    return args


# ----------------------------------------------------------------------------------------------
# Input
# ----------------------------------------------------------------------------------------------
def read_lines(path):
    """(name for messages, [(line number, text)]) of a file or stdin; non-UTF-8 bytes are an error."""
    name = "<stdin>" if path == STDIN else path
    if path == STDIN:
        data = sys.stdin.buffer.read()
    else:
        if not os.path.isfile(path):
            raise InputError(f"{path}: input file not found")
        with open(path, "rb") as f:
            data = f.read()
    raw = data.split(b"\n")
    if raw and raw[-1] == b"":
        raw.pop()  # the newline that ends the last line
    if not raw:
        raise InputError(f"{name}:1: empty input (no lines)")
    lines = []
    for number, chunk in enumerate(raw, start=1):
        try:
            lines.append((number, chunk.rstrip(b"\r").decode("utf-8")))
        except UnicodeDecodeError as e:
            raise InputError(f"{name}:{number}: bytes that are not UTF-8 "
                             f"({e.reason}: {chunk[e.start:e.end]!r})") from None
    return name, lines


def parse_rows(name, lines, fmt, width):
    """Rows of texts; `width` texts a row (1 or 2), or None: as many as the first row has (at most 2)."""
    rows = []
    for number, text in lines:
        if not text.strip():
            rows.append(Row(number, None))
            continue
        texts = [text] if fmt == "text" else text.split("\t")
        width = width or min(len(texts), 2)
        if len(texts) != width:
            shape = "sentence1<TAB>sentence2" if width == 2 else "one sentence, no tab"
            raise InputError(f"{name}:{number}: {len(texts)} columns, expected {width} ({shape}): {text[:120]!r}")
        rows.append(Row(number, texts))
    if all(r.texts is None for r in rows):
        raise InputError(f"{name}:1: no sentence in the input (only blank lines)")
    return rows


def input_format(requested, path, pairs):
    if requested != "auto":
        return requested
    return "tsv" if pairs or path.endswith(".tsv") else "text"


# ----------------------------------------------------------------------------------------------
# Labels and output
# ----------------------------------------------------------------------------------------------
def resolve_labels(student, task, model_path):
    """The label names to print: the model's, checked against the task's when one is given."""
    if task is None:
        return student.labels
    processor = glue.get_processor(task)
    if processor.num_labels != len(student.labels):
        raise InputError(f"{model_path} has {len(student.labels)} output(s), {processor.task} has "
                         f"{processor.num_labels} label(s): a model of another task?")
    generic = [f"LABEL_{i}" for i in range(len(student.labels))]
    if student.labels not in (generic, processor.labels):
        raise InputError(f"{model_path}: labels {student.labels} differ from the {processor.task} labels "
                         f"{processor.labels}")
    return processor.labels


def format_rows(rows, logits, labels):
    """One output line per input row; blank rows stay blank."""
    out, k = [], 0
    probs = None if labels == [None] else softmax(logits)
    for row in rows:
        if row.texts is None:
            out.append("")
            continue
        if probs is None:
            out.append(f"{logits[k, 0]:.4f}")
        else:
            out.append("\t".join([str(labels[int(probs[k].argmax())])] + [f"{p:.6f}" for p in probs[k]]))
        k += 1
    return out


def header_line(labels):
    return "score" if labels == [None] else "\t".join(["label"] + [f"p_{name}" for name in labels])


def softmax(logits):
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def write_output(path, lines):
    text = "".join(line + "\n" for line in lines)
    if path:
        files.write_text_atomic(path, text)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()


# ----------------------------------------------------------------------------------------------
def predict_rows(student, rows, max_seq_length, batch_size, progress):
    """(logits of the non-blank rows, number truncated)."""
    examples = [glue.InputExample(f"line-{r.line}", r.texts[0], r.texts[1] if len(r.texts) > 1 else None, None)
                for r in rows if r.texts is not None]
    glue_log = logging.getLogger("glue")
    level = glue_log.level
    glue_log.setLevel(logging.ERROR)  # its truncation warning: main() reports it, naming the input
    try:
        return inference.predict_examples(student.runner, examples, student.tokenizer, max_seq_length, batch_size,
                                          progress=progress)
    finally:
        glue_log.setLevel(level)


def main(argv=None):
    args = parse_args(argv)
    pairs = len(glue.get_processor(args.task_name).test_text_columns) == 2 if args.task_name else False
    width = (2 if pairs else 1) if args.task_name else None
    fmt = input_format(args.input_format, args.input, pairs)
    if fmt == "text" and pairs:
        raise InputError(f"--task_name {args.task_name} takes sentence pairs: give a tsv (--input_format tsv)")
    name, lines = read_lines(args.input)
    rows = parse_rows(name, lines, fmt, width if fmt == "tsv" else 1)
    gpu = (args.gpu is not False and not inference.is_onnx(args.model)
           and backend.framework(args.backend).cuda.is_available())
    device = "cuda" if gpu else "cpu"
    if gpu and args.gpu is None:
        print("predict: running the model on the GPU, the default as in the training stages (--no-gpu: the CPU)",
              file=sys.stderr)
    student = inference.load_student(args.model, args.backend, device, args.num_threads)
    max_seq_length = args.max_seq_length
    if max_seq_length is None:
        max_seq_length = min(DEFAULT_MAX_SEQ_LENGTH, student.max_positions)
    if max_seq_length > student.max_positions:
        raise InputError(f"--max_seq_length {max_seq_length} exceeds the model's max_position_embeddings "
                         f"{student.max_positions}")
    labels = resolve_labels(student, args.task_name, args.model)
    logits, truncated = predict_rows(student, rows, max_seq_length, args.batch_size, args.input != STDIN)
    if truncated:
        print(f"predict: {truncated} of {len(logits)} inputs of {name} were longer than --max_seq_length "
              f"{max_seq_length} tokens and were truncated", file=sys.stderr)
    out = format_rows(rows, logits, labels)
    write_output(args.output, ([header_line(labels)] if args.header else []) + out)
    if args.output:
        print(f"predict: {len(logits)} predictions ({student.engine}) -> {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    cli.run(main)
