"""A stranger's model directory, run directory or .onnx file is data: reading one opens no file outside
it, moves nothing out of a folder of the user's, and ends quickly, within bounded memory, either loaded
exactly or with one line naming the file and the reason. One test per way such a file got through
before (symlinks, a TF index or ONNX external data naming an outside file, control flow in a graph,
pickles that grow when walked, configs that make a framework allocate or abort); each checks that the
outside folder still holds its files, and each has a control that the same input without the attack
loads as it should."""
import collections
import json
import os
import pickle
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import checkpoint
import files
import export_onnx
import inference
import tiny_assets
from conftest import BACKENDS, ROOT, bound, tiny_config_dict

SECRET = b"the user's own bytes, which no model may read\n"


@pytest.fixture
def outside(tmp_path):
    """A folder of the user's: no loader may read it into a model, nor move or delete its files."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.bin").write_bytes(SECRET * 64)
    return folder


def assert_untouched(folder):
    assert (folder / "secret.bin").read_bytes() == SECRET * 64


def _tiny_state(seed=0):
    """A tiny classifier's weights (HF names), saved by the torch backend."""
    m = bound("modeling", "torch")
    m.flow.manual_seed(seed)
    model = m.TinyBertForSequenceClassification(m.BertConfig.from_dict(tiny_config_dict()), num_labels=2, fit_size=32)
    return model.numpy_state_dict()


def _model_dir(directory, **config):
    os.makedirs(directory, exist_ok=True)
    files.write_json_atomic(os.path.join(directory, "config.json"), tiny_config_dict(**config))
    files.write_text_atomic(os.path.join(directory, "vocab.txt"), "".join(f"tok{i}\n" for i in range(120)))
    return str(directory)


# -- oneflow.save directories, written byte for byte as OneFlow 0.9 writes them ---------------------
class Tensor:
    """Pickled under OneFlow's name (oneflow.Tensor, see oneflow_pickle) with OneFlow's state {'path': folder}."""

    def __init__(self, folder):
        self.folder = folder

    def __getstate__(self):
        return {"path": self.folder}


def oneflow_pickle(data):
    """What oneflow.save pickles for `data`, with Tensor standing for OneFlow's tensors: protocol 2
    names a class as text (GLOBAL 'module\\nname'), so the name is swapped without OneFlow."""
    raw = pickle.dumps({"protocol_version": 1, "data": data}, protocol=2)
    return raw.replace(f"c{Tensor.__module__}\nTensor\n".encode(), b"coneflow\nTensor\n")


def write_tensor(folder, array):
    os.makedirs(folder, exist_ok=True)
    dims = "".join(f"  dim: {d}\n" for d in array.shape)
    with open(os.path.join(folder, "meta"), "w") as f:
        f.write(f"shape {{\n{dims}}}\ndata_type: kFloat\n")
    np.ascontiguousarray(array, "<f4").tofile(os.path.join(folder, "out"))


def write_oneflow_dir(directory, state):
    """`state` as oneflow.save(model.state_dict(), directory) writes it: one folder per tensor."""
    _model_dir(directory)
    folders = collections.OrderedDict()
    for i, (name, array) in enumerate(checkpoint.oneflow_state_keys(state).items()):
        write_tensor(os.path.join(directory, f"tensor_{i}"), array)
        folders[name] = Tensor(f"tensor_{i}")
    with open(os.path.join(directory, "pickled_data"), "wb") as f:
        f.write(oneflow_pickle(folders))
    return str(directory)


