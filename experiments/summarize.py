"""Table and plot of trained models, read from their own outputs (results_eval.json, train_log.csv).

    python experiments/summarize.py experiments/out/sst2_cpu                 # the runs of sst2_cpu.sh
    python experiments/summarize.py ROOT --run "teacher=teacher" --run "student=stage1+stage2"
    python experiments/summarize.py --ablation experiments/out/sst2_ablation                   # experiments/sst2_ablation.sh
    python experiments/summarize.py experiments/out/sst2_ablation/glue/SST-2 --aug_examples 5  # sentences before/after augmentation
    python experiments/summarize.py --card experiments/out/glue_card         # experiments/glue_card.sh

Each --run is LABEL=DIR[+DIR...] under ROOT: the stages whose train_log.csv add up to its training
time; the last holds results_eval.json and the weights (or the results of an .onnx file exported
from the stage before it, which adds no training time). The first run is the reference of the speed-up.
Prints one row per model (dev metric, parameters, size on disk, inference speed, training time) and
writes summary.md and accuracy_vs_time.png into ROOT.
"""
import argparse
import csv
import json
import os
import sys

SST2_CPU_RUNS = [  # experiments/sst2_cpu.sh
    "teacher MiniLM-L6 (fine-tuned)=teacher",
    "student 3L-312D, hard labels=student_hard",
    "student 3L-312D, TinyBERT (stage 1 + 2)=student_tmp+student_tinybert",
    "student 3L-312D, general-distilled init, TinyBERT=student_tmp_gd+student_tinybert_gd",
]


def read_log(path):
    with open(path, newline="") as f:
        return [{k: float(v) if v not in ("", None) else None for k, v in row.items()} for row in csv.DictReader(f)]


def curve(root, dirs):
    """(cumulative training seconds, dev accuracy) points across a run's stages; total seconds."""
    points, offset = [], 0.0
    for d in dirs:
        rows = read_log(os.path.join(root, d, "train_log.csv"))
        points += [(offset + r["train_seconds"], r[METRIC]) for r in rows if r.get(METRIC) is not None]
        offset += rows[-1]["train_seconds"] if rows else 0.0
    return points, offset


METRIC = "dev_acc"


def main(root, runs):
    rows, curves = [], {}
    for run in runs:
        label, dirs = run.split("=", 1)
        dirs = dirs.split("+")
        results = os.path.join(root, dirs[-1], "results_eval.json")
        if not os.path.isfile(results):
            print(f"({label}: no {results} yet)")
            continue
        r = json.load(open(results))
        exported = os.path.isfile(r["model_dir"])  # an .onnx file: its last directory holds no training
        points, seconds = curve(root, dirs[:-1] if exported else dirs)
        if not exported:  # an export's curve would repeat its source's
            curves[label] = points
        weights = r["model_dir"] if exported else os.path.join(root, dirs[-1], "model.safetensors")
        rows.append((label, r["accuracy"], r["parameters"], os.path.getsize(weights) / 2 ** 20, r["reasoningTime"],
                     seconds, r.get("backend", "?")))
    if not rows:
        sys.exit(f"{root}: no results_eval.json found")
    teacher = rows[0]
    lines = ["| model | dev accuracy | parameters | size on disk | inference ms/example | speed-up | training time "
             "| runs on |", "|---|---|---|---|---|---|---|---|"]
    for label, acc, params, size, speed, seconds, engine in rows:
        lines.append(f"| {label} | {acc * 100:.1f}% | {params / 1e6:.1f}M | {size:.1f} MB | {1000 / speed:.2f} | "
                     f"{speed / teacher[4]:.1f}x | {seconds / 60:.1f} min | {engine} |")
    table = "\n".join(lines)
    print(table)
    write_atomic(os.path.join(root, "summary.md"), table + "\n")
    plot(curves, os.path.join(root, "accuracy_vs_time.png"))


