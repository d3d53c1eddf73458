"""The run_*.sh wrappers themselves, run with bash in the order docs/wrappers.md gives, in a copy of the
repository whose default folders hold tiny stand-ins (tests/tiny_assets.py) for BERT-base, GloVe, a
corpus and SST-2: each stage must find what the one before wrote where its defaults look, and a
wrapper stopped mid-stage must continue when run again.

Only what keeps the runs short is set (epochs, batch sizes, the student's size); every path is a default.
The suite runs the chain on torch; WRAPPERS_BACKEND=oneflow runs the same on OneFlow (slower: kept out
of the suite's 15 minutes).
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

import tiny_assets
from conftest import ROOT

WRAPPER_ENV = ("TASK_NAME", "dataset", "TASKS", "TASK", "PYTHON", "VENV", "OVERWRITE", "RESUME", "AUG_TRAIN",
               "MAX_SEQ_LENGTH", "EXTRA_ARGS", "GENERAL_TINYBERT_DIR", "DATA_ROOT", "STUDENT_DIR",
               "TMP_STUDENT_DIR", "RESULT_DIR", "MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK")
TRAIN_ROWS, DEV_ROWS = 48, 24


def copy_repository(dest):
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        source = os.path.join(ROOT, name)
        if os.path.isfile(source):
            os.makedirs(os.path.dirname(os.path.join(dest, name)), exist_ok=True)
            shutil.copy2(source, os.path.join(dest, name))
    return dest


def place_inputs(repo):
    """What a user downloads, in the folders the wrappers read by default."""
    import modeling
    vocab = tiny_assets.write_vocab(str(repo / "models" / "vocab"))
    tiny_assets.write_masked_lm(modeling, repo / "models" / "bert-base-uncased", vocab, layers=2, hidden=32, heads=4)
    student = repo / "models" / "student_config"  # general distillation's STUDENT: a config.json
    student.mkdir()
    tiny_assets.bert_config(modeling, vocab, layers=1, hidden=16, heads=4).save(str(student))
    (repo / "glove").mkdir(exist_ok=True)
    tiny_assets.write_glove(repo / "glove" / "glove.840B.300d.txt")
    (repo / "data" / "corpus").mkdir()
    tiny_assets.write_corpus(repo / "data" / "corpus" / "corpus.txt")
    sst2 = repo / "data" / "glue_data" / "SST-2"
    sst2.mkdir(parents=True)
    for split, rows in (("train", TRAIN_ROWS), ("dev", DEV_ROWS)):
        lines = open(os.path.join(tiny_assets.DEMO_SST2, f"{split}.tsv"), encoding="utf-8").read().splitlines()
        (sst2 / f"{split}.tsv").write_text("\n".join(lines[:rows + 1]) + "\n", encoding="utf-8")


def wrapper_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in WRAPPER_ENV}
    env.update(BACKEND=os.environ.get("WRAPPERS_BACKEND", "torch"), PYTHON=sys.executable, TOKENIZERS_PARALLELISM="false", TF_CPP_MIN_LOG_LEVEL="3",
               **extra)
    return env


def run(repo, wrapper, *args, stdin=None, expect=0, **env):
    done = subprocess.run(["bash", wrapper, *args], cwd=repo, env=wrapper_env(**env), input=stdin,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == expect, f"{wrapper}: {done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def read_json(path):
    with open(path) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """The stages up to the teacher, each on its defaults, checked as they go."""
    repo = copy_repository(tmp_path_factory.mktemp("checkout"))
    place_inputs(repo)

    run(repo, "run_pregenerate_training_data.sh", EPOCHS="1", NUM_WORKERS="1", MAX_SEQ_LEN="32")
    assert read_json(repo / "data" / "pretrain_data_json" / "epoch_0_metrics.json")["num_training_examples"] > 10

    run(repo, "run_general_distill.sh", STUDENT="models/student_config", EPOCHS="1", BATCH_SIZE="16")
    general = repo / "models" / "general_tinybert_4L_312D"
    assert read_json(general / "config.json")["hidden_size"] == 16 and read_json(general / "run.json")["finished"]

    run(repo, "run_data_augmentation.sh", N="2")
    sst2 = repo / "data" / "glue_data" / "SST-2"
    aug_rows = len((sst2 / "train_aug.tsv").read_text().splitlines()) - 1
    assert TRAIN_ROWS < aug_rows <= 3 * TRAIN_ROWS

    run(repo, "glue_process.sh")  # after augmentation, as docs/wrappers.md orders them: train_aug too
    records = repo / "data" / "glue_ofrecord" / "SST-2"
    assert sorted(os.listdir(records)) == ["eval", "train", "train_aug"]

    run(repo, "run_train_teacher.sh", EPOCHS="2", BATCH_SIZE="16", LEARNING_RATE="1e-3")
    teacher = repo / "models" / "finetuned_teacher" / "SST-2"
    assert read_json(teacher / "results_eval.json")["num_examples"] == DEV_ROWS
    return repo


def test_wrappers_run_in_order_on_their_defaults(chain):
    repo = chain
    # the OFRecord files glue_process.sh wrote at the task's length are what the student stages accept
    done = run(repo, "run_train_student_tinybert.sh", DATA_ROOT="data/glue_ofrecord", AUG_TRAIN="yes",
               STAGE1_EPOCHS="1", STAGE2_EPOCHS="1", BATCH_SIZE="16")
    stage1, student = repo / "models" / "tmp_student_model" / "SST-2", repo / "models" / "student_model" / "SST-2"
    for out, mode in ((stage1, "intermediate"), (student, "pred")):
        record = read_json(out / "run.json")
        assert record["finished"] and record["run"]["mode"] == mode and record["run"]["data"]["split"] == "train_aug"
    assert read_json(stage1 / "run.json")["run"]["student_model"]["path"] == str(
        repo / "models" / "general_tinybert_4L_312D")
    assert read_json(student / "run.json")["run"]["student_model"]["path"] == str(stage1)
    assert os.path.isdir(student / "resume")  # a rerun can still continue it (SERVE_FOR_ONLINE=no)

    run(repo, "run_eval_student_tinybert.sh", DATA_ROOT="data/glue_ofrecord", RESULT_DIR="results/SST-2")
    results = read_json(repo / "results" / "SST-2" / "results_eval.json")
    assert results["task"] == "sst-2" and results["num_examples"] == DEV_ROWS and "accuracy" in results

    done = run(repo, "run_predict.sh", stdin="a gripping , funny film .\n\nthe worst movie\n")
    lines = done.stdout.split("\n")
    assert lines[1] == "" and all(line.split("\t")[0] in ("0", "1") for line in (lines[0], lines[2]))
    assert abs(sum(float(p) for p in lines[0].split("\t")[1:]) - 1) < 1e-4

    # run again with stage 2's rate changed: stage 1 says it is done, stage 2 refuses naming what changed
    done = run(repo, "run_train_student_tinybert.sh", expect=2, DATA_ROOT="data/glue_ofrecord", AUG_TRAIN="yes",
               STAGE1_EPOCHS="1", STAGE2_EPOCHS="1", BATCH_SIZE="16", STAGE2_LR="1e-3")
    assert done.stdout.count(f"{os.path.join('models', 'tmp_student_model', 'SST-2')} already holds this run, "
                             "finished at step") == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {os.path.join('models', 'student_model', 'SST-2')} holds a run made otherwise")
    assert "learning_rate 2e-05 -> 0.001" in last and "OVERWRITE=yes" in last
    assert "Traceback" not in done.stderr


def test_a_wrapper_stopped_mid_stage_continues_when_run_again(chain):
    repo = chain
    outs = dict(TMP_STUDENT_DIR="models/stopped/tmp_student", STUDENT_DIR="models/stopped/student")
    args = dict(STAGE1_EPOCHS="6", STAGE2_EPOCHS="1", BATCH_SIZE="8", EXTRA_ARGS="--eval_step 1", **outs)
    stage1 = repo / "models" / "stopped" / "tmp_student"
    wrapper = subprocess.Popen(["bash", "run_train_student_tinybert.sh"], cwd=repo, env=wrapper_env(**args),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                               # a shell that started this run in the background left SIGINT ignored, and an
                               # ignored signal is inherited: a terminal's Ctrl-C reaches a foreground job
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 240
    while not (stage1 / "resume" / "state.json").exists() or read_json(stage1 / "resume" / "state.json")["step"] < 2:
        assert wrapper.poll() is None and time.monotonic() < deadline, wrapper.communicate()
        time.sleep(0.2)
    os.killpg(wrapper.pid, signal.SIGINT)  # what Ctrl-C in the terminal sends: the whole process group
    out, err = wrapper.communicate(timeout=120)
    assert wrapper.returncode == 130, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("interrupted at step ") and " of 36 (" in last, last
    assert last.endswith("continue with: bash run_train_student_tinybert.sh (with the same variables)")
    reached = read_json(stage1 / "resume" / "state.json")["step"]
    assert not read_json(stage1 / "run.json")["finished"] and not (repo / "models" / "stopped" / "student").exists()

    done = run(repo, "run_train_student_tinybert.sh", **args)
    assert f"step {reached}\n" in done.stdout and "resuming at epoch" in done.stdout
    assert read_json(stage1 / "run.json")["finished"] and read_json(stage1 / "run.json")["step"] == 36
    assert read_json(repo / "models" / "stopped" / "student" / "results_eval.json")["num_examples"] == DEV_ROWS