@pytest.mark.parametrize("link", ["folder", "meta", "out"])
@pytest.mark.parametrize("name", BACKENDS)
def test_oneflow_save_tensor_linked_outside_is_refused(name, link, tmp_path, outside, modeling_for):
    state = _tiny_state()
    directory = write_oneflow_dir(str(tmp_path / "model"), state)
    classifier = modeling_for(name).TinyBertForSequenceClassification
    loaded = classifier.from_pretrained(directory, fit_size=None, verbose=False).numpy_state_dict()
    assert all(np.array_equal(loaded[k], state[k]) for k in state)  # the control: it loads exactly
    folder = os.path.join(directory, "tensor_0")  # the word embeddings
    write_tensor(str(outside / "tensor_0"), np.ones_like(state["bert.embeddings.word_embeddings.weight"]))
    target = os.path.join(directory, "tensor_0", link) if link != "folder" else folder
    shutil.rmtree(target) if os.path.isdir(target) else os.remove(target)
    os.symlink(outside / "tensor_0" / (link if link != "folder" else ""), target.rstrip("/"))
    with pytest.raises(checkpoint.OutsidePath, match=rf"^{target} leads outside {directory} \(to {outside}"):
        classifier.from_pretrained(directory, fit_size=None, verbose=False)
    assert_untouched(outside)
    assert sorted(os.listdir(outside / "tensor_0")) == ["meta", "out"]


def test_legacy_snapshot_blob_linked_outside_is_refused(tmp_path, outside):
    directory = _model_dir(tmp_path / "legacy")
    blob = os.path.join(directory, "bert-pooler-dense-bias", "out")
    os.makedirs(os.path.dirname(blob))
    np.arange(32, dtype="<f4").tofile(blob)
    assert np.array_equal(checkpoint.load_state_dict(directory)["bert.pooler.dense.bias"], np.arange(32))  # control
    os.remove(blob)
    (outside / "out").write_bytes(np.full(32, 7, "<f4").tobytes())
    os.symlink(outside / "out", blob)
    with pytest.raises(checkpoint.OutsidePath, match=rf"^{blob} leads outside {directory}"):
        checkpoint.load_state_dict(directory)
    assert (outside / "out").stat().st_size == 128


@pytest.mark.parametrize("named", ["absolute", "relative"])
def test_tf_index_naming_a_checkpoint_outside_is_refused(named, tmp_path, outside):
    """Refused before TensorFlow opens anything: the outside 'checkpoint' need not even be one."""
    directory = _model_dir(tmp_path / "tf")
    (outside / "bert_model.ckpt.index").write_bytes(SECRET)
    prefix = str(outside / "bert_model.ckpt") if named == "absolute" else "../outside/bert_model.ckpt"
    with open(os.path.join(directory, "checkpoint"), "w") as f:
        f.write(f'model_checkpoint_path: "{prefix}"\n')
    with pytest.raises(checkpoint.OutsidePath, match=rf"bert_model\.ckpt\.index leads outside {directory}"):
        inference.load_student(directory, "torch")
    assert (outside / "bert_model.ckpt.index").read_bytes() == SECRET


def test_vocab_linked_outside_is_never_copied_into_an_output(tmp_path, outside):
    """The symlinked vocab.txt is refused by the tokenizer, by every model load, and by the copy
    save_pretrained makes into a new model (what --finetune and export_onnx.py publish)."""
    m = bound("modeling", "torch")
    vocab = tiny_assets.write_vocab(str(tmp_path / "v"))
    directory = tiny_assets.write_classifier(m, tmp_path / "model", vocab)
    model = m.TinyBertForSequenceClassification.from_pretrained(directory, verbose=False)
    os.remove(os.path.join(directory, "vocab.txt"))
    shutil.copy(vocab, outside / "vocab.txt")
    os.symlink(outside / "vocab.txt", os.path.join(directory, "vocab.txt"))
    link = os.path.join(directory, "vocab.txt")
    with pytest.raises(checkpoint.OutsidePath, match=rf"^{link} leads outside {directory}"):
        checkpoint.load_tokenizer(directory)
    with pytest.raises(checkpoint.OutsidePath, match=rf"^{link} leads outside"):
        export_onnx.main(["--model", directory, "--output", str(tmp_path / "out" / "student.onnx")])
    with pytest.raises(checkpoint.OutsidePath, match=rf"^{link} leads outside"):
        model.save_pretrained(str(tmp_path / "finetuned"))  # the model loaded before the swap
    assert not os.path.exists(tmp_path / "finetuned") and not os.path.exists(tmp_path / "out" / "student.onnx")
    assert_untouched(outside)


