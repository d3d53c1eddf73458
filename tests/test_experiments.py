"""experiments/: train_mlm_head.py (BERT's masking; a head trained on a frozen encoder predicts held-out
words it could not before, written as a masked LM data augmentation loads) and summarize.py --ablation
(the arms' table from their own output files)."""
import importlib.util
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import backend
from conftest import ROOT, tiny_config_dict

if backend.name() != "torch":
    pytest.skip("train_mlm_head.py runs on PyTorch", allow_module_level=True)

import checkpoint  # noqa: E402
import data_augmentation as da  # noqa: E402
import modeling  # noqa: E402


def load_script():
    spec = importlib.util.spec_from_file_location("train_mlm_head", os.path.join(ROOT, "experiments", "train_mlm_head.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_masking_is_berts():
    head = load_script()
    rng = np.random.default_rng(0)
    rows = [[101] + list(rng.integers(2000, 3000, 38)) + [102] for _ in range(500)]
    masked, targets = head.mask_rows(rows, np.random.default_rng(1), np.arange(999, 30522), 103)
    assert len(targets) == 500 * round(38 * 0.15)
    assert set(targets[:, 1]) <= set(range(1, 39))  # never [CLS] or [SEP]
    assert all(rows[r][p] == gold for r, p, gold in targets)
    now = np.array([masked[r][p] for r, p, _ in targets])
    assert 0.76 < np.mean(now == 103) < 0.84
    kept = np.mean(now == targets[:, 2])
    assert 0.07 < kept < 0.13  # 10% kept (a random piece rarely draws the same id)
    pairs, starts = head.as_pairs(masked[:2], [np.array(r) for r in rows[:2]])
    ids, attention, types = head.padded(pairs, starts)
    assert ids.shape == (2, 79) and (ids[:, 40:].numpy() == np.array(rows[:2])[:, 1:]).all()
    assert (types.numpy() == (np.arange(79) >= 40)).all() and attention.numpy().all()
    chosen = np.zeros((500, 40), bool)
    chosen[targets[:, 0], targets[:, 1]] = True
    assert (np.array(masked)[~chosen] == np.array(rows)[~chosen]).all()


def test_trained_head_predicts_held_out_words(tmp_path, capsys):
    head = load_script()
    # a language a small random encoder can learn: a paragraph repeats one of 12 words, so a masked
    # word is its neighbours'
    words = "red green blue river stone cloud music paper garden winter silver forest".split()
    with open(tmp_path / "wiki.train.raw", "w") as f:
        f.write(" = A heading = \n")
        for i in range(240):
            f.write(" " + " ".join([words[i % 12]] * 40) + " . \n")
    vocab = ["[PAD]", "[unused0]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "the"] + words
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    config = modeling.BertConfig.from_dict(tiny_config_dict(vocab_size=len(vocab), hidden_size=48))
    base = str(tmp_path / "encoder")
    modeling.BertModel(config).save_pretrained(base, vocab_file=str(tmp_path / "vocab.txt"))
    out = str(tmp_path / "mlm")
    head.main(head.parse_args(["--model", base, "--out", out, "--corpus", str(tmp_path / "wiki.train.raw"),
                               "--heldout", "20", "--epochs", "15", "--unfreeze_layers", "1", "--lr", "1e-2",
                               "--layer_lr", "3e-3", "--dtype", "fp32", "--threads", "1"]))
    printed = capsys.readouterr().out
    results = json.load(open(os.path.join(out, "mlm_head_results.json")))
    before, after = results["untrained"], results["trained"]
    assert results["train_paragraphs"] == 220 and results["heldout_paragraphs"] == 20
    assert after["top1"] > max(0.8, before["top1"] + 0.4) and after["top15"] >= after["top1"]
    assert after["loss"] < before["loss"] - 0.5
    assert f"top-1 {after['top1']:.1%}, top-15 {after['top15']:.1%}" in printed
    # what data augmentation loads predicts the same words: the weights were saved as trained
    model = da.load_masked_lm(out, "cpu")
    tokenizer = checkpoint.load_tokenizer(out)
    text = " ".join(["music"] * 20)
    ids = tokenizer(text)["input_ids"]
    position = ids.index(tokenizer.convert_tokens_to_ids("music"))
    ids[position] = tokenizer.mask_token_id
    import torch
    with torch.no_grad():
        logits = model(torch.tensor([ids]))[0, position]
    assert "music" in tokenizer.convert_ids_to_tokens(logits.topk(3).indices.tolist())
    assert set(head.replacement_ids(tokenizer)) == set(range(6, len(vocab)))


def test_bf16_is_chosen_only_where_the_cpu_computes_it(tmp_path):
    script = load_script()
    cpuinfo = tmp_path / "cpuinfo"
    for flags, native in (("fpu sse avx2 fma", False), ("avx512f avx512_bf16 avx2", True), ("avx2 amx_bf16 amx_tile", True),
                          ("avx512f avx512bw", False)):
        cpuinfo.write_text(f"processor\t: 0\nmodel name\t: some cpu\nflags\t\t: {flags}\n")
        assert script.native_bf16(str(cpuinfo)) is native, flags
    assert script.native_bf16(str(tmp_path / "absent")) is False
    base = ["--model", "m", "--corpus", "c", "--out", "o"]
    assert script.parse_args(base).dtype == ("bf16" if script.native_bf16() else "fp32")
    assert script.parse_args(base + ["--dtype", "bf16"]).dtype == "bf16"


def fake_run(root, name, accuracy=None, seconds=60.0, speed=500.0, parameters=13_200_000, under="runs", **metrics):
    """A finished stage as task_distill.py leaves it: train_log.csv, and results_eval.json if last."""
    os.makedirs(os.path.join(root, under, name))
    with open(os.path.join(root, under, name, "train_log.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "train_seconds", "dev_acc"])
        w.writerow([10, seconds / 2, "" if accuracy is None else accuracy - 0.05])
        w.writerow([20, seconds, "" if accuracy is None else accuracy])
    if accuracy is not None:
        with open(os.path.join(root, under, name, "results_eval.json"), "w") as f:
            json.dump(dict({"accuracy": accuracy, "parameters": parameters, "reasoningTime": speed}, **metrics), f)


def test_ablation_table_reads_every_finished_arm_and_names_the_rest(tmp_path):
    root = str(tmp_path)
    fake_run(root, "teacher", 0.85, seconds=600, speed=50, parameters=22_700_000)
    fake_run(root, "a_s42", 0.75, seconds=120)
    fake_run(root, "a_s43", 0.77, seconds=180)
    fake_run(root, "d_s42_tmp", seconds=300)
    fake_run(root, "d_s42", 0.83, seconds=240, speed=400)
    fake_run(root, "d_s43_tmp", seconds=300)  # stage 2 of seed 43 has not finished: not a row
    done = subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "summarize.py"), "--ablation", root],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")]
            for line in done.stdout.splitlines() if line.startswith("| ") and "%" in line}
    assert set(rows) == {"teacher", "a", "d"}
    assert rows["a"][2] == "76.0% (spread 2.0)" and rows["a"][3] == "42: 75.0, 43: 77.0"
    assert rows["a"][4] == f"{76 / 85 * 100:.1f}%" and rows["a"][7] == "2.5 min"  # mean of 2 and 3 minutes
    assert rows["d"][2] == "83.0%" and rows["d"][4] == f"{83 / 85 * 100:.1f}%" and rows["d"][7] == "9.0 min"
    assert rows["d"][6] == "2.50" and rows["teacher"][6] == "20.00" and rows["teacher"][5] == "22.7M"
    assert "not finished yet: b, c, e, d bf16, d long" in done.stdout
    assert open(os.path.join(root, "summary.md")).read().count("\n") == 5
    assert os.path.getsize(os.path.join(root, "accuracy_vs_time.png")) > 1000


def test_glue_card_sets_each_task_beside_the_paper_in_its_metric(tmp_path):
    """The card reads each task's teacher and students in the paper's metric (MCC for CoLA, not
    accuracy), averages the seeds, and says which tasks have not finished."""
    root, glue = str(tmp_path / "card"), tmp_path / "glue"
    fake_run(root, "teacher", 0.80, seconds=3600, under="CoLA", MCC=0.50)
    for seed, (hard, tiny) in {42: (0.30, 0.44), 43: (0.34, 0.46), 44: (0.32, 0.45)}.items():
        fake_run(root, f"hard_s{seed}", 0.70, seconds=600, under="CoLA", MCC=hard)
        fake_run(root, f"tinybert_s{seed}_tmp", seconds=600, under="CoLA")
        fake_run(root, f"tinybert_s{seed}", 0.75, seconds=300, under="CoLA", MCC=tiny)
    fake_run(root, "teacher", 0.90, seconds=3600, under="SST-2")  # no students yet
    (glue / "WNLI").mkdir(parents=True)
    (glue / "WNLI" / "dev.tsv").write_text("index\tsentence1\tsentence2\tlabel\n"
                                           + "".join(f"{i}\ta\tb\t{int(i < 5)}\n" for i in range(8)))
    done = subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "summarize.py"), "--card", root,
                           "--glue_dir", str(glue)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")]
            for line in done.stdout.splitlines() if line.startswith("| ") and "---" not in line}
    cola = rows["CoLA"]
    assert cola[1] == "MCC" and cola[2] == "50.0" and cola[3] == "32.0 (30.0, 34.0, 32.0)"
    assert cola[4] == "45.0 (42: 44.0, 43: 46.0, 44: 45.0)" and cola[5] == "90.0%"
    assert cola[6] == "52.1 → 44.1" and cola[7] == f"{44.1 / 52.1 * 100:.1f}%" and cola[8] == "yes"
    assert rows["WNLI"][2] == "majority 62.5" and "SST-2" not in rows
    assert "not finished yet: SST-2 (hard, tinybert); MRPC (teacher, hard, tinybert)" in done.stdout
    # 1 h teacher + 3 x (10 + 10 + 5 min) students + the SST-2 teacher's hour
    assert "3.2 CPU-hours" in done.stdout
    assert os.path.getsize(os.path.join(root, "card.png")) > 1000