def plot(curves, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    colors, styles = {}, {}
    for label, points in curves.items():
        group = label.split(" (seed")[0]  # the seeds of one arm share a colour, each its own line style
        colors.setdefault(group, f"C{len(colors)}")
        style = ["-", "--", ":", "-."][styles.setdefault(group, -1) + 1 & 3]
        styles[group] += 1
        if points:
            ax.plot([s / 60 for s, _ in points], [a * 100 for _, a in points], marker=".", label=label,
                    color=colors[group], linestyle=style)
    ax.set_xlabel("training time (minutes, this CPU)")
    ax.set_ylabel("dev accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"wrote {path}")


# experiments/sst2_ablation.sh: (arm, what it is, its stages under ROOT/runs with {s} for the seed)
ABLATION_ARMS = [
    ("teacher", "MiniLM-L6 fine-tuned (6L-384D)", "teacher"),
    ("a", "hard labels only, random init", "a_s{s}"),
    ("b", "TinyBERT stage 1 + 2, random init", "b_s{s}_tmp+b_s{s}"),
    ("c", "b from the general-distilled init", "c_s{s}_tmp+c_s{s}"),
    ("d", "c on augmented data", "d_s{s}_tmp+d_s{s}"),
    ("e", "d with stage 2 only", "e_s{s}"),
    ("d bf16", "d with --teacher_dtype bf16", "d_bf16_s{s}_tmp+d_bf16_s{s}"),
    ("d long", "d with 3 epochs of stage 2", "d_s{s}_tmp+d_long_s{s}"),
    ("c auto", "c, the teacher read through transformers' Auto classes", "c_auto_s{s}_tmp+c_auto_s{s}"),
    ("f", "b from the teacher's layers 2, 4, 6 cut to 312 wide", "f_s{s}_tmp+f_s{s}"),
    ("f wide", "f at the teacher's width (3L-384D)", "f_wide_s{s}_tmp+f_wide_s{s}"),
]


def ablation_seeds(runs_root, pattern):
    """Seeds whose last stage of `pattern` finished (results_eval.json), sorted."""
    last = pattern.split("+")[-1]
    if "{s}" not in last:
        return [None] if os.path.isfile(os.path.join(runs_root, last, "results_eval.json")) else []
    prefix, suffix = last.split("{s}")
    found = []
    for name in sorted(os.listdir(runs_root)) if os.path.isdir(runs_root) else []:
        if name.startswith(prefix) and name.endswith(suffix) and name[len(prefix):len(name) - len(suffix)].isdigit():
            if os.path.isfile(os.path.join(runs_root, name, "results_eval.json")):
                found.append(int(name[len(prefix):len(name) - len(suffix)]))
    return sorted(found)


def ablation(root):
    """The arms' table: dev accuracy (mean and each seed), share of the teacher's, size, speed, time."""
    runs_root = os.path.join(root, "runs")
    rows, curves, teacher_acc, missing = [], {}, None, []
    for arm, what, pattern in ABLATION_ARMS:
        seeds = ablation_seeds(runs_root, pattern)
        if not seeds:
            missing.append(arm)
            continue
        accs, times, speeds = [], [], []
        for seed in seeds:
            dirs = [d.format(s=seed) for d in pattern.split("+")]
            r = json.load(open(os.path.join(runs_root, dirs[-1], "results_eval.json")))
            points, seconds = curve(runs_root, dirs)
            curves[f"{arm}" + (f" (seed {seed})" if seed is not None else "")] = points
            accs.append(r["accuracy"] * 100)
            times.append(seconds)
            speeds.append(r["reasoningTime"])
        mean = sum(accs) / len(accs)
        teacher_acc = teacher_acc if arm != "teacher" else mean
        rows.append((arm, what, mean, accs, seeds, r["parameters"], 1000 / (sum(speeds) / len(speeds)),
                     sum(times) / len(times)))
    if not rows:
        sys.exit(f"{runs_root}: no finished arm (results_eval.json) yet")
    lines = ["| arm | student | SST-2 dev accuracy | seeds: accuracy | of the teacher | parameters | "
             "inference ms/example | training time |", "|---|---|---|---|---|---|---|---|"]
    for arm, what, mean, accs, seeds, params, ms, seconds in rows:
        per_seed = ", ".join(f"{s}: {a:.1f}" for s, a in zip(seeds, accs)) if seeds != [None] else "-"
        spread = f" (spread {max(accs) - min(accs):.1f})" if len(accs) > 1 else ""
        share = f"{mean / teacher_acc * 100:.1f}%" if teacher_acc else "-"
        lines.append(f"| {arm} | {what} | {mean:.1f}%{spread} | {per_seed} | {share} | {params / 1e6:.1f}M | "
                     f"{ms:.2f} | {seconds / 60:.1f} min |")
    table = "\n".join(lines)
    print(table)
    if missing:
        print(f"not finished yet: {', '.join(missing)}")
    write_atomic(os.path.join(root, "summary.md"), table + "\n")
    plot(curves, os.path.join(root, "accuracy_vs_time.png"))


# The TinyBERT paper's Table 1 (Jiao et al., 2020; GLUE test set): BERT-base teacher and TinyBERT4
# (4 layers, 312 hidden), in the metric the paper reports per task.
PAPER = {  # task: (metric in results_eval.json, its name, BERT-base, TinyBERT4)
    "SST-2": ("accuracy", "acc", 93.5, 92.6),
    "CoLA": ("MCC", "MCC", 52.1, 44.1),
    "MRPC": ("f_1", "F1", 87.5, 86.4),
    "RTE": ("accuracy", "acc", 66.4, 66.6),
    "STS-B": ("spearman", "Spearman", 85.8, 80.4),
}
PAPER_GLUE_RETAINED = 77.0 / 79.5 * 100  # the paper's GLUE average, TinyBERT4 / BERT-base
CARD_ARMS = [("teacher", "teacher"), ("hard", "hard_s{s}"), ("tinybert", "tinybert_s{s}_tmp+tinybert_s{s}")]


def card_arm(task_root, pattern, metric):
    """(mean metric x 100, {seed: value}, mean training seconds over seeds) of one arm of one task, or None."""
    seeds = ablation_seeds(task_root, pattern)
    if not seeds:
        return None
    values, seconds = {}, []
    for seed in seeds:
        dirs = [d.format(s=seed) for d in pattern.split("+")]
        values[seed] = json.load(open(os.path.join(task_root, dirs[-1], "results_eval.json")))[metric] * 100
        seconds.append(curve(task_root, dirs)[1])
    return sum(values.values()) / len(values), values, sum(seconds) / len(seconds)


def majority_baseline(glue_dir, task):
    """Accuracy of always answering dev's commonest label (WNLI's dev set is built so that models score
    below it: the card reports this baseline, as GLUE papers do)."""
    rows = open(os.path.join(glue_dir, task, "dev.tsv"), encoding="utf-8").read().splitlines()[1:]
    labels = [row.rsplit("\t", 1)[1] for row in rows if row]
    return max(labels.count(v) for v in set(labels)) / len(labels) * 100


def total_hours(root):
    """CPU-hours of every run under `root` (train_log.csv's last train_seconds, one thread each) plus
    pregeneration's recorded seconds."""
    seconds = 0.0
    for here, _, files in os.walk(root):
        if "train_log.csv" in files:
            rows = read_log(os.path.join(here, "train_log.csv"))
            seconds += rows[-1]["train_seconds"] if rows else 0.0
        if ".seconds" in files:
            seconds += float(open(os.path.join(here, ".seconds")).read())
    return seconds / 3600


def card(root, glue_dir=None):
    """docs/results.md's card: per task the teacher, the hard-label and the TinyBERT student (mean of
    seeds), the TinyBERT student's share of the teacher, beside the paper's; card.md and card.png."""
    lines = ["| task | metric | teacher | hard-label student | TinyBERT student (seeds) | retained | "
             "paper: BERT-base → TinyBERT4 | paper retained | beats hard labels |",
             "|---|---|---|---|---|---|---|---|---|"]
    bars, missing = [], []
    for task, (metric, name, paper_teacher, paper_student) in PAPER.items():
        arms = {arm: card_arm(os.path.join(root, task), pattern, metric) for arm, pattern in CARD_ARMS}
        if any(v is None for v in arms.values()):
            missing.append(f"{task} ({', '.join(a for a, v in arms.items() if v is None)})")
            continue
        teacher, hard, tiny = (arms[a][0] for a, _ in CARD_ARMS)
        per_seed = ", ".join(f"{s}: {v:.1f}" for s, v in arms["tinybert"][1].items())
        hard_seeds = ", ".join(f"{v:.1f}" for v in arms["hard"][1].values())
        retained, paper_retained = tiny / teacher * 100, paper_student / paper_teacher * 100
        lines.append(f"| {task} | {name} | {teacher:.1f} | {hard:.1f} ({hard_seeds}) | {tiny:.1f} ({per_seed}) | "
                     f"{retained:.1f}% | {paper_teacher} → {paper_student} | {paper_retained:.1f}% | "
                     f"{'yes' if tiny > hard else 'no'} |")
        bars.append((task, hard / teacher * 100, retained, paper_retained))
    if glue_dir and os.path.isfile(os.path.join(glue_dir, "WNLI", "dev.tsv")):
        lines.append(f"| WNLI | acc | majority {majority_baseline(glue_dir, 'WNLI'):.1f} | (majority) | (majority) | "
                     "- | - | - | - |")
    out = ["\n".join(lines)]
    if bars:
        ours = sum(b[2] for b in bars) / len(bars)
        paper = sum(b[3] for b in bars) / len(bars)
        out.append(f"\nTinyBERT student's share of the teacher over {len(bars)} task(s): {ours:.1f}% "
                   f"(the paper on the same tasks: {paper:.1f}%; on all of GLUE: {PAPER_GLUE_RETAINED:.1f}%). "
                   "The card's figures are GLUE dev, the paper's GLUE test.")
    out.append(f"Training time of everything under {root}: {total_hours(root):.1f} CPU-hours (one thread a run).")
    if missing:
        out.append("not finished yet: " + "; ".join(missing))
    text = "\n".join(out)
    print(text)
    write_atomic(os.path.join(root, "card.md"), text + "\n")
    if bars:
        plot_card(bars, os.path.join(root, "card.png"))


def plot_card(bars, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 3.5))
    x = range(len(bars))
    ax.bar([i - 0.2 for i in x], [b[1] for b in bars], width=0.4, label="hard-label student")
    ax.bar([i + 0.2 for i in x], [b[2] for b in bars], width=0.4, label="TinyBERT student")
    ax.scatter(list(x), [b[3] for b in bars], color="black", marker="_", s=400, zorder=3, label="paper's TinyBERT4")
    ax.axhline(100, color="grey", linewidth=0.8)
    ax.set_xticks(list(x))
    ax.set_xticklabels([b[0] for b in bars])
    ax.set_ylabel("share of the teacher's dev score (%)")
    ax.set_ylim(min(50, min(min(b[1:]) for b in bars) - 5), 110)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"wrote {path}")


