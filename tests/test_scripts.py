"""What every stage script shares: it imports only shared modules, never another stage script; errors a
user can act on end it with one `error:` line and exit status 2."""
import ast
import glob
import os
import subprocess
import sys
import types

import pytest

import backend
import cli
from conftest import ROOT


def stage_scripts():
    """The scripts a user runs: every module at the root with a `__main__` block."""
    out = {}
    for path in sorted(glob.glob(os.path.join(ROOT, "*.py"))):
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
        if any(isinstance(node, ast.If) and "__main__" in ast.unparse(node.test) for node in tree.body):
            out[os.path.basename(path)[:-3]] = tree
    return out


def imported_modules(tree):
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_no_stage_script_imports_another():
    scripts = stage_scripts()
    assert {"task_distill", "general_distill", "pregenerate_training_data", "data_augmentation",
            "glue_process", "download_glue_data", "convert_tf_ckpt_to_of"} <= set(scripts)
    crossing = {name: sorted(imported_modules(tree) & (set(scripts) - {name})) for name, tree in scripts.items()}
    assert {name: found for name, found in crossing.items() if found} == {}
    assert "checkpoint" in imported_modules(scripts["general_distill"])


# ----------------------------------------------------------------------------------------------
# Errors a user can act on: one line, exit status 2; tracebacks only on request or for bugs
# ----------------------------------------------------------------------------------------------
def run_script(script, *args, **env):
    env = dict({k: v for k, v in os.environ.items() if k != "TINYBERT_DEBUG"}, TF_CPP_MIN_LOG_LEVEL="3",
               GLOG_minloglevel="2", **env)
    return subprocess.run([sys.executable, os.path.join(ROOT, script), *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def assert_user_error(done, *named):
    """Exit status 2, stderr ends in one `error:` line naming each of `named`, and no traceback."""
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 2, done.stderr[-2000:]
    assert last.startswith("error: ") and all(name in last for name in named), last
    assert "Traceback" not in done.stderr
    return last


def test_bad_data_and_missing_files_end_in_one_error_line(tmp_path, minilm_dir):
    rte = tmp_path / "glue" / "RTE"
    rte.mkdir(parents=True)
    (rte / "dev.tsv").write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\tonly two\n")
    done = run_script("glue_process.py", "--glue_dir", tmp_path / "glue", "--tasks", "RTE", "--model_dir",
                      minilm_dir, "--output_dir", tmp_path / "out")
    assert_user_error(done, f"{rte / 'dev.tsv'}:3: 2 columns, expected 4")

    missing = tmp_path / "no-such-model"
    done = run_script("glue_process.py", "--tasks", "RTE", "--model_dir", missing)
    assert assert_user_error(done) == f"error: model directory {missing} does not exist"
    done = run_script("convert_tf_ckpt_to_of.py", "--tf_checkpoint_path", missing, "--of_dump_path", tmp_path / "of")
    assert_user_error(done, str(missing), "neither a TF checkpoint directory nor a prefix")
    done = run_script("pregenerate_training_data.py", "--train_corpus", tmp_path / "corpus.txt",
                      "--bert_model", minilm_dir, "--output_dir", tmp_path / "pre")
    assert_user_error(done, str(tmp_path / "corpus.txt"))
    assert not os.path.exists(tmp_path / "of")


def test_debug_flag_or_env_shows_the_traceback(tmp_path):
    missing = tmp_path / "no-such-model"
    args = ("--train_corpus", tmp_path, "--bert_model", missing, "--output_dir", tmp_path / "pre")
    for done in (run_script("pregenerate_training_data.py", *args, "--debug"),
                 run_script("pregenerate_training_data.py", *args, TINYBERT_DEBUG="1")):
        assert done.returncode == 2
        assert "Traceback (most recent call last)" in done.stderr and "resolve_model_dir" in done.stderr
        assert done.stderr.strip().splitlines()[-1].startswith(f"error: model '{missing}': no such directory")


def test_a_backend_that_cannot_be_imported_is_one_line_naming_the_setting(tmp_path):
    """As with numpy 2 or a Python OneFlow has no wheel for: the script stops before any work."""
    fake = tmp_path / "oneflow"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('numpy.core.multiarray failed to import')\n")
    for script in ("task_distill.py", "general_distill.py"):
        done = run_script(script, "--help", BACKEND="oneflow", PYTHONPATH=str(tmp_path))
        assert done.returncode == 2 and "Traceback" not in done.stderr and done.stdout == "", done.stderr[-2000:]
        line, = done.stderr.strip().splitlines()
        assert line.startswith("error: could not import oneflow (numpy.core.multiarray failed to import)")
        assert line.endswith("or pass --backend torch (BACKEND=torch for the run_*.sh wrappers)")
    done = run_script("task_distill.py", "--help", "--debug", BACKEND="oneflow", PYTHONPATH=str(tmp_path))
    assert done.returncode == 1 and "Traceback" in done.stderr  # --debug: the whole story


def test_cli_run_exit_codes_and_bugs_keep_their_traceback(capsys):
    def main(argv):
        kind = argv[0]
        if kind == "bug":
            return None + 1  # a TypeError: a bug, not the user's
        if kind == "value":
            raise ValueError("line one\nline two")
        if kind == "interrupt":
            raise KeyboardInterrupt
        return int(kind)

    def exit_code(*argv):
        with pytest.raises(SystemExit) as done:
            cli.run(main, argv=argv)
        return done.value.code

    assert exit_code("0") == 0 and exit_code("3") == 3
    assert exit_code("value") == 2
    assert capsys.readouterr().err == "error: line one line two\n"
    assert exit_code("interrupt") == 130
    with pytest.raises(TypeError):
        cli.run(main, argv=["bug"])
    with pytest.raises(SystemExit):
        cli.run(main, argv=["--debug", "value"])  # --debug is taken out before main sees argv
    assert "Traceback" in capsys.readouterr().err


def test_check_bound_refuses_another_framework_than_the_bound_one():
    torch_module = types.ModuleType("torch")  # check_bound needs only the bound module's name
    assert backend.check_bound("torch", torch_module) == "torch"
    assert backend.check_bound(None, torch_module) == "torch"  # no --backend: the bound one
    with pytest.raises(backend.BackendError, match=r"--backend oneflow: this process already runs torch.*"
                                                   r"in a new process with --backend oneflow"):
        backend.check_bound("oneflow", torch_module)


# ----------------------------------------------------------------------------------------------
# Shell wrappers: inputs checked first, naming the variable to set; --overwrite only when asked
# ----------------------------------------------------------------------------------------------
def run_wrapper(wrapper, *args, **env):
    # importing OneFlow in this process sets MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE: not the wrappers'
    ignored = ("PYTHON", "VENV", "OVERWRITE", "RESUME", "TASK_NAME", "dataset", "TASKS", "TASK", "AUG_TRAIN",
               "MAX_SEQ_LENGTH", "EXTRA_ARGS", "MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK")
    env = dict({k: v for k, v in os.environ.items() if k not in ignored}, **env)
    return subprocess.run(["bash", os.path.join(ROOT, wrapper), *args], env=env, capture_output=True, text=True,
                          timeout=60)


def fake_python(tmp_path):
    """A stand-in interpreter that prints the arguments it was given."""
    fake = tmp_path / "python"
    fake.write_text('#!/bin/sh\necho "$@"\n')
    fake.chmod(0o755)
    return str(fake)


def script_calls(done, script="task_distill.py"):
    assert done.returncode == 0, done.stderr
    return [line.split() for line in done.stdout.splitlines() if line.startswith(script)]


def test_wrappers_name_the_variable_of_a_missing_input(tmp_path):
    nothing = tmp_path / "nothing"
    done = run_wrapper("run_train_teacher.sh", DATA_ROOT=str(nothing), dataset="RTE")
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: {nothing}/RTE does not exist: set DATA_ROOT (now '{nothing}')")

    (tmp_path / "glue" / "RTE").mkdir(parents=True)
    done = run_wrapper("run_train_student_tinybert.sh", DATA_ROOT=str(tmp_path / "glue"), dataset="RTE",
                       FT_BERT_BASE_DIR=str(nothing))
    assert done.returncode == 2 and "set FT_BERT_BASE_DIR (now " in done.stderr
    done = run_wrapper("run_general_distill.sh", PREGENERATED_DATA=str(tmp_path), BERT_BASE_DIR=str(nothing))
    assert done.returncode == 2 and "set BERT_BASE_DIR (now " in done.stderr and done.stdout == ""


def test_train_wrappers_pass_overwrite_only_when_asked(tmp_path):
    """PYTHON stands in for the interpreter: a script that prints the arguments it was given."""
    fake = tmp_path / "python"
    fake.write_text('#!/bin/sh\necho "$@"\n')
    fake.chmod(0o755)
    (tmp_path / "glue" / "RTE").mkdir(parents=True)
    inputs = dict(DATA_ROOT=str(tmp_path / "glue"), dataset="RTE", BERT_BASE_DIR=str(tmp_path),
                  FT_BERT_BASE_DIR=str(tmp_path), GENERAL_TINYBERT_DIR=str(tmp_path), PYTHON=str(fake))
    for wrapper, runs in (("run_train_teacher.sh", 1), ("run_train_student_tinybert.sh", 2)):
        calls = script_calls(run_wrapper(wrapper, **inputs))
        assert len(calls) == runs and all("--overwrite" not in c and "--resume" in c for c in calls)
        for yes in ("1", "true", "YES", "y"):
            calls = script_calls(run_wrapper(wrapper, OVERWRITE=yes, **inputs))
            assert len(calls) == runs and all("--overwrite" in c and "--resume" not in c for c in calls)
        calls = script_calls(run_wrapper(wrapper, RESUME="no", **inputs))
        assert len(calls) == runs and all("--overwrite" not in c and "--resume" not in c for c in calls)
        done = run_wrapper(wrapper, OVERWRITE="ture", **inputs)
        assert done.returncode == 2 and done.stderr == "error: OVERWRITE='ture': use yes or no (true/false, 1/0)\n"


def test_wrappers_pass_their_arguments_and_read_one_task_name(tmp_path):
    fake = fake_python(tmp_path)
    for task in ("RTE", "SST-2"):
        (tmp_path / "glue" / task).mkdir(parents=True)
    inputs = dict(DATA_ROOT=str(tmp_path / "glue"), BERT_BASE_DIR=str(tmp_path), FT_BERT_BASE_DIR=str(tmp_path),
                  GENERAL_TINYBERT_DIR=str(tmp_path), STUDENT_DIR=str(tmp_path), PYTHON=fake)
    for wrapper, runs in (("run_train_teacher.sh", 1), ("run_train_student_tinybert.sh", 2),
                          ("run_eval_student_tinybert.sh", 1)):
        for task_env in ({"TASK_NAME": "RTE"}, {"dataset": "RTE"}):
            calls = script_calls(run_wrapper(wrapper, "--seed", "7", "--eval_step", "3", **task_env, **inputs))
            assert len(calls) == runs, (wrapper, calls)
            for c in calls:
                assert c[c.index("--task_name") + 1] == "RTE" and c[c.index("--data_dir") + 1].endswith("glue/RTE")
                assert c[-4:] == ["--seed", "7", "--eval_step", "3"]
                assert "--max_seq_length" not in c  # the task's default, decided by task_distill.py
        done = run_wrapper(wrapper, TASK_NAME="RTE", dataset="SST-2", **inputs)
        assert done.returncode == 2 and "TASK_NAME='RTE' but dataset='SST-2'" in done.stderr
        done = run_wrapper(wrapper, TASK_NAME="SST2", **inputs)
        assert done.returncode == 2 and done.stderr.startswith(
            f"error: {tmp_path / 'glue'} has no SST2/: set TASK_NAME to a task it holds (")
    done = run_wrapper("run_data_augmentation.sh", BERT_DIR=str(tmp_path), GLOVE_EMB=str(tmp_path),
                       TASK_NAME="SST2", GLUE_DIR=str(tmp_path / "glue"), PYTHON=fake)
    assert done.returncode == 2 and done.stderr == (f"error: {tmp_path / 'glue'} has no SST2/: set TASK_NAME to a "
                                                    "task it holds (RTE SST-2), or GLUE_DIR to another GLUE root\n")
    for aug, flag in (("yes", True), ("True", True), ("1", True), ("no", False), ("", False)):
        calls = script_calls(run_wrapper("run_train_student_tinybert.sh", AUG_TRAIN=aug, **inputs))
        assert all(("--aug_train" in c) is flag for c in calls), aug
    calls = script_calls(run_wrapper("run_train_student_tinybert.sh", MAX_SEQ_LENGTH="96", **inputs))
    assert all(c[c.index("--max_seq_length") + 1] == "96" for c in calls)


def test_student_wrapper_refuses_stage_one_inside_stage_two(tmp_path):
    (tmp_path / "glue" / "SST-2").mkdir(parents=True)
    done = run_wrapper("run_train_student_tinybert.sh", DATA_ROOT=str(tmp_path / "glue"), PYTHON=fake_python(tmp_path),
                       FT_BERT_BASE_DIR=str(tmp_path), GENERAL_TINYBERT_DIR=str(tmp_path),
                       STUDENT_DIR=str(tmp_path / "s"), TMP_STUDENT_DIR=str(tmp_path / "s" / "tmp"))
    assert done.returncode == 2 and "TMP_STUDENT_DIR" in done.stderr and "lies inside STUDENT_DIR" in done.stderr


def test_wrapper_python_and_venv_are_checked_before_use(tmp_path):
    (tmp_path / "glue" / "SST-2").mkdir(parents=True)
    inputs = dict(DATA_ROOT=str(tmp_path / "glue"), BERT_BASE_DIR=str(tmp_path))
    bare = tmp_path / "bare"  # a Python without the project's packages
    bare.write_text("#!/bin/sh\necho \"ModuleNotFoundError: No module named 'tqdm'\" >&2\nexit 1\n")
    bare.chmod(0o755)
    done = run_wrapper("run_train_teacher.sh", PYTHON=str(bare), **inputs)
    assert done.returncode == 2 and done.stderr.startswith(
        f"error: PYTHON='{bare}' cannot run the scripts (ModuleNotFoundError: No module named 'tqdm'): unset PYTHON")
    done = run_wrapper("run_train_teacher.sh", VENV=str(tmp_path / "no-venv"), **inputs)
    assert done.returncode == 2 and f"VENV='{tmp_path / 'no-venv'}' holds no bin/python" in done.stderr
    mine = tmp_path / "venv" / "bin"  # a venv made without setup_env.sh: used as it is, nothing installed
    mine.mkdir(parents=True)
    os.symlink(fake_python(tmp_path), mine / "python")
    calls = script_calls(run_wrapper("run_train_teacher.sh", VENV=str(tmp_path / "venv"), **inputs))
    assert len(calls) == 1 and not os.path.exists(tmp_path / "venv" / ".requirements.sha256")


def test_train_wrappers_start_the_backend_launcher_for_several_processes(tmp_path):
    fake = tmp_path / "python"
    fake.write_text('#!/bin/sh\necho "$@"\n')
    fake.chmod(0o755)
    (tmp_path / "glue" / "SST-2").mkdir(parents=True)
    inputs = dict(DATA_ROOT=str(tmp_path / "glue"), BERT_BASE_DIR=str(tmp_path), FT_BERT_BASE_DIR=str(tmp_path),
                  GENERAL_TINYBERT_DIR=str(tmp_path), PREGENERATED_DATA=str(tmp_path), PYTHON=str(fake))
    one = run_wrapper("run_train_teacher.sh", **inputs)
    assert one.returncode == 0 and one.stdout.startswith("task_distill.py --finetune"), one.stderr
    for backend_name, module in (("torch", "torch.distributed.run"), ("oneflow", "oneflow.distributed.launch")):
        for wrapper, script in (("run_train_teacher.sh", "task_distill.py"), ("run_train_student_tinybert.sh",
                                                                              "task_distill.py"),
                                ("run_general_distill.sh", "general_distill.py")):
            done = run_wrapper(wrapper, NPROC_PER_NODE="4", NNODES="2", NODE_RANK="1", MASTER_ADDR="127.0.0.2",
                               BACKEND=backend_name, **inputs)
            assert done.returncode == 0, done.stderr
            calls = [line for line in done.stdout.splitlines() if script in line]
            assert len(calls) == (2 if "student" in wrapper else 1)
            for line in calls:
                assert line.startswith(f"-m {module} --nproc_per_node 4 --nnodes 2 --node_rank 1 "
                                       f"--master_addr 127.0.0.2 --master_port 29500 {script} "), line
                assert f"--backend {backend_name}" in line


def test_one_spelling_per_flag_the_earlier_ones_kept():
    """--bert_model names the pretrained BERT in every stage that reads one; the reference's and this
    project's earlier spellings still parse to it. predict.py uses the GPU by default, as the training
    stages do."""
    import data_augmentation
    import glue_process
    import predict
    for flag in ("--bert_model", "--pretrained_bert_model"):
        assert data_augmentation.parse_args([flag, "m", "--glove_embs", "g", "--show_candidates", "x"]).bert_model == "m"
    for flag in ("--bert_model", "--model_dir"):
        assert glue_process.build_parser().parse_args([flag, "m", "--tasks", "RTE"]).bert_model == "m"
    assert predict.parse_args(["--model", "m"]).gpu is not False
    assert predict.parse_args(["--model", "m", "--no-gpu"]).gpu is False
