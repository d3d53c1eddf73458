"""checkpoint.py's model directories and names, and its atomic writes (no framework needed)."""
import os
import re

import pytest

import checkpoint


def test_resolve_model_dir_takes_a_directory_a_known_name_or_models_name(tmp_path, minilm_dir, monkeypatch):
    assert checkpoint.resolve_model_dir(str(tmp_path)) == str(tmp_path)
    assert os.path.samefile(checkpoint.resolve_model_dir("all-MiniLM-L6-v2"), minilm_dir)
    (tmp_path / "my-bert").mkdir()
    monkeypatch.setattr(checkpoint, "MODELS_DIR", str(tmp_path))
    assert checkpoint.resolve_model_dir("my-bert") == str(tmp_path / "my-bert")
    with pytest.raises(FileNotFoundError, match=r"model 'nope': no such directory, nor models/nope, "
                                                r"nor a known name \(all-MiniLM-L6-v2, "):
        checkpoint.resolve_model_dir("nope")


def test_atomic_file_replaces_whole_or_not_at_all(tmp_path):
    path = str(tmp_path / "vectors.npz")
    checkpoint.write_text_atomic(path, "old\n")
    old_umask = os.umask(0o027)
    try:
        with checkpoint.atomic_file(path) as f:
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
        with checkpoint.atomic_file(path, "w", encoding="utf-8") as f:
            f.write("half")
            raise KeyboardInterrupt
    with open(path, "rb") as f:
        assert f.read() == b"new"
    assert os.listdir(tmp_path) == ["vectors.npz"]
    with pytest.raises(ValueError, match="mode 'ab' must write a new file"):
        with checkpoint.atomic_file(path, "ab"):
            pass


def test_a_missing_model_directory_is_named_as_missing(tmp_path):
    missing = str(tmp_path / "no-such-model")
    for load in (checkpoint.load_tokenizer, checkpoint.find_config, checkpoint.detect_format):
        with pytest.raises(FileNotFoundError, match=rf"^model directory {re.escape(missing)} does not exist$"):
            load(missing)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty: no vocab.txt in this model directory"):
        checkpoint.load_tokenizer(str(tmp_path / "empty"))