def write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def aug_examples(task_dir, n=5, seed=0, min_words=6):
    """A markdown table of n seeded-random training sentences (of min_words words or more) and the
    first augmented sentence written after each in train_aug.tsv."""
    import random
    read = lambda name: open(os.path.join(task_dir, name), encoding="utf-8").read().splitlines()[1:]
    train, aug = read("train.tsv"), read("train_aug.tsv")
    groups, i = [], 0
    for row in aug:  # originals come in train.tsv's order, each followed by its variants
        if i < len(train) and row == train[i]:
            groups.append([row])
            i += 1
        elif groups:
            groups[-1].append(row)
    if i != len(train):
        sys.exit(f"{task_dir}: train_aug.tsv does not hold train.tsv's rows in order (matched {i} of {len(train)})")
    text = lambda row: row.rsplit("\t", 1)[0].strip()
    pool = [g for g in groups if len(g) > 1 and len(text(g[0]).split()) >= min_words]
    lines = ["| training sentence | augmented |", "|---|---|"]
    for g in random.Random(seed).sample(pool, min(n, len(pool))):
        lines.append(f"| {text(g[0])} | {text(g[1])} |")
    sizes = [len(g) - 1 for g in groups]
    print("\n".join(lines))
    print(f"\n{len(train)} sentences, {len(aug)} rows in train_aug.tsv, "
          f"{sum(sizes) / len(sizes):.2f} new sentences per sentence")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("root", nargs="?", default="experiments/out/sst2_cpu")
    p.add_argument("--run", action="append", help="LABEL=DIR[+DIR...] (default: the runs of sst2_cpu.sh)")
    p.add_argument("--ablation", action="store_true", help="ROOT is an experiments/sst2_ablation.sh output")
    p.add_argument("--card", action="store_true", help="ROOT is an experiments/glue_card.sh output")
    p.add_argument("--glue_dir", help="with --card: the GLUE root, for WNLI's majority baseline")
    p.add_argument("--aug_examples", type=int, metavar="N",
                   help="print N sentences of ROOT/train.tsv beside their first variant in ROOT/train_aug.tsv")
    args = p.parse_args()
    if args.aug_examples:
        aug_examples(args.root, args.aug_examples)
    elif args.card:
        card(args.root, args.glue_dir)
    elif args.ablation:
        ablation(args.root)
    else:
        main(args.root, args.run or SST2_CPU_RUNS)
