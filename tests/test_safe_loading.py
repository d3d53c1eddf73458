"""Loading never runs code. A crafted pickle in a oneflow.save directory, in a pytorch_model.bin or in a
resume directory is refused before it runs (the marker file it would create stays absent, and the same
bytes unpickled plainly do create it), while every oneflow.save directory OneFlow itself writes still
loads with identical tensors, on both backends and on an install without OneFlow."""
import collections
import json
import os
import pickle
import random
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

import backend
import checkpoint
import files
from conftest import BACKENDS, ROOT, bound, tiny_config_dict

FIT_SIZE = 48


class Payload:
    """Unpickling this calls function(*args), as a crafted file would."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


PAYLOADS = {"os.system": lambda marker: (Payload(os.system, f"touch '{marker}'"), f"{os.system.__module__}.system"),
            "exec": lambda marker: (Payload(exec, f"open({str(marker)!r}, 'w').close()"), "builtins.exec")}


def assert_runs_when_unpickled_plainly(unpickle, marker):
    """The control: the refused bytes are a real attack, which a plain unpickler carries out."""
    assert not marker.exists()
    unpickle()
    assert marker.exists()


def _tree_equal(a, b, where="obj"):
    """Same structure, container types, scalars; a OneFlow tensor in `a` equals the array (or tensor) in `b`
    exactly, dtype included."""
    if hasattr(a, "numpy"):
        b = b.numpy() if hasattr(b, "numpy") else b  # a rebuilt tensor, or the array read
        assert isinstance(b, np.ndarray), where
        assert a.numpy().dtype == b.dtype and a.numpy().shape == b.shape and np.array_equal(a.numpy(), b), where
    elif isinstance(a, dict):
        assert type(a) is type(b) and list(a) == list(b), where
        for k in a:
            _tree_equal(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _tree_equal(x, y, f"{where}[{i}]")
    else:
        assert type(a) is type(b) and a == b, where


def _train_one_step(name, model, optimizer, scheduler):
    flow = backend.framework(name)
    ids = flow.tensor(np.arange(1, 17).reshape(2, 8) % 120, dtype=flow.int64)
    loss = flow.nn.functional.cross_entropy(model(ids)[0], flow.tensor([0, 2], dtype=flow.int64))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    scheduler.step()


def _trained(name, seed=0):
    """A tiny classifier after one AdamW step, with its optimizer and schedule."""
    m, t = bound("modeling", name), bound("training", name)
    t.set_seed(seed)
    model = m.TinyBertForSequenceClassification(m.BertConfig.from_dict(tiny_config_dict(num_labels=3)),
                                                num_labels=3, fit_size=FIT_SIZE)
    optimizer = t.make_optimizer(model, lr=1e-3)
    scheduler = t.make_schedule(optimizer, total_steps=4, warmup_proportion=0.5)
    _train_one_step(name, model, optimizer, scheduler)
    return model, optimizer, scheduler


def _model_dir(directory):
    os.makedirs(directory, exist_ok=True)
    files.write_json_atomic(os.path.join(directory, "config.json"), tiny_config_dict(num_labels=3))
    files.write_text_atomic(os.path.join(directory, "vocab.txt"), "".join(f"tok{i}\n" for i in range(120)))
    return directory


@pytest.fixture(scope="module")
def oneflow_written(tmp_path_factory):
    """What OneFlow itself writes (kept tiny: OneFlow is slow on this CPU): a plain
    oneflow.save(model.state_dict(), DIR), this project's save_oneflow, and a OneFlow resume checkpoint."""
    out = tmp_path_factory.mktemp("oneflow_written")
    flow = backend.framework("oneflow")
    model, optimizer, scheduler = _trained("oneflow")
    flow.save(model.state_dict(), _model_dir(str(out / "plain")))
    checkpoint.save_oneflow(model.numpy_state_dict(), _model_dir(str(out / "project")))
    bound("training", "oneflow").save_checkpoint(str(out / "resume"), model, optimizer, scheduler, state={"step": 1})
    return out, model, optimizer, scheduler