# -- run directories -------------------------------------------------------------------------------
def _fit(name, out_dir, resume=True):
    """training.fit into `out_dir`: resuming (what --resume runs) or afresh (what --overwrite runs); one
    step of a tiny model."""
    m, t = bound("modeling", name), bound("training", name)
    flow = m.flow
    model = m.TinyBertForSequenceClassification(m.BertConfig.from_dict(tiny_config_dict()), num_labels=2, fit_size=32)
    opt = t.make_optimizer(model, lr=1e-3)
    sched = t.make_schedule(opt, 1, warmup_proportion=0.0)
    ids = flow.tensor(np.arange(16).reshape(2, 8) % 120, dtype=flow.int64)

    def loss_fn(batch):
        return {"loss": flow.nn.functional.cross_entropy(model(batch["ids"])[0], flow.tensor([0, 1], dtype=flow.int64))}
    return t.fit(model, lambda e: t.Epoch(1, lambda i: {"ids": ids}), loss_fn, opt, sched,
                 t.Plan(total_steps=1, eval_every=0, log_every=1, save_every=1), t.Saving(str(out_dir)),
                 precision=t.MixedPrecision(False, "cpu"), resume=resume, run_info={"mode": "test"})


@pytest.mark.parametrize("entry", ["resume", "resume.old-tmpabc", "resume.tmp-abc"])
@pytest.mark.parametrize("name", BACKENDS)
def test_resume_linked_outside_is_refused_and_moves_nothing(name, entry, tmp_path, outside):
    run = tmp_path / "run"
    if entry != "resume":  # a crash "left" the swap half done: resume/ is there, the link beside it
        _fit("torch", run)
        assert (run / "resume" / "state.json").is_file()
    run.mkdir(exist_ok=True)
    link = run / entry
    os.symlink(outside, link)
    with pytest.raises(checkpoint.OutsidePath, match=rf"^{link} leads outside {run} \(to {outside}\)"):
        _fit(name, run)
    assert_untouched(outside)
    assert os.listdir(outside) == ["secret.bin"]
    assert os.path.islink(link)


def test_a_fresh_run_over_a_linked_resume_moves_nothing(tmp_path, outside):
    """--overwrite: a fresh run drops the old resume state; a linked one is refused, not emptied."""
    run = tmp_path / "run"
    run.mkdir()
    os.symlink(outside, run / "resume")
    with pytest.raises(checkpoint.OutsidePath, match=rf"^{run}/resume leads outside {run}"):
        _fit("torch", run, resume=False)
    assert_untouched(outside)
    assert os.listdir(outside) == ["secret.bin"] and os.listdir(run) == ["resume"]


def test_atomic_dir_and_recovery_refuse_a_symlink_in_place_of_a_swapped_directory(tmp_path, outside):
    link = tmp_path / "resume"
    os.symlink(outside, link)
    with pytest.raises(checkpoint.OutsidePath, match=rf"^{link} is a symlink; refused"):
        with files.atomic_dir(str(link)) as tmp:
            open(os.path.join(tmp, "state.json"), "w").close()
    assert sorted(os.listdir(tmp_path)) == ["outside", "resume"]
    os.remove(link)
    (tmp_path / "run").mkdir()
    os.symlink(outside, tmp_path / "run.old-tmpabc")  # beside the run directory, as a swap of it leaves one
    with pytest.raises(checkpoint.OutsidePath, match=rf"^{tmp_path}/run\.old-tmpabc is a symlink beside"):
        files.recover_interrupted_writes(str(tmp_path / "run"))
    assert_untouched(outside)
    assert os.listdir(outside) == ["secret.bin"] and os.listdir(tmp_path / "run") == []