def test_aug_examples_pair_each_sentence_with_its_first_variant(tmp_path):
    train = ["a fine and moving film about loss", "dull , dull , dull and long", "the cast is superb in every scene"]
    variants = {0: ["a good and moving film about loss", "a fine and touching film about loss"], 1: [], 2: ["the cast is great in every scene"]}
    (tmp_path / "train.tsv").write_text("sentence\tlabel\n" + "".join(f"{t}\t1\n" for t in train))
    rows = [r for i, t in enumerate(train) for r in [t] + variants[i]]
    (tmp_path / "train_aug.tsv").write_text("sentence\tlabel\n" + "".join(f"{r}\t1\n" for r in rows))
    done = subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "summarize.py"), str(tmp_path),
                           "--aug_examples", "5"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    pairs = [line for line in done.stdout.splitlines() if line.startswith("| ") and "training" not in line]
    assert sorted(pairs) == ["| a fine and moving film about loss | a good and moving film about loss |",
                             "| the cast is superb in every scene | the cast is great in every scene |"]
    assert "3 sentences, 6 rows in train_aug.tsv, 1.00 new sentences per sentence" in done.stdout


def test_glue_card_script_runs_every_phase_and_a_rerun_only_continues(tmp_path, minilm_dir):
    """experiments/glue_card.sh as a user runs it, on a tiny 6-layer teacher standing in for MiniLM,
    a slice of RTE and a few corpus lines: general distillation, the teacher, both students, the card;
    then the same command again, which finds everything done."""
    from conftest import save_tiny_classifier, shared_path, write_task_slice
    glue = tmp_path / "glue"
    write_task_slice(glue / "RTE", shared_path("glue_data", "RTE"), 24, 16)
    (glue / "WNLI").mkdir()
    (glue / "WNLI" / "dev.tsv").write_text(open(shared_path("glue_data", "WNLI", "dev.tsv")).read())
    corpus = tmp_path / "corpus.raw"
    corpus.write_text("\n".join(open(shared_path("corpus", "wikitext-2-raw", "wiki.valid.raw")).read()
                                .splitlines()[:200]) + "\n")
    teacher = save_tiny_classifier(modeling, tmp_path / "minilm", os.path.join(minilm_dir, "vocab.txt"), layers=6,
                                   hidden=48, num_attention_heads=12)  # the student has 12 heads, as MiniLM
    env = dict(os.environ, GLUE_DIR=str(glue), CORPUS=str(corpus), OUT=str(tmp_path / "card"), TASKS="RTE",
               SEEDS="42", MINILM=teacher, PY=sys.executable, THREADS="1", GD_EPOCHS="1",
               TASK_ARGS="--max_train_examples 16 --num_train_epochs 1 --max_seq_length 32 --eval_batch_size 16",
               GD_ARGS="--max_steps 2")
    script = os.path.join(ROOT, "experiments", "glue_card.sh")
    done = subprocess.run(["bash", script], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    card = tmp_path / "card"
    for run in ("general_tinybert_4L_312D", "RTE/teacher", "RTE/hard_s42", "RTE/tinybert_s42_tmp", "RTE/tinybert_s42"):
        assert (card / run / ".complete").is_file(), run
    for run in ("RTE/teacher", "RTE/hard_s42", "RTE/tinybert_s42"):
        results = json.load(open(card / run / "results_eval.json"))
        assert results["model_selection"] == "last" and results["num_examples"] == 16
    assert json.load(open(card / "RTE/tinybert_s42/config.json"))["num_hidden_layers"] == 4
    row = [line for line in open(card / "card.md").read().splitlines() if line.startswith("| RTE |")]
    assert len(row) == 1 and "66.4 → 66.6" in row[0]
    again = subprocess.run(["bash", script], env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count(": done") == 5 and "task_distill.py --" not in again.stdout
