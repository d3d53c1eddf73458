"""Table and plot of an experiments/sst2_cpu.sh run, read from the runs' own outputs.

    python experiments/summarize.py experiments/out/sst2_cpu

Prints one row per model (dev accuracy, parameters, size on disk, inference examples/s, training
time) and writes summary.md and accuracy_vs_time.png into the run directory.
"""
import csv
import json
import os
import sys

RUNS = [  # (label, directories whose train_log.csv add up to the training time, results directory)
    ("teacher MiniLM-L6 (fine-tuned)", ["teacher"], "teacher"),
    ("student 3L-312D, hard labels", ["student_hard"], "student_hard"),
    ("student 3L-312D, TinyBERT (stage 1 + 2)", ["student_tmp", "student_tinybert"], "student_tinybert"),
    ("student 3L-312D, TinyBERT + augmentation", ["student_tmp_aug", "student_tinybert_aug"], "student_tinybert_aug"),
    ("student 3L-312D, general TinyBERT init", ["student_tmp_gd", "student_tinybert_gd"], "student_tinybert_gd"),
]


def read_log(path):
    with open(path, newline="") as f:
        return [{k: float(v) if v not in ("", None) else None for k, v in row.items()} for row in csv.DictReader(f)]


def curve(root, dirs):
    """(cumulative training seconds, dev accuracy) points across a run's stages; total seconds."""
    points, offset = [], 0.0
    for d in dirs:
        rows = read_log(os.path.join(root, d, "train_log.csv"))
        points += [(offset + r["train_seconds"], r["dev_acc"]) for r in rows if r.get("dev_acc") is not None]
        offset += rows[-1]["train_seconds"] if rows else 0.0
    return points, offset


def main(root):
    rows, curves = [], {}
    for label, dirs, result_dir in RUNS:
        results = os.path.join(root, result_dir, "results_eval.json")
        if not os.path.isfile(results):
            continue
        r = json.load(open(results))
        points, seconds = curve(root, dirs)
        curves[label] = points
        size = os.path.getsize(os.path.join(root, result_dir, "model.safetensors")) / 2 ** 20
        rows.append((label, r["accuracy"], r["parameters"], size, r["reasoningTime"], seconds))
    if not rows:
        sys.exit(f"{root}: no results_eval.json found")
    teacher = rows[0]
    lines = ["| model | SST-2 dev acc | parameters | size on disk | inference ex/s | speed-up | training time |",
             "|---|---|---|---|---|---|---|"]
    for label, acc, params, size, speed, seconds in rows:
        lines.append(f"| {label} | {acc * 100:.1f}% | {params / 1e6:.1f}M | {size:.1f} MB | {speed:.0f} | "
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
    ax.set_ylabel("SST-2 dev accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"wrote {path}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "experiments/out/sst2_cpu")