# -- ONNX files ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    """A tiny classifier exported by export_onnx.py, fp32 and int8, beside its model directory."""
    out = tmp_path_factory.mktemp("onnx")
    m = bound("modeling", "torch")
    directory = tiny_assets.write_classifier(m, out / "model", tiny_assets.write_vocab(str(out / "v")))
    for quantize in ("none", "int8"):
        export_onnx.main(["--model", directory, "--output", str(out / f"{quantize}.onnx"), "--quantize", quantize])
    return out


def _sentences():
    return [["a gripping , funny film ."], ["the plot never comes together"]]


def _predict(path):
    student = inference.load_student(str(path))
    examples = [inference.glue.InputExample(str(i), s[0], None, None) for i, s in enumerate(_sentences())]
    return inference.predict_examples(student.runner, examples, student.tokenizer, 32)[0]


def _with_external_classifier(src, dst, location, data=None):
    """`src` with its classifier weight kept at `location` (its bytes written there when `data`)."""
    import onnx
    proto = onnx.load(str(src))
    tensor = next(t for t in proto.graph.initializer if t.name.endswith("classifier.weight"))
    raw = onnx.numpy_helper.to_array(tensor).astype("<f4").tobytes()
    if data is not None:
        data.write_bytes(raw)
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(len(raw)))):
        tensor.external_data.add(key=key, value=value)
    onnx.save(proto, str(dst))
    return dst


@pytest.mark.parametrize("location", ["../outside/secret.bin", "absolute", "/etc/passwd", "symlink"])
def test_onnx_external_data_outside_the_graphs_folder_is_refused(location, tiny_onnx, tmp_path, outside):
    served = tmp_path / "served"
    served.mkdir()
    beside = _with_external_classifier(tiny_onnx / "none.onnx", served / "beside.onnx", "weights.bin",
                                       served / "weights.bin")
    np.testing.assert_array_equal(_predict(beside), _predict(tiny_onnx / "none.onnx"))  # the control
    if location == "symlink":
        os.symlink(outside / "secret.bin", served / "linked.bin")
        location = "linked.bin"
    location = str(outside / "secret.bin") if location == "absolute" else location
    attacked = _with_external_classifier(tiny_onnx / "none.onnx", served / "attacked.onnx", location)
    with pytest.raises(checkpoint.OutsidePath, match=r"attacked\.onnx: tensor .*classifier\.weight keeps its data at|"
                                                     rf"linked\.bin leads outside {served}|secret\.bin leads outside"):
        _predict(attacked)
    assert_untouched(outside)


def test_exported_graphs_pass_and_control_flow_or_foreign_operators_are_refused(tiny_onnx, tmp_path):
    import onnx
    from onnx import helper
    for quantize in ("none", "int8"):  # what export_onnx.py writes always passes
        assert inference.check_onnx(str(tiny_onnx / f"{quantize}.onnx")).graph.node
    body = helper.make_graph([helper.make_node("Identity", ["cond"], ["cond_out"])], "body",
                             [helper.make_tensor_value_info(n, t, []) for n, t in
                              (("i", onnx.TensorProto.INT64), ("cond", onnx.TensorProto.BOOL))],
                             [helper.make_tensor_value_info("cond_out", onnx.TensorProto.BOOL, [])])
    attacks = {"Loop": helper.make_node("Loop", ["trip", ""], [], body=body, name="forever"),
               "custom": helper.make_node("Exec", ["input_ids"], ["x"], domain="evil.ops", name="custom")}
    for kind, node in attacks.items():
        proto = onnx.load(str(tiny_onnx / "none.onnx"))
        proto.graph.initializer.append(onnx.numpy_helper.from_array(np.array(2 ** 62, np.int64), "trip"))
        proto.graph.node.append(node)
        path = tmp_path / f"{kind}.onnx"
        onnx.save(proto, str(path))
        started = time.perf_counter()
        with pytest.raises(inference.InferenceError, match=rf"{kind}\.onnx: node {node.name} is "
                                                           rf"{node.domain or 'ai.onnx'}\.{node.op_type}, "
                                                           rf"(control flow|an operator of another domain); refused"):
            inference.load_student(str(path))
        assert time.perf_counter() - started < 10


