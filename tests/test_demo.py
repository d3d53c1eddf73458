"""run_demo.sh on a reduced budget: every stage leaves its outputs, and the summary is read from them."""
import csv
import glob
import json
import os
import re
import subprocess

from conftest import ROOT, SHARED


def test_demo_runs_every_stage_and_summarizes_its_outputs(tmp_path):
    out = tmp_path / "demo"
    env = dict(os.environ, OUT=str(out), BACKEND="torch", TEACHER_EPOCHS="1", GD_EPOCHS="1", STAGE1_EPOCHS="1",
               STAGE2_EPOCHS="1", AUG_N="1", EVAL_STEP="5", OMP_NUM_THREADS="1",
               # a head trained on a few paragraphs: the demo's masked-LM step in seconds, not minutes
               MLM_ARGS="--pair_input --unfreeze_layers 2 --layer_lr 5e-4 --max_paragraphs 100 --heldout 20 --epochs 1")
    wikitext = sorted(glob.glob(os.path.join(SHARED, "corpus", "wikitext-2-raw", "wiki.*.raw")))
    if wikitext:  # the masked-LM head's corpus, where the project's data is (users put it in data/corpus)
        env["MLM_CORPUS"] = " ".join(wikitext)
    done = subprocess.run(["bash", os.path.join(ROOT, "run_demo.sh")], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])

    # every stage's outputs
    assert (out / "pretrain_data_json" / "epoch_0.json").stat().st_size > 0
    for model in ("general_tinybert", "teacher", "student_tmp", "student"):
        assert (out / model / "model.safetensors").is_file() and (out / model / "config.json").is_file()
    train = (out / "glue_data" / "SST-2" / "train.tsv").read_text().splitlines()
    aug = (out / "glue_data" / "SST-2" / "train_aug.tsv").read_text().splitlines()
    assert aug[0] == train[0] and len(aug) > len(train)  # header kept; originals plus new sentences
    assert set(train[1:]) <= set(aug[1:])
    for split in ("train", "train_aug", "eval"):
        assert any(n.startswith(f"{split}.of_record-") for n in os.listdir(out / "glue_ofrecord" / "SST-2" / split))
    assert json.load(open(out / "general_tinybert" / "config.json"))["num_hidden_layers"] == 3

    # the student was trained on the augmented OFRecord data: its step count says so
    with open(out / "student" / "train_log.csv") as f:
        last = list(csv.DictReader(f))[-1]
    assert int(last["step"]) == -(-(len(aug) - 1) // 32)  # one epoch of train_aug at batch 32

    # the summary's figures are the results files' figures
    teacher = json.load(open(out / "teacher" / "results_eval.json"))
    student = json.load(open(out / "student" / "results_eval.json"))
    evaluated = json.load(open(out / "results" / "results_eval.json"))
    assert evaluated["accuracy"] == student["accuracy"] and evaluated["parameters"] == student["parameters"]
    int8 = json.load(open(out / "student_int8" / "results_eval.json"))
    assert int8["backend"] == "onnxruntime" and int8["num_examples"] == student["num_examples"]
    rows = [line for line in (out / "summary.md").read_text().splitlines() if line.startswith("| ") and "%" in line]
    assert len(rows) == 3
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows]
    for row, results in zip(cells, (teacher, student, int8)):
        assert row[1] == f"{results['accuracy'] * 100:.1f}%"
        assert row[2] == f"{results['parameters'] / 1e6:.1f}M"
        assert row[7] == results["backend"]
    assert student["parameters"] < teacher["parameters"] / 1.5
    # the int8 row: the exported file's size (a quarter of the student's fp32 weights), the student's time
    onnx_mb = (out / "student_int8" / "student_int8.onnx").stat().st_size / 2 ** 20
    assert cells[2][3] == f"{onnx_mb:.1f} MB" and onnx_mb < 0.35 * float(cells[1][3].split()[0])
    assert cells[2][6] == cells[1][6]
    assert (out / "accuracy_vs_time.png").stat().st_size > 1000
    assert re.search(r"summary \(\d+:\d\d min:s in all, backend torch\)", done.stdout)