# -- crafted files are refused before they run ---------------------------------------------------
@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("name", BACKENDS)
def test_crafted_pickled_data_is_refused(name, payload, tmp_path, modeling_for):
    marker = tmp_path / "marker"
    attack, refused_global = PAYLOADS[payload](marker)
    directory = _model_dir(str(tmp_path / "downloaded"))
    crafted = pickle.dumps({"protocol_version": 1, "data": collections.OrderedDict(
        [("embeddings.LayerNorm.bias", [0.0] * 32), ("embeddings.word_embeddings.weight", attack)])})
    with open(os.path.join(directory, "pickled_data"), "wb") as f:
        f.write(crafted)
    with pytest.raises(checkpoint.RefusedPickle) as error:
        modeling_for(name).TinyBertForSequenceClassification.from_pretrained(directory)
    assert str(error.value) == (f"{directory}/pickled_data: refused to unpickle: it asks for {refused_global}, "
                                "which oneflow.save never writes for a state dict (nothing in the file was run)")
    assert not marker.exists()
    assert_runs_when_unpickled_plainly(lambda: pickle.loads(crafted), marker)


def test_tensor_reference_outside_the_directory_is_refused(oneflow_written, tmp_path):
    out = oneflow_written[0]
    directory = str(tmp_path / "copy")
    shutil.copytree(out / "plain", directory)
    folder = sorted(f for f in os.listdir(directory) if os.path.isfile(os.path.join(directory, f, "meta")))[0]
    elsewhere = "../" + "x" * (len(folder) - 3)  # as long as the name it replaces: the pickle's frame still fits
    with open(os.path.join(directory, "pickled_data"), "rb") as f:
        data = f.read()
    entry = bytes([0x8c, len(folder)]) + folder.encode()  # SHORT_BINUNICODE of the folder name
    assert data.count(entry) == 1
    with open(os.path.join(directory, "pickled_data"), "wb") as f:
        f.write(data.replace(entry, bytes([0x8c, len(folder)]) + elsewhere.encode()))
    with pytest.raises(checkpoint.CheckpointError, match=rf"pickled_data: a tensor refers to '{elsewhere}', "
                                                         rf"not to a folder of {directory}"):
        checkpoint.load_state_dict(directory)


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("name", BACKENDS)
def test_crafted_pytorch_bin_is_refused(name, payload, tmp_path, modeling_for):
    marker = tmp_path / "marker"
    attack, refused_global = PAYLOADS[payload](marker)
    path = os.path.join(_model_dir(str(tmp_path / "downloaded")), "pytorch_model.bin")
    torch.save({"bert.pooler.dense.bias": torch.zeros(32), "bert.pooler.dense.weight": attack}, path)
    with pytest.raises(checkpoint.RefusedPickle) as error:
        modeling_for(name).TinyBertForSequenceClassification.from_pretrained(os.path.dirname(path))
    refused_global = refused_global.removeprefix("builtins.")  # torch names a builtin without its module
    assert str(error.value) == (f"{path}: refused to unpickle: it asks for {refused_global}, which a file of weights "
                                "and optimizer state never needs (nothing in the file was run)")
    assert not marker.exists()
    assert_runs_when_unpickled_plainly(lambda: torch.load(path, weights_only=False), marker)


@pytest.fixture
def torch_resume(tmp_path):
    """A torch resume directory, and the model, optimizer and schedule one step further on."""
    model, optimizer, scheduler = _trained("torch")
    directory = str(tmp_path / "resume")
    bound("training", "torch").save_checkpoint(directory, model, optimizer, scheduler, state={"step": 1})
    _train_one_step("torch", model, optimizer, scheduler)
    return directory, model, optimizer, scheduler


def _craft(directory, file, attack):
    """Put `attack` into one file of a resume directory the way that file's own writer would have."""
    path = os.path.join(directory, file)
    if file == "rng.npz":  # an object array: np.save pickles it
        np.savez(path, python_mt=np.array([attack], dtype=object))
        return path, lambda: np.load(path, allow_pickle=True)["python_mt"]
    if file == "rng.pkl":  # the older versions' pickle of the RNG state
        os.remove(os.path.join(directory, "rng.npz"))
        with open(path, "wb") as f:
            pickle.dump({"python": attack}, f)
        return path, lambda: pickle.load(open(path, "rb"))
    torch.save({"state": {0: {"exp_avg": attack}}, "param_groups": []}, path)  # optimizer or scheduler
    return path, lambda: torch.load(path, weights_only=False)