# -- pickles that grow when walked, and odd contents: bounded, one line naming the file --------------
# The child's heap (RLIMIT_DATA: torch's libraries alone map more address space than a tight RLIMIT_AS
# allows); the attacks asked for tens of gigabytes.
MEMORY_LIMIT = 2 * 2 ** 30


def _load_in_child(directory, seconds=60):
    """(stderr's last line, wall seconds) of loading `directory` in a process with MEMORY_LIMIT."""
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_DATA, ({0}, {0})); sys.path.insert(0, {1!r});"
            "import checkpoint\ntry: checkpoint.load_state_dict({2!r})\n"
            "except checkpoint.CheckpointError as e: sys.exit('refused: ' + str(e))").format(
        MEMORY_LIMIT, ROOT, str(directory))
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=seconds)
    return done.stderr.strip().splitlines()[-1], time.perf_counter() - started


def test_memo_dag_and_repeated_tensor_are_refused_within_bounded_memory(tmp_path):
    dag = directory = write_oneflow_dir(str(tmp_path / "dag"), {})
    nested = [0.0]
    for _ in range(30):  # 2**30 leaves when walked, a few hundred bytes on disk (40 deep: refused as too deep)
        nested = [nested, nested]
    with open(os.path.join(dag, "pickled_data"), "wb") as f:
        f.write(oneflow_pickle(collections.OrderedDict([("bert.pooler.dense.bias", nested)])))
    assert os.path.getsize(os.path.join(dag, "pickled_data")) < 2000
    line, seconds = _load_in_child(dag)
    assert line == (f"refused: {dag}/pickled_data: over 1,000,000 entries counting repeated references (a structure "
                    "that grows when walked?); a state dict has far fewer") and seconds < 30
    directory = write_oneflow_dir(str(tmp_path / "repeated"), {})
    write_tensor(os.path.join(directory, "tensor_0"), np.zeros(2 ** 20, np.float32))  # 4 MB
    one = Tensor("tensor_0")
    with open(os.path.join(directory, "pickled_data"), "wb") as f:
        f.write(oneflow_pickle(collections.OrderedDict([(f"w{i}", one) for i in range(200_000)])))
    line, seconds = _load_in_child(directory)
    assert line.startswith(f"refused: {directory}/pickled_data: its tensors, counted as often as they are "
                           "referred to, take more than ") and seconds < 30


def test_pytorch_bin_with_one_tensor_under_many_names_is_refused(tmp_path):
    directory = _model_dir(tmp_path / "bin")
    one = torch.zeros(2 ** 20)  # 4 MB, stored once, referred to 20,000 times: 80 GB once copied out
    torch.save({f"bert.w{i}": one for i in range(20_000)}, os.path.join(directory, "pytorch_model.bin"))
    line, seconds = _load_in_child(directory)
    assert line.startswith(f"refused: {directory}/pytorch_model.bin: its tensors, counted as often as they are "
                           "referred to, take more than") and seconds < 30


def _refusal(directory):
    with pytest.raises(checkpoint.CheckpointError) as error:
        checkpoint.load_state_dict(str(directory))
    assert "\n" not in str(error.value)
    return str(error.value)


