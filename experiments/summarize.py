"""Table and plot of trained models, read from their own outputs (results_eval.json, train_log.csv).

    python experiments/summarize.py experiments/out/sst2_cpu                 # the runs of sst2_cpu.sh
    python experiments/summarize.py ROOT --run "teacher=teacher" --run "student=stage1+stage2"

Each --run is LABEL=DIR[+DIR...] under ROOT: the stages whose train_log.csv add up to its training
time; the last holds results_eval.json and the weights. The first run is the reference of the speed-up.
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
        points, seconds = curve(root, dirs)
        curves[label] = points
        size = os.path.getsize(os.path.join(root, dirs[-1], "model.safetensors")) / 2 ** 20
        rows.append((label, r["accuracy"], r["parameters"], size, r["reasoningTime"], seconds))
    if not rows:
        sys.exit(f"{root}: no results_eval.json found")
    teacher = rows[0]
    lines = ["| model | dev accuracy | parameters | size on disk | inference ms/example | speed-up | training time |",
             "|---|---|---|---|---|---|---|"]
    for label, acc, params, size, speed, seconds in rows:
        lines.append(f"| {label} | {acc * 100:.1f}% | {params / 1e6:.1f}M | {size:.1f} MB | {1000 / speed:.2f} | "
                     f"{speed / teacher[4]:.1f}x | {seconds / 60:.1f} min |")
    table = "\n".join(lines)
    print(table)
    with open(os.path.join(root, "summary.md"), "w") as f:
        f.write(table + "\n")
    plot(curves, os.path.join(root, "accuracy_vs_time.png"))


def plot(curves, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, points in curves.items():
        if points:
            ax.plot([s / 60 for s, _ in points], [a * 100 for _, a in points], marker=".", label=label)
    ax.set_xlabel("training time (minutes, this CPU)")
    ax.set_ylabel("dev accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"wrote {path}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("root", nargs="?", default="experiments/out/sst2_cpu")
    p.add_argument("--run", action="append", help="LABEL=DIR[+DIR...] (default: the runs of sst2_cpu.sh)")
    args = p.parse_args()
    main(args.root, args.run or SST2_CPU_RUNS)