REFUSALS = {
    "rng.npz": r"rng\.npz: not a readable \.npz of plain arrays \(ValueError: Object arrays cannot be loaded when "
               r"allow_pickle=False\)",
    "rng.pkl": r"rng\.pkl: random state saved as a pickle by an older version; it is not loaded, since unpickling "
               r"can run code",
    "optimizer": r"optimizer: refused to unpickle: it asks for exec, which",
    "scheduler": r"scheduler: refused to unpickle: it asks for exec, which",
}


@pytest.mark.parametrize("file", REFUSALS)
def test_crafted_resume_state_is_refused_before_anything_is_restored(file, torch_resume, tmp_path):
    directory, model, optimizer, scheduler = torch_resume
    marker = tmp_path / "marker"
    path, unpickle = _craft(directory, file, PAYLOADS["exec"](marker)[0])
    before = {k: v.copy() for k, v in model.numpy_state_dict().items()}
    lr_before = scheduler.get_last_lr()
    with pytest.raises(checkpoint.CheckpointError, match=REFUSALS[file]):
        bound("training", "torch").load_checkpoint(directory, model, optimizer, scheduler)
    assert not marker.exists()
    saved = checkpoint.load_state_dict(directory)
    assert any(not np.array_equal(saved[k], v) for k, v in before.items())  # restoring would have changed them
    assert all(np.array_equal(v, before[k]) for k, v in model.numpy_state_dict().items())
    assert scheduler.get_last_lr() == lr_before
    assert_runs_when_unpickled_plainly(unpickle, marker)


def test_crafted_oneflow_optimizer_state_is_refused(oneflow_written, tmp_path):
    out, model, optimizer, scheduler = oneflow_written
    directory = str(tmp_path / "resume")
    shutil.copytree(out / "resume", directory)
    marker = tmp_path / "marker"
    attack, _ = PAYLOADS["exec"](marker)
    crafted = pickle.dumps({"protocol_version": 1, "data": {"state": {0: {"exp_avg": attack}}, "param_groups": []}})
    with open(os.path.join(directory, "optimizer", "pickled_data"), "wb") as f:
        f.write(crafted)
    with pytest.raises(checkpoint.RefusedPickle, match=r"optimizer/pickled_data: refused to unpickle: it asks for "
                                                       r"builtins\.exec"):
        bound("training", "oneflow").load_checkpoint(directory, model, optimizer, scheduler)
    assert not marker.exists()
    assert_runs_when_unpickled_plainly(lambda: pickle.loads(crafted), marker)


# -- what OneFlow writes still loads, identically ---------------------------------------------------
@pytest.mark.parametrize("kind", ["plain", "project"])
@pytest.mark.parametrize("name", BACKENDS)
def test_oneflow_save_directories_load_with_identical_tensors(name, kind, oneflow_written, modeling_for):
    out, model, _, _ = oneflow_written
    flow = backend.framework("oneflow")
    directory = str(out / kind)
    _tree_equal(flow.load(directory), checkpoint.read_oneflow_save(directory))  # OneFlow's own reading of it
    loaded = modeling_for(name).TinyBertForSequenceClassification.from_pretrained(directory, fit_size=None,
                                                                                    verbose=False)
    want, got = model.numpy_state_dict(), loaded.numpy_state_dict()
    assert got.keys() == want.keys() and loaded.missing_keys == []
    assert all(np.array_equal(got[k], want[k]) for k in want)


def test_oneflow_optimizer_and_schedule_state_read_as_oneflow_reads_them(oneflow_written):
    out, model, optimizer, _ = oneflow_written
    flow = backend.framework("oneflow")
    for part in ("optimizer", "scheduler"):
        path = str(out / "resume" / part)
        _tree_equal(flow.load(path), checkpoint.read_oneflow_save(path))
        _tree_equal(flow.load(path), checkpoint.read_framework_save(path, flow))  # arrays back into tensors
    rebuilt = checkpoint.read_framework_save(str(out / "resume" / "optimizer"), flow)
    slots = [s for k, s in rebuilt["state"].items() if k != "step" and s]  # parameters that had a gradient
    assert rebuilt["state"]["step"] == 1 and len(slots) == sum(p.grad is not None for p in model.parameters()) > 20
    assert all(isinstance(s["exp_avg"], flow.Tensor) and isinstance(s["exp_avg_sq"], flow.Tensor) for s in slots)
    assert rebuilt["param_groups"] == optimizer.state_dict()["param_groups"]