def test_self_reference_odd_keys_and_shapes_are_refused_naming_the_file(tmp_path):
    directory = write_oneflow_dir(str(tmp_path / "m"), {"bert.pooler.dense.bias": np.zeros(32, np.float32)})
    pickled = os.path.join(directory, "pickled_data")
    loop = []
    loop.append(loop)
    for data, message in (
            (collections.OrderedDict([("bert.a", loop)]), "containers nested over 32 deep (or one holding itself); "
                                                               "a state dict is never that deep"),
            (collections.OrderedDict([(7, Tensor("tensor_0"))]), "key 7 is a int; a state dict's keys are tensor names")):
        with open(pickled, "wb") as f:
            f.write(oneflow_pickle(data))
        assert _refusal(directory) == f"{pickled}: {message}"
    with open(pickled, "wb") as f:
        f.write(oneflow_pickle(collections.OrderedDict([("pooler.dense.bias", Tensor("tensor_0"))])))
    meta = os.path.join(directory, "tensor_0", "meta")
    for dims in (["1"] * 33, ["9" * 5000]):
        with open(meta, "w") as f:
            f.write("shape {\n" + "".join(f"  dim: {d}\n" for d in dims) + "}\ndata_type: kFloat\n")
        assert _refusal(directory).startswith(f"{meta}: a shape of {len(dims)} dimensions")


def test_refused_bin_carries_no_advice_to_load_unsafely(tmp_path):
    import zipfile
    directory = _model_dir(tmp_path / "bin")
    path = os.path.join(directory, "pytorch_model.bin")
    torch.save({"bert.pooler.dense.bias": torch.zeros(32)}, str(tmp_path / "ok.bin"))
    with zipfile.ZipFile(tmp_path / "ok.bin") as src, zipfile.ZipFile(path, "w") as out:
        for info in src.infolist():  # data.pkl: an opcode (EXT1) the weights-only unpickler does not admit
            out.writestr(info, b"\x80\x02\x82\x01." if info.filename.endswith("data.pkl") else src.read(info))
    assert _refusal(directory) == f"{path}: refused to unpickle (Unsupported operand 130); nothing in the file was run"


# -- config.json: checked before anything is allocated ---------------------------------------------
@pytest.mark.parametrize("key,value,message", [
    ("vocab_size", 2e9, "vocab_size 2000000000.0 must be an integer from 1 to 4,194,304"),
    ("vocab_size", -5, "vocab_size -5 must be an integer from 1 to 4,194,304"),
    ("num_hidden_layers", 10 ** 7, "num_hidden_layers 10000000 must be an integer from 1 to 256"),
    ("num_attention_heads", 0, "num_attention_heads 0 must be an integer from 1 to 1,024"),
    ("num_attention_heads", 5, "num_attention_heads 5 does not divide hidden_size 32"),
])
@pytest.mark.parametrize("name", BACKENDS)
def test_config_out_of_bounds_is_refused_before_the_model_is_built(name, key, value, message, tmp_path, modeling_for):
    """OneFlow aborted the process (SIGABRT) on some of these: the refusal comes before it sees them."""
    directory = write_oneflow_dir(str(tmp_path / "m"), _tiny_state())
    config = tiny_config_dict(**{key: value})
    files.write_json_atomic(os.path.join(directory, "config.json"), config)
    with pytest.raises(checkpoint.CheckpointError) as error:
        modeling_for(name).TinyBertForSequenceClassification.from_pretrained(directory, verbose=False)
    assert str(error.value) == f"{directory}/config.json: {message}"


def test_config_much_larger_than_its_weights_is_refused(tmp_path, modeling_for):
    """Sizes within bounds, but a model of 2**32 parameters from a directory holding a pooler only."""
    directory = _model_dir(tmp_path / "m", vocab_size=2 ** 20, hidden_size=2 ** 12, num_attention_heads=16)
    checkpoint.save_safetensors({"bert.pooler.dense.bias": np.zeros(2 ** 12, np.float32)}, directory)
    with pytest.raises(checkpoint.CheckpointError, match=rf"^{directory}: the config makes a model of [\d,]+ "
                                                         r"parameters from 4,096 in the weights; refused"):
        modeling_for("torch").TinyBertForSequenceClassification.from_pretrained(directory, verbose=False)
    files.write_json_atomic(os.path.join(directory, "config.json"), tiny_config_dict())
    with pytest.raises(checkpoint.CheckpointError, match=r"bert\.pooler\.dense\.bias has shape \(4096,\), but the "
                                                         r"config needs \(32,\)"):
        modeling_for("torch").TinyBertForSequenceClassification.from_pretrained(directory, verbose=False)


