"""task_distill.py end to end on a slice of the real SST-2, with tiny random models; resume, guards."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import backend
import checkpoint
from conftest import ROOT, save_tiny_classifier, shared_path, write_task_slice

import modeling  # bound to the torch backend (conftest sets BACKEND)
import task_distill


@pytest.fixture(scope="module")
def sst2(tmp_path_factory):
    return write_task_slice(tmp_path_factory.mktemp("data") / "SST-2", shared_path("glue_data", "SST-2"), 96, 48)


@pytest.fixture(scope="module")
def vocab(minilm_dir):
    return os.path.join(minilm_dir, "vocab.txt")


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, sst2, vocab):
    """A tiny teacher fine-tuned for one epoch by task_distill.py --finetune itself."""
    root = tmp_path_factory.mktemp("teacher")
    init = save_tiny_classifier(modeling, root / "init", vocab, layers=4, hidden=32)
    task_distill.main(["--finetune", "--task_name", "SST-2", "--data_dir", sst2, "--student_model", init,
                       "--output_dir", str(root / "ft"), "--num_train_epochs", "1", "--learning_rate", "1e-3",
                       "--serve_for_online"])
    return str(root / "ft")


def run(*argv):
    return task_distill.main([str(a) for a in argv])


def test_teacher_fine_tuning_writes_a_labelled_model_and_results(teacher):
    cfg = json.load(open(os.path.join(teacher, "config.json")))
    assert cfg["id2label"] == {"0": "0", "1": "1"} and cfg["num_labels"] == 2
    results = json.load(open(os.path.join(teacher, "results_eval.json")))
    for key in ("accuracy", "MCC", "precision", "recall", "f_1", "modelSize", "reasoningTime"):
        assert key in results
    assert results["num_examples"] == 48
    assert not os.path.exists(os.path.join(teacher, "resume"))  # --serve_for_online
    assert "fit_dense.weight" not in checkpoint.load_state_dict(teacher)
    log = open(os.path.join(teacher, "train_log.csv")).read().splitlines()
    assert log[0].startswith("step,epoch,lr,train_seconds,cls_loss,loss") and "dev_acc" in log[0]
    assert len(log) == 2  # one evaluation per epoch: 96 examples / 32 = 3 steps


def test_fine_tuning_learns_the_task(vocab, tmp_path):
    """A tiny random BERT fine-tuned on the built-in demo sample (data/demo: SST-2-style sentences,
    easy by design) must beat the majority class (57% of its dev set) by a wide margin."""
    demo = os.path.join(ROOT, "data", "demo", "SST-2")
    labels = [line.rsplit("\t", 1)[1] for line in open(os.path.join(demo, "dev.tsv")).read().splitlines()[1:]]
    majority = max(labels.count("0"), labels.count("1")) / len(labels)
    init = save_tiny_classifier(modeling, tmp_path / "init", vocab, layers=4, hidden=32)
    run("--finetune", "--task_name", "SST-2", "--data_dir", demo, "--student_model", init, "--output_dir",
        tmp_path / "ft", "--num_train_epochs", 5, "--learning_rate", 3e-3, "--serve_for_online")
    results = json.load(open(tmp_path / "ft" / "results_eval.json"))
    assert results["accuracy"] > majority + 0.15, (results["accuracy"], majority)


def test_two_stage_distillation_end_to_end(teacher, sst2, vocab, tmp_path, modeling_for):
    student0 = save_tiny_classifier(modeling, tmp_path / "s0", vocab, layers=2, hidden=24)
    run("--intermediate_distill", "--task_name", "SST-2", "--data_dir", sst2, "--teacher_model", teacher,
        "--student_model", student0, "--output_dir", tmp_path / "tmp", "--num_train_epochs", 2,
        "--learning_rate", 1e-3)
    log = open(tmp_path / "tmp" / "train_log.csv").read().splitlines()
    header = log[0].split(",")
    # stage 1 reports its loss terms on dev, not an accuracy of a classifier nobody trained yet
    assert {"att_loss", "rep_loss", "dev_att_loss", "dev_rep_loss"} <= set(header) and "dev_acc" not in header
    rep = [float(line.split(",")[header.index("dev_rep_loss")]) for line in log[1:]]
    assert len(rep) == 2 and rep[1] < rep[0]  # the student's hidden states move towards the teacher's
    tmp_state = checkpoint.load_state_dict(str(tmp_path / "tmp"))
    assert tmp_state["fit_dense.weight"].shape == (32, 24)  # student 24 -> teacher 32

    out = run("--pred_distill", "--task_name", "SST-2", "--data_dir", sst2, "--teacher_model", teacher,
              "--student_model", tmp_path / "tmp", "--output_dir", tmp_path / "student", "--num_train_epochs", 2,
              "--learning_rate", 1e-3, "--eval_step", 2, "--serve_for_online")
    assert out.step == 6
    results = json.load(open(tmp_path / "student" / "results_eval.json"))
    log = open(tmp_path / "student" / "train_log.csv").read().splitlines()
    accs = [float(line.split(",")[log[0].split(",").index("dev_acc")]) for line in log[1:]]
    assert results["accuracy"] == pytest.approx(max(accs), abs=1e-6)  # the best checkpoint is what was kept
    assert os.path.getsize(tmp_path / "student" / "curves.png") > 1000
    # the student serves on either backend with the same predictions
    flow_model = modeling_for("oneflow").TinyBertForSequenceClassification.from_pretrained(
        str(tmp_path / "student"), fit_size=None, verbose=False).eval()
    torch_model = modeling.TinyBertForSequenceClassification.from_pretrained(
        str(tmp_path / "student"), fit_size=None, verbose=False).eval()
    ids = np.array([[101, 2023, 3185, 2003, 2307, 102]])
    of = backend.framework("oneflow")
    import torch
    with of.no_grad(), torch.no_grad():
        a = flow_model(of.tensor(ids))[0].numpy()
        b = torch_model(torch.tensor(ids))[0].numpy()
    assert np.abs(a - b).max() < 1e-4


def test_prediction_distillation_runs_the_teacher_once_per_example(teacher, sst2, vocab, tmp_path, monkeypatch):
    calls = []
    original = task_distill.Teacher.__call__

    def counting(self, b, need_internals=True):
        calls.append(len(b["input_ids"]))
        return original(self, b, need_internals)
    monkeypatch.setattr(task_distill.Teacher, "__call__", counting)
    student0 = save_tiny_classifier(modeling, tmp_path / "s0", vocab, layers=2, hidden=24)
    common = ["--pred_distill", "--task_name", "SST-2", "--data_dir", sst2, "--teacher_model", teacher,
              "--student_model", student0, "--num_train_epochs", 3, "--learning_rate", 1e-3]
    run(*common, "--output_dir", tmp_path / "a")
    assert sum(calls) == 96  # every training example once, for three epochs
    calls.clear()
    run(*common, "--output_dir", tmp_path / "b", "--reference_mode")
    assert sum(calls) == 3 * 96  # the reference runs the teacher at every step


def test_sts_b_stage_2_learns_the_teacher_score_not_the_gold_one(vocab):
    """A student equal to its teacher has nothing left to learn in stage 2, however far the gold
    scores are; --reference_mode regresses on the gold scores as the reference code does."""
    model = modeling.TinyBertForSequenceClassification(modeling.BertConfig(
        vocab_size=sum(1 for _ in open(vocab)), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0), num_labels=1)
    model.eval()
    processor = task_distill.glue.get_processor("STS-B")
    teacher = task_distill.Teacher(model, processor, "cpu")
    flow = backend.framework("torch")
    batch = {"input_ids": flow.tensor([[2, 7, 9, 3], [2, 11, 3, 0]]), "token_type_ids": flow.zeros(2, 4, dtype=flow.int64),
             "attention_mask": flow.tensor([[1, 1, 1, 1], [1, 1, 1, 0]]), "labels": flow.tensor([4.5, 0.2])}
    ours = task_distill.Losses(task_distill.Mode.STAGE2, model, teacher, is_regression=True)(batch)
    assert float(ours["cls_loss"].detach()) == 0.0
    gold = task_distill.Losses(task_distill.Mode.STAGE2, model, teacher, is_regression=True,
                               recipe=task_distill.REFERENCE)(batch)
    predicted = teacher(batch, need_internals=False)[0].reshape(-1).numpy()
    assert float(gold["cls_loss"].detach()) == pytest.approx(float(np.mean((predicted - [4.5, 0.2]) ** 2)), rel=1e-5)
    assert float(gold["cls_loss"].detach()) > 1.0


def test_reference_mode_pads_to_max_seq_length(sst2, vocab):
    args = task_distill.parse_args(["--pred_distill", "--task_name", "SST-2", "--data_dir", sst2,
                                    "--teacher_model", "t", "--student_model", "s", "--output_dir", "o"])
    import glue
    features = glue.load_features(sst2, "SST-2", "train", checkpoint.load_tokenizer(os.path.dirname(vocab)), 64)
    dynamic = task_distill.batches(features, 32, args.recipe)
    assert all(w == features.lengths[i].max() for i, w in dynamic) and max(w for _, w in dynamic) < 64
    args = task_distill.parse_args(["--pred_distill", "--task_name", "SST-2", "--data_dir", sst2, "--reference_mode",
                                    "--teacher_model", "t", "--student_model", "s", "--output_dir", "o"])
    assert {w for _, w in task_distill.batches(features, 32, args.recipe)} == {64}
    assert sorted(np.concatenate([i for i, _ in dynamic])) == list(range(96))


def test_task_defaults_apply_only_where_no_flag_is_given():
    """The per-task table itself (the first wave's record of the original OneFlow scripts) could not be
    re-checked against a copy of those scripts here; what is tested is how it is applied."""
    import glue

    def parsed(task, *flags):
        return task_distill.parse_args([*flags, "--task_name", task, "--data_dir", "d", "--teacher_model", "t",
                                        "--student_model", "s", "--output_dir", "o"])
    assert {glue.get_processor(t).task for t in glue.PROCESSORS} <= set(task_distill.TASK_DEFAULTS)
    for task, (lr, epochs, wd) in task_distill.TASK_DEFAULTS.items():
        a = parsed(task, "--pred_distill")
        assert (a.learning_rate, a.num_train_epochs, a.weight_decay) == (lr, epochs, wd)
        a = parsed(task, "--intermediate_distill")
        assert (a.learning_rate, a.num_train_epochs) == (5e-5, epochs)  # stage 1: the reference's rate
    a = parsed("mrpc", "--pred_distill", "--learning_rate", "3e-4", "--num_train_epochs", "2", "--weight_decay", "0")
    assert (a.learning_rate, a.num_train_epochs, a.weight_decay) == (3e-4, 2, 0.0)  # 0 is a value, not "unset"
    assert parsed("SST-2", "--finetune").mode is task_distill.Mode.FINETUNE
    assert parsed("SST-2", "--intermediate_distill", "--pred_distill").mode is task_distill.Mode.BOTH
    with pytest.raises(SystemExit):
        parsed("SST-2", "--pred_distill", "--finetune")


# -- the mistakes caught before training ---------------------------------------------------------
def test_untrained_teacher_is_refused(sst2, vocab, tmp_path):
    bare = modeling.BertModel(modeling.BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2,
                                                  num_attention_heads=4, intermediate_size=64))
    bare.save_pretrained(str(tmp_path / "pretrained"), vocab_file=vocab)
    student0 = save_tiny_classifier(modeling, tmp_path / "s0", vocab, layers=2, hidden=24)
    argv = ["--pred_distill", "--task_name", "SST-2", "--data_dir", sst2, "--teacher_model", tmp_path / "pretrained",
            "--student_model", student0, "--output_dir", tmp_path / "out", "--num_train_epochs", 1]
    with pytest.raises(ValueError, match="has no classifier: it was never fine-tuned on sst-2"):
        run(*argv)
    state = run(*argv, "--allow_untrained_teacher", "--overwrite")
    assert state.step == 3  # 96 examples / 32: it trained a whole epoch against the untrained teacher
    assert json.load(open(tmp_path / "out" / "results_eval.json"))["num_examples"] == 48


def test_label_order_mismatch_is_refused_or_remapped(teacher, sst2, vocab, tmp_path):
    import shutil
    flipped = tmp_path / "flipped"
    shutil.copytree(teacher, flipped)
    cfg = json.load(open(flipped / "config.json"))
    cfg["id2label"] = {"0": "1", "1": "0"}
    (flipped / "config.json").write_text(json.dumps(cfg))
    student0 = save_tiny_classifier(modeling, tmp_path / "s0", vocab, layers=2, hidden=24)
    argv = ["--pred_distill", "--task_name", "SST-2", "--data_dir", sst2, "--teacher_model", flipped,
            "--student_model", student0, "--output_dir", tmp_path / "out", "--num_train_epochs", 1]
    with pytest.raises(ValueError, match=r"label order \['1', '0'\] differs from the task's \['0', '1'\]"):
        run(*argv)
    import glue
    proc = glue.get_processor("SST-2")
    t_model, _ = task_distill.load_models(str(student0), str(flipped), proc, "cpu")
    t = task_distill.Teacher(t_model, proc, "cpu", remap_labels=True)
    b = {"input_ids": __import__("torch").tensor([[101, 2307, 102]]), "token_type_ids": None, "attention_mask": None}
    raw = t_model(b["input_ids"])[0].detach().numpy()
    assert np.allclose(t(b, need_internals=False)[0].numpy(), raw[:, ::-1])
    cfg["id2label"] = {"0": "entailment", "1": "not_entailment"}
    (flipped / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="was it fine-tuned on another task"):
        run(*argv, "--overwrite")


def test_different_vocabularies_are_refused(teacher, sst2, tmp_path):
    other = tmp_path / "vocab.txt"
    other.write_text("".join(f"w{i}\n" for i in range(30522)))
    student0 = save_tiny_classifier(modeling, tmp_path / "s0", str(other), layers=2, hidden=24)
    with pytest.raises(ValueError, match="vocab.txt of teacher .* and student .* differ"):
        run("--pred_distill", "--task_name", "SST-2", "--data_dir", sst2, "--teacher_model", teacher,
            "--student_model", student0, "--output_dir", tmp_path / "out")


def test_non_empty_output_dir_is_refused(teacher, sst2, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="is not empty: pass --overwrite"):
        run("--finetune", "--task_name", "SST-2", "--data_dir", sst2, "--student_model", teacher,
            "--output_dir", tmp_path / "out")


def test_non_finite_loss_stops_and_keeps_the_last_good_model(teacher, sst2, tmp_path):
    import training
    with pytest.raises(training.NonFiniteLoss, match=r"non-finite loss at step \d+: cls_loss=(nan|inf)"):
        run("--finetune", "--task_name", "SST-2", "--data_dir", sst2, "--student_model", teacher,
            "--output_dir", tmp_path / "out", "--num_train_epochs", 20, "--learning_rate", 1e12, "--eval_step", 1,
            "--warmup_proportion", 0)
    state = checkpoint.load_state_dict(str(tmp_path / "out"))
    assert all(np.isfinite(v).all() for v in state.values())
    assert json.load(open(tmp_path / "out" / "state.json"))["step"] >= 1


# -- resume after a real kill, in subprocesses as a user would run it ------------------------------
def _script(argv, env_backend="torch", kill_after=None):
    env = dict(os.environ, BACKEND=env_backend, TF_CPP_MIN_LOG_LEVEL="3", GLOG_minloglevel="2")
    killer = [os.path.join(ROOT, "tests", "kill_after.py"), str(kill_after)] if kill_after else []
    return subprocess.run([sys.executable, *killer, os.path.join(ROOT, "task_distill.py"), *map(str, argv)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_resume_after_kill_gives_the_same_student(teacher, sst2, vocab, tmp_path):
    student0 = save_tiny_classifier(modeling, tmp_path / "s0", vocab, layers=2, hidden=24)
    common = ["--intermediate_distill", "--pred_distill", "--task_name", "SST-2", "--data_dir", sst2,
              "--teacher_model", teacher, "--student_model", student0, "--num_train_epochs", 3,
              "--learning_rate", 1e-3, "--eval_step", 2]
    whole = _script(common + ["--output_dir", tmp_path / "whole"])
    assert whole.returncode == 0, whole.stderr[-2000:]
    killed = _script(common + ["--output_dir", tmp_path / "killed"], kill_after=5)
    assert killed.returncode == -9  # SIGKILL mid-epoch (epoch 2 of 3, after the step-4 checkpoint)
    resumed = _script(common + ["--output_dir", tmp_path / "killed", "--resume"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming at epoch 1, batch 1, step 4" in resumed.stdout
    a = checkpoint.load_state_dict(str(tmp_path / "whole" / "resume"))
    b = checkpoint.load_state_dict(str(tmp_path / "killed" / "resume"))
    assert a.keys() == b.keys() and max(float(np.abs(a[k] - b[k]).max()) for k in a) < 1e-6
    s0 = checkpoint.load_state_dict(student0)
    assert float(np.abs(a["bert.encoder.layer.0.output.dense.weight"] -
                        s0["bert.encoder.layer.0.output.dense.weight"]).max()) > 1e-4  # it did train
    import csv
    rows = lambda p: list(csv.DictReader(open(p)))
    whole_log, resumed_log = rows(tmp_path / "whole" / "train_log.csv"), rows(tmp_path / "killed" / "train_log.csv")
    assert [r["step"] for r in resumed_log] == ["2", "4", "6", "8", "9"]  # no step twice, none missing
    for column in ("loss", "att_loss", "rep_loss", "cls_loss", "dev_acc"):
        assert [r[column] for r in whole_log] == [r[column] for r in resumed_log], column

    # resumed once more: the finished run says so and keeps its model; another student or rate is refused
    again = _script(common + ["--output_dir", tmp_path / "killed", "--resume"])
    assert again.returncode == 0 and f"{tmp_path / 'killed'} already holds this run, finished at step 9" in again.stdout
    other = save_tiny_classifier(modeling, tmp_path / "s1", vocab, layers=2, hidden=24)
    changed = [str(other) if a == student0 else ("2e-3" if a == 1e-3 else a) for a in common]
    refused = _script(changed + ["--output_dir", tmp_path / "killed", "--resume"])
    last = refused.stderr.strip().splitlines()[-1]
    assert refused.returncode == 2 and last.startswith(f"error: {tmp_path / 'killed'} holds a run made otherwise (")
    assert "learning_rate 0.001 -> 0.002" in last and f"student_model.path '{student0}' -> '{other}'" in last
    assert "student_model.sha256 '" in last and "OVERWRITE=yes" in last
    assert checkpoint.load_state_dict(str(tmp_path / "killed" / "resume")).keys() == a.keys()


def test_two_stage_run_on_oneflow(teacher, sst2, vocab, tmp_path):
    student0 = save_tiny_classifier(modeling, tmp_path / "s0", vocab, layers=2, hidden=24)
    done = _script(["--intermediate_distill", "--task_name", "SST-2", "--data_dir", sst2, "--teacher_model", teacher,
                    "--student_model", student0, "--output_dir", tmp_path / "tmp", "--num_train_epochs", 1,
                    "--max_train_examples", 32, "--learning_rate", 1e-3], env_backend="oneflow")
    assert done.returncode == 0, done.stderr[-2000:]
    done = _script(["--pred_distill", "--task_name", "SST-2", "--data_dir", sst2, "--teacher_model", teacher,
                    "--student_model", tmp_path / "tmp", "--output_dir", tmp_path / "student", "--num_train_epochs", 1,
                    "--max_train_examples", 32, "--learning_rate", 1e-3, "--backend", "oneflow"])
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.load(open(tmp_path / "student" / "results_eval.json"))
    assert results["backend"] == "oneflow" and results["num_examples"] == 48
    ev = _script(["--do_eval", "--task_name", "SST-2", "--data_dir", sst2, "--student_model", tmp_path / "student",
                  "--output_dir", tmp_path / "eval"])
    assert ev.returncode == 0, ev.stderr[-2000:]
    again = json.load(open(tmp_path / "eval" / "results_eval.json"))
    assert again["backend"] == "torch" and again["accuracy"] == results["accuracy"]


def test_bf16_teacher_stays_close_to_fp32_and_fp16_needs_a_gpu(teacher, sst2, vocab, tmp_path):
    import glue
    import torch
    proc = glue.get_processor("SST-2")
    outs = {}
    for dtype in ("fp32", "bf16"):
        t_model, _ = task_distill.load_models(str(teacher), str(teacher), proc, "cpu")
        t = task_distill.Teacher(t_model, proc, "cpu", dtype=dtype)
        b = {"input_ids": torch.tensor([[101, 2023, 3185, 2003, 2307, 102], [101, 2307, 102, 0, 0, 0]]),
             "token_type_ids": torch.zeros(2, 6, dtype=torch.long),
             "attention_mask": torch.tensor([[1] * 6, [1, 1, 1, 0, 0, 0]])}
        logits, atts, reps = t(b)
        assert logits.dtype == torch.float32 and atts[0].dtype == torch.float32
        outs[dtype] = (logits.numpy(), reps[-1].numpy())
    assert np.abs(outs["fp32"][0] - outs["bf16"][0]).max() < 0.05
    assert 0 < np.abs(outs["fp32"][1] - outs["bf16"][1]).max() < 0.1  # bf16 did run, and stayed close
    with pytest.raises(ValueError, match="--fp16 needs a CUDA GPU"):
        run("--finetune", "--task_name", "SST-2", "--data_dir", sst2, "--student_model", teacher,
            "--output_dir", tmp_path / "fp16", "--fp16", "--num_train_epochs", 1)


def test_do_predict_writes_the_benchmark_submission_file(teacher, tmp_path):
    """--do_eval --do_predict: results_eval.json and SST-2.tsv for the test split, labels in id order."""
    import glue
    data = tmp_path / "SST-2"
    src = shared_path("glue_data", "SST-2")
    data.mkdir()
    for split in ("dev", "test"):
        lines = open(os.path.join(src, f"{split}.tsv"), encoding="utf-8").read().splitlines()
        (data / f"{split}.tsv").write_text("\n".join(lines[:21]) + "\n", encoding="utf-8")
    run("--do_eval", "--do_predict", "--task_name", "SST-2", "--data_dir", data, "--student_model", teacher,
        "--output_dir", tmp_path / "out")
    rows = open(tmp_path / "out" / "SST-2.tsv").read().splitlines()
    test_ids = [line.split("\t")[0] for line in (data / "test.tsv").read_text().splitlines()[1:]]
    assert rows[0] == "index\tprediction" and [r.split("\t")[0] for r in rows[1:]] == test_ids
    # the same predictions as the model's own logits on those sentences
    model = modeling.TinyBertForSequenceClassification.from_pretrained(teacher, fit_size=None, verbose=False)
    examples = glue.get_processor("SST-2").read_examples(str(data), "test")
    features = glue.convert_examples_to_features(examples, checkpoint.load_tokenizer(teacher), 64, [None])
    logits, _ = task_distill.predict(model, features, 8, "cpu")
    assert [r.split("\t")[1] for r in rows[1:]] == [str(k) for k in logits.argmax(-1)]
    assert json.load(open(tmp_path / "out" / "results_eval.json"))["num_examples"] == 20


def test_model_selection_last_keeps_the_final_model_not_the_best(teacher, sst2, vocab, tmp_path):
    """--model_selection last: a fixed budget whose final weights are kept and reported. On this slice a
    tiny student's dev accuracy does not rise above its first evaluation, so selecting on dev keeps
    step 1, and keeping the last must keep step 9."""
    init = save_tiny_classifier(modeling, tmp_path / "init", vocab, layers=2, hidden=24)
    common = ["--finetune", "--task_name", "SST-2", "--data_dir", sst2, "--student_model", init,
              "--num_train_epochs", 3, "--eval_step", 1, "--learning_rate", 1e-3]
    run(*common, "--output_dir", tmp_path / "best")
    run(*common, "--output_dir", tmp_path / "last", "--model_selection", "last")
    kept = {k: json.load(open(tmp_path / k / "state.json")) for k in ("best", "last")}
    results = {k: json.load(open(tmp_path / k / "results_eval.json")) for k in ("best", "last")}
    log = open(tmp_path / "last" / "train_log.csv").read().splitlines()
    acc = [float(line.split(",")[log[0].split(",").index("dev_acc")]) for line in log[1:]]
    assert len(acc) == 9 and max(acc) == acc[0]  # the premise: no later evaluation scores higher
    assert kept["best"]["step"] == 1 and kept["last"]["step"] == 9
    assert results["best"]["model_selection"] == "dev" and results["last"]["model_selection"] == "last"
    assert results["last"]["accuracy"] == pytest.approx(acc[-1], abs=1e-6)
    last_weights = checkpoint.load_state_dict(str(tmp_path / "last"))
    final_weights = checkpoint.load_state_dict(str(tmp_path / "last" / "resume"))
    assert all(np.array_equal(last_weights[k], final_weights[k]) for k in last_weights)
    assert not np.array_equal(checkpoint.load_state_dict(str(tmp_path / "best"))["classifier.weight"],
                              last_weights["classifier.weight"])
    assert kept["last"]["run"]["model_selection"] == "last" and "model_selection" not in kept["best"]["run"]
