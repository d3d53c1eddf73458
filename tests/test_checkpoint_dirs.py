"""checkpoint.py's model directories and names, and its atomic writes (no framework needed)."""
import os

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