def test_an_install_without_oneflow_reads_oneflow_save_directories(oneflow_written, tmp_path):
    out, model, _, _ = oneflow_written
    code = ("import sys; sys.modules['oneflow'] = None  # `import oneflow` raises from here on\n"
            "import checkpoint, modeling\n"
            f"loaded = modeling.TinyBertForSequenceClassification.from_pretrained({str(out / 'plain')!r}, "
            "fit_size=None, verbose=False)\n"
            f"checkpoint.save_arrays({str(tmp_path / 'got.npz')!r}, loaded.numpy_state_dict())\n")
    env = dict(os.environ, BACKEND="torch", PYTHONPATH=ROOT)
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    got, want = checkpoint.load_arrays(str(tmp_path / "got.npz")), model.numpy_state_dict()
    assert got.keys() == want.keys() and all(np.array_equal(got[k], want[k]) for k in want)


# -- the RNG state of a resume directory: plain arrays, restored exactly -----------------------------
def _draws(flow):
    return (random.random(), random.gauss(0, 1), np.random.rand(3).tolist(), np.random.randn(3).tolist(),
            flow.rand(4).numpy().tolist())


@pytest.mark.parametrize("name", BACKENDS)
def test_rng_state_round_trips_exactly_through_rng_npz(name, tmp_path):
    t, flow = bound("training", name), backend.framework(name)
    for cached_gaussians in (False, True):
        t.set_seed(5)
        if cached_gaussians:  # both generators then keep a second Gaussian for the next call
            random.gauss(0, 1)
            np.random.randn(1)
        assert (random.getstate()[2] is not None) == cached_gaussians == (np.random.get_state()[3] == 1)
        path = str(tmp_path / f"rng{cached_gaussians}.npz")
        checkpoint.save_arrays(path, t.rng_state())
        python, numpy_state, framework = random.getstate(), np.random.get_state(), flow.get_rng_state().numpy()
        want = _draws(flow)
        t.set_seed(99)
        _draws(flow)
        t.set_rng_state(checkpoint.load_arrays(path))
        assert random.getstate() == python
        restored = np.random.get_state()
        assert restored[0] == "MT19937" and np.array_equal(restored[1], numpy_state[1])
        assert restored[2:] == numpy_state[2:]
        assert np.array_equal(flow.get_rng_state().numpy(), framework)
        assert _draws(flow) == want
    assert sorted(np.load(path, allow_pickle=False).files) == sorted(t.rng_state())  # plain arrays only


def test_save_arrays_refuses_object_arrays(tmp_path):
    with pytest.raises(ValueError, match=r"x\.npz: b would be stored as pickles \(object arrays\)"):
        checkpoint.save_arrays(str(tmp_path / "x.npz"), {"a": np.zeros(2), "b": np.array([{}], dtype=object)})
    assert os.listdir(tmp_path) == []


def test_refused_globals_are_named_on_one_line(tmp_path):
    """OneFlow's reader admits exactly the classes OneFlow 0.9 pickles for state dicts."""
    assert set(checkpoint.ONEFLOW_GLOBALS) == {("collections", "OrderedDict"), ("oneflow", "Tensor"),
                                               ("oneflow.nn", "Parameter")}
    directory = _model_dir(str(tmp_path / "d"))
    with open(os.path.join(directory, "pickled_data"), "wb") as f:
        pickle.dump({"protocol_version": 1, "data": {"w": Payload(json.loads, "[]")}}, f)
    with pytest.raises(checkpoint.RefusedPickle) as error:
        checkpoint.load_state_dict(directory)
    assert "\n" not in str(error.value) and "it asks for json.loads, which" in str(error.value)