# -- scripts: one line, exit 2, through cli.run -----------------------------------------------------
def test_predict_and_export_refuse_in_one_line(tmp_path, outside, tiny_onnx):
    import onnx
    proto = onnx.load(str(tiny_onnx / "none.onnx"))
    proto.graph.node.append(onnx.helper.make_node("Exec", ["input_ids"], ["x"], domain="evil.ops", name="custom"))
    onnx.save(proto, str(tmp_path / "custom.onnx"))
    linked = write_oneflow_dir(str(tmp_path / "linked"), _tiny_state())
    shutil.rmtree(os.path.join(linked, "tensor_0"))
    os.symlink(outside, os.path.join(linked, "tensor_0"))
    marker = tmp_path / "marker"

    class Payload:
        def __reduce__(self):
            return exec, (f"open({str(marker)!r}, 'w').close()",)
    crafted = _model_dir(tmp_path / "crafted")
    torch.save({"bert.pooler.dense.weight": Payload()}, os.path.join(crafted, "pytorch_model.bin"))
    cases = [("predict.py", tmp_path / "custom.onnx", "custom.onnx: node custom is evil.ops.Exec"),
             ("predict.py", crafted, f"{crafted}/pytorch_model.bin: refused to unpickle: it asks for exec"),
             ("predict.py", linked, f"{linked}/tensor_0 leads outside {linked}"),
             ("export_onnx.py", linked, f"{linked}/tensor_0 leads outside {linked}")]
    for script, model, expected in cases:
        extra = ["--output", str(tmp_path / "x.onnx")] if script == "export_onnx.py" else []
        done = subprocess.run([sys.executable, os.path.join(ROOT, script), "--model", str(model), *extra],
                              input="a film .\n", capture_output=True, text=True, cwd=ROOT, timeout=120,
                              env={**os.environ, "BACKEND": "torch"})
        assert done.returncode == 2, done.stderr[-2000:]
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith("error: ") and expected in last and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert_untouched(outside)
    assert not os.path.exists(tmp_path / "x.onnx") and not marker.exists()


def test_published_outputs_carry_no_absolute_path(tiny_onnx):
    import onnx
    metadata = {p.key: p.value for p in onnx.load(str(tiny_onnx / "none.onnx"), load_external_data=False).metadata_props}
    assert json.loads(metadata["tinybert/source"]) == "model"
    assert not any(str(tiny_onnx) in v for v in metadata.values())


@pytest.mark.parametrize("attack", ["linked tensor", "config"])
def test_do_eval_refuses_before_evaluating(attack, tmp_path, outside):
    import task_distill  # bound to the torch backend (conftest)
    data = tmp_path / "SST-2"
    data.mkdir()
    (data / "dev.tsv").write_text("sentence\tlabel\ntok1 tok2\t1\ntok3\t0\n", encoding="utf-8")
    model = write_oneflow_dir(str(tmp_path / "model"), _tiny_state())
    if attack == "linked tensor":
        shutil.rmtree(os.path.join(model, "tensor_0"))
        os.symlink(outside, os.path.join(model, "tensor_0"))
        expected = rf"^{model}/tensor_0 leads outside {model}"
    else:
        files.write_json_atomic(os.path.join(model, "config.json"), tiny_config_dict(num_attention_heads=0))
        expected = rf"^{model}/config\.json: num_attention_heads 0 must be an integer from 1"
    with pytest.raises(ValueError, match=expected):  # OutsidePath (files.py) or a CheckpointError
        task_distill.main(["--do_eval", "--task_name", "SST-2", "--data_dir", str(data), "--student_model", model,
                           "--output_dir", str(tmp_path / "eval"), "--backend", "torch"])
    assert not os.path.exists(tmp_path / "eval" / "results_eval.json")
    assert_untouched(outside)
