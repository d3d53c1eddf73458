"""Model directories and weight files, framework-free: every format becomes one numpy state dict
with Hugging Face BERT names (`bert.encoder.layer.0.attention.self.query.weight`, ...).

A model directory is `config.json` (or Google's `bert_config.json`), `vocab.txt`, and weights in any
format below; `load_state_dict(dir)` finds out which from the files present. Each format is one
reader (files -> numpy dict) in READERS; NAME_FIXES is the one table of foreign-name fixes.
"""
import contextlib
import os
import shutil
import tempfile

import numpy as np

CONFIG_NAME = "config.json"
VOCAB_NAME = "vocab.txt"
SAFETENSORS_NAME = "model.safetensors"
PYTORCH_NAME = "pytorch_model.bin"


class CheckpointError(ValueError):
    pass


# ----------------------------------------------------------------------------------------------
# Directory layout
# ----------------------------------------------------------------------------------------------
def find_config(model_dir):
    if not os.path.isdir(model_dir):
        raise FileNotFoundError(f"model directory {model_dir} does not exist")
    for name in (CONFIG_NAME, "bert_config.json"):
        path = os.path.join(model_dir, name)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"{model_dir}: no {CONFIG_NAME} (or bert_config.json) in this model directory")


def find_vocab(model_dir):
    if model_dir is None:
        return None
    path = os.path.join(model_dir, VOCAB_NAME)
    return path if os.path.isfile(path) else None


def load_tokenizer(model_dir):
    """BertTokenizerFast from the directory's vocab.txt; lower-casing as the model was trained.

    tokenizer_config.json's do_lower_case wins when present; otherwise a vocabulary without
    ASCII capitals is taken as uncased (bert-base-uncased, TinyBERT, MiniLM)."""
    import json
    from transformers import BertTokenizerFast
    vocab = find_vocab(model_dir)
    if vocab is None:
        raise FileNotFoundError(f"{model_dir}: no {VOCAB_NAME} in this model directory")
    lower = None
    tok_cfg = os.path.join(model_dir, "tokenizer_config.json")
    if os.path.isfile(tok_cfg):
        with open(tok_cfg, encoding="utf-8") as f:
            lower = json.load(f).get("do_lower_case")
    if lower is None:
        with open(vocab, encoding="utf-8") as f:
            # ASCII capitals only: uncased vocabularies still hold a few symbols such as 'ℝ'
            lower = not any(c.isascii() and c.isupper() for line in f if not line.startswith("[") for c in line)
    # transformers 5 takes the vocabulary as `vocab` (older releases: `vocab_file`)
    return BertTokenizerFast(vocab=vocab, do_lower_case=lower)


def detect_format(model_dir):
    """The name of the first reader whose files are present in `model_dir`."""
    for fmt, (present, _) in READERS.items():
        if present(model_dir):
            return fmt
    known = ", ".join(f"{name} ({hint})" for name, hint in FORMAT_HINTS.items())
    raise FileNotFoundError(f"{model_dir}: no weights found; expected one of: {known}")


def load_state_dict(model_dir, config=None):
    """Read the weights of `model_dir` into {hf_name: float32 numpy array}."""
    fmt = detect_format(model_dir)
    _, read = READERS[fmt]
    return normalize_names(read(model_dir, config))


# ----------------------------------------------------------------------------------------------
# Names
# ----------------------------------------------------------------------------------------------
# (old, new) substrings, applied in order; each covers a convention found in published BERT files.
NAME_FIXES = [
    ("LayerNorm.gamma", "LayerNorm.weight"),  # early pytorch-pretrained-bert checkpoints
    ("LayerNorm.beta", "LayerNorm.bias"),
]
# Checkpoints of a bare BertModel (e.g. sentence-transformers) have no "bert." prefix.
BARE_PREFIXES = ("embeddings.", "encoder.", "pooler.")


# Buffers some writers save beside the weights; they are not parameters.
NOT_WEIGHTS = ("position_ids",)


def normalize_names(state):
    out = {}
    for key, value in state.items():
        if key.endswith(NOT_WEIGHTS):
            continue
        for old, new in NAME_FIXES:
            key = key.replace(old, new)
        if key.startswith(BARE_PREFIXES):
            key = "bert." + key
        out[key] = value
    return out


def as_float32(array):
    array = np.asarray(array)
    return array.astype(np.float32) if array.dtype != np.float32 and array.dtype.kind == "f" else array


# ----------------------------------------------------------------------------------------------
# Readers: (is present in dir, read(dir, config) -> numpy dict)
# ----------------------------------------------------------------------------------------------
def _read_safetensors(model_dir, config):
    from safetensors.numpy import load_file
    path = os.path.join(model_dir, SAFETENSORS_NAME)
    try:
        return load_file(path)
    except Exception as e:  # safetensors raises its own error types for truncated or garbled headers
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from e


def _read_pytorch_bin(model_dir, config):
    import torch  # installed with either backend; only this format needs it
    path = os.path.join(model_dir, PYTORCH_NAME)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({e})") from e
    return {k: v.float().numpy() if v.is_floating_point() else v.numpy() for k, v in state.items()}


def _file_present(name):
    return lambda d: os.path.isfile(os.path.join(d, name))


READERS = {
    "safetensors": (_file_present(SAFETENSORS_NAME), _read_safetensors),
    "pytorch": (_file_present(PYTORCH_NAME), _read_pytorch_bin),
}
FORMAT_HINTS = {
    "safetensors": SAFETENSORS_NAME,
    "pytorch": PYTORCH_NAME,
}


# ----------------------------------------------------------------------------------------------
# Writing: nothing appears under its final name until it is complete
# ----------------------------------------------------------------------------------------------
def save_safetensors(state, directory):
    from safetensors.numpy import save_file
    save_file({k: np.ascontiguousarray(v) for k, v in state.items()}, os.path.join(directory, SAFETENSORS_NAME))


def write_text_atomic(path, text):
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def copy_file(src, dst):
    if os.path.abspath(src) != os.path.abspath(dst):
        shutil.copyfile(src, dst)


@contextlib.contextmanager
def atomic_dir(directory):
    """Yield a temporary sibling directory; on success it takes the place of `directory`.

    The swap is two renames, so a crash leaves either the old directory or the new one complete
    (in the instant between the renames, both sit beside the final name, as `.old-` and `.tmp-`).
    Entries of the old directory that the writer did not rewrite (a run's train_log.csv, its
    resume/ state) are moved, not copied, into the new one.
    """
    directory = os.path.abspath(directory)
    parent = os.path.dirname(directory)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=os.path.basename(directory) + ".tmp-", dir=parent)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if not os.path.isdir(directory):
        os.rename(tmp, directory)
        return
    old = directory + ".old-" + os.path.basename(tmp)
    os.rename(directory, old)
    os.rename(tmp, directory)
    for name in os.listdir(old):
        if not os.path.exists(os.path.join(directory, name)):
            os.rename(os.path.join(old, name), os.path.join(directory, name))
    shutil.rmtree(old, ignore_errors=True)
