"""Data-parallel training under torchrun (gloo on this CPU): the same global batch gives the same
student whatever the number of processes; resume; a dying rank ends the job."""
import os
import subprocess
import sys
import time

import numpy as np
import pytest

import checkpoint
from conftest import ROOT, shared_path, tiny_config_dict, write_task_slice

import modeling  # bound to the torch backend (conftest sets BACKEND)

ENV = dict(os.environ, BACKEND="torch", OMP_NUM_THREADS="1", TF_CPP_MIN_LOG_LEVEL="3", GLOG_minloglevel="2",
           TOKENIZERS_PARALLELISM="false")


@pytest.fixture(scope="module")
def setup(tmp_path_factory, minilm_dir):
    root = tmp_path_factory.mktemp("ddp")
    data = write_task_slice(root / "SST-2", shared_path("glue_data", "SST-2"), 64, 16)
    # no dropout: every process count must meet the same arithmetic
    config = modeling.BertConfig.from_dict(tiny_config_dict(vocab_size=30522, hidden_size=32, num_hidden_layers=2,
                                                            max_position_embeddings=128))
    modeling.TinyBertForSequenceClassification(config, num_labels=2, fit_size=32).save_pretrained(
        str(root / "init"), vocab_file=os.path.join(minilm_dir, "vocab.txt"))
    return root, data


LAUNCHERS = {"torch": ["torch.distributed.run", "--master_port"], "oneflow": ["oneflow.distributed.launch", "--master_port"]}


def task_distill(root, data, out, *extra, nproc=1, kill_after=None, kill_rank=None, backend_name="torch"):
    argv = [os.path.join(ROOT, "task_distill.py"), "--finetune", "--task_name", "SST-2", "--data_dir", data,
            "--student_model", str(root / "init"), "--output_dir", str(out), "--num_train_epochs", "2",
            "--learning_rate", "1e-3", "--eval_step", "2", "--seed", "3", *extra]
    if kill_after is not None:
        argv = [os.path.join(ROOT, "tests", "kill_after.py"), str(kill_after)] + argv
    module, port_flag = LAUNCHERS[backend_name]
    launcher = [sys.executable, "-m", module, "--nproc_per_node", str(nproc), port_flag,
                str(29400 + os.getpid() % 500)] if nproc > 1 else [sys.executable]
    env = dict(ENV, BACKEND=backend_name, **({"KILL_RANK": str(kill_rank)} if kill_rank is not None else {}))
    return subprocess.run(launcher + argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def weights(out):
    return checkpoint.load_state_dict(os.path.join(out, "resume"))


def max_diff(a, b):
    assert a.keys() == b.keys()
    return max(float(np.abs(a[k] - b[k]).max()) for k in a)


def test_two_processes_equal_one_with_twice_the_batch_and_accumulation(setup, tmp_path):
    root, data = setup
    one = task_distill(root, data, tmp_path / "one", "--train_batch_size", "16")
    assert one.returncode == 0, one.stderr[-3000:]
    two = task_distill(root, data, tmp_path / "two", "--train_batch_size", "8", nproc=2)
    assert two.returncode == 0, two.stderr[-3000:]
    accum = task_distill(root, data, tmp_path / "accum", "--train_batch_size", "8",
                         "--gradient_accumulation_steps", "2")
    assert accum.returncode == 0, accum.stderr[-3000:]
    want = weights(tmp_path / "one")
    assert max_diff(want, weights(tmp_path / "two")) < 1e-5
    assert max_diff(want, weights(tmp_path / "accum")) < 1e-5
    assert max_diff(want, checkpoint.load_state_dict(str(root / "init"))) > 1e-3  # it trained
    assert "batch 8 x 2 processes x 1 accumulated = 16" in two.stdout
    for run in ("one", "two", "accum"):  # 64 examples / 16 = 4 steps an epoch, 2 epochs
        assert [line.split(",")[0] for line in open(tmp_path / run / "train_log.csv").read().splitlines()] == \
            ["step", "2", "4", "6", "8"]


def test_oneflow_launcher_and_ddp_on_a_cpu(setup, tmp_path):
    """OneFlow 0.9's launcher and DistributedDataParallel run on this CPU: same arithmetic check."""
    root, data = setup
    one = task_distill(root, data, tmp_path / "one", "--train_batch_size", "16", "--num_train_epochs", "1",
                       backend_name="oneflow")
    assert one.returncode == 0, one.stderr[-3000:]
    two = task_distill(root, data, tmp_path / "two", "--train_batch_size", "8", "--num_train_epochs", "1", nproc=2,
                       backend_name="oneflow")
    assert two.returncode == 0, two.stderr[-3000:]
    assert "batch 8 x 2 processes x 1 accumulated = 16, backend oneflow" in two.stdout
    assert max_diff(weights(tmp_path / "one"), weights(tmp_path / "two")) < 1e-5


def test_resumed_two_process_run_equals_an_uninterrupted_one(setup, tmp_path):
    root, data = setup
    whole = task_distill(root, data, tmp_path / "whole", "--train_batch_size", "8", nproc=2)
    assert whole.returncode == 0, whole.stderr[-3000:]
    killed = task_distill(root, data, tmp_path / "killed", "--train_batch_size", "8", nproc=2, kill_after=5)
    assert killed.returncode != 0
    resumed = task_distill(root, data, tmp_path / "killed", "--train_batch_size", "8", "--resume", nproc=2)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming at epoch 0, batch 4, step 4" in resumed.stdout  # the last checkpoint before the kill
    assert max_diff(weights(tmp_path / "whole"), weights(tmp_path / "killed")) < 1e-6


def test_a_dying_rank_ends_the_job(setup, tmp_path):
    root, data = setup
    start = time.time()
    done = task_distill(root, data, tmp_path / "out", "--train_batch_size", "8", nproc=2, kill_after=2, kill_rank=1)
    assert done.returncode != 0 and time.time() - start < 60
    assert "local_rank: 1" in done.stderr and "Signal 9 (SIGKILL)" in done.stderr
