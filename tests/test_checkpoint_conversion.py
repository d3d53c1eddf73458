"""The conversion chain PyTorch -> TensorFlow -> OneFlow on the real MiniLM weights, every weight format
from_pretrained reads (legacy OneFlow snapshots included), and bad input."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import transformers
from safetensors.numpy import load_file

import tensorflow as tf

import backend
import checkpoint
import files
import convert_bert_pytorch_checkpoint_to_original_tf as pt_to_tf
import convert_tf_ckpt_to_of as tf_to_of
from conftest import BACKENDS, ROOT, random_batch, tiny_config_dict


def run_script(script, *args):
    """A conversion script as a user runs it, in its own process."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", GLOG_minloglevel="2")
    result = subprocess.run([sys.executable, script, *map(str, args)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def google_name(hf_name):
    """Google's name for a BertModel tensor, by the rules of the public HF->TF script (an oracle
    written apart from checkpoint.LAYOUT): dots become scopes, Linear weights transposed kernels."""
    name = hf_name.replace("layer.", "layer_").replace(".", "/")
    name = name.replace("LayerNorm/weight", "LayerNorm/gamma").replace("LayerNorm/bias", "LayerNorm/beta")
    if name.endswith("embeddings/weight"):
        return name[:-len("/weight")], False
    if name.endswith("/weight"):
        return name[:-len("weight")] + "kernel", True
    return name, False


def write_legacy_snapshot(prefix, out_dir):
    """What the original OneFlow converter makes of a TF checkpoint: per variable a folder named from
    the TF name ('/' -> '-', kernel -> weight) holding `out`, the raw bytes, no shape."""
    out_dir.mkdir()
    for name, _ in tf.train.list_variables(prefix):
        array = tf.train.load_variable(prefix, name)
        sep = name.rfind("/")
        leaf, scope = name[sep + 1:], name[:sep].replace("/", "-")
        folder = out_dir / f"{scope}-{'weight' if leaf == 'kernel' else leaf}"
        folder.mkdir()
        (folder / "out").write_bytes(array.tobytes())
    (out_dir / "snapshot_done").write_bytes(b"")


def inputs(name, *arrays):
    flow = backend.framework(name)
    return [flow.tensor(a, dtype=flow.int64) for a in arrays]


# -- the real chain on all-MiniLM-L6-v2 ---------------------------------------------------------
@pytest.fixture(scope="module")
def chain(minilm_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("chain")
    tf_dir, of_dir = out / "minilm_tf", out / "minilm_oneflow"
    log_tf = run_script("convert_bert_pytorch_checkpoint_to_original_tf.py", "--model_name", minilm_dir,
                        "--pytorch_model_path", os.path.join(minilm_dir, "model.safetensors"), "--tf_cache_dir", tf_dir)
    log_of = run_script("convert_tf_ckpt_to_of.py", "--tf_checkpoint_path", tf_dir, "--of_dump_path", of_dir)
    return tf_dir, of_dir, log_tf, log_of


@pytest.fixture(scope="module")
def minilm_reference(minilm_dir):
    """Hidden states of transformers' BertModel on the original weights, and the batch."""
    ids, types, mask = random_batch(np.random.default_rng(0), 30000, batch=3, length=12)
    ids[:, 0] = 101
    hf = transformers.BertModel.from_pretrained(minilm_dir, attn_implementation="eager").eval()
    with torch.no_grad():
        out = hf(torch.tensor(ids), token_type_ids=torch.tensor(types), attention_mask=torch.tensor(mask),
                 output_hidden_states=True)
    return (ids, types, mask), [h.numpy() for h in out.hidden_states]


def test_tf_checkpoint_has_google_names_and_layout(chain, minilm_dir):
    tf_dir, of_dir, log_tf, _ = chain
    original = {k: v for k, v in load_file(os.path.join(minilm_dir, "model.safetensors")).items()
                if not k.endswith("position_ids")}
    prefix = str(tf_dir / "bert_model.ckpt")
    assert tf.train.latest_checkpoint(str(tf_dir)) == prefix  # TF itself reads the `checkpoint` index
    names = dict(tf.train.list_variables(prefix))
    assert len(names) == len(original) == 103
    for hf_name, value in original.items():
        tf_name, transposed = google_name("bert." + hf_name)
        stored = tf.train.load_variable(prefix, tf_name)
        assert np.array_equal(stored, value.T if transposed else value), tf_name
    assert names["bert/encoder/layer_0/intermediate/dense/kernel"] == [384, 1536]
    params = sum(v.size for v in original.values())
    assert f"103 tensors, {params:,} parameters, {4 * params:,} bytes" in log_tf
    assert json.load(open(tf_dir / "bert_config.json")) == json.load(open(os.path.join(minilm_dir, "config.json")))
    assert (tf_dir / "vocab.txt").read_bytes() == open(os.path.join(minilm_dir, "vocab.txt"), "rb").read()
    assert f"--tf_checkpoint_path {tf_dir} --of_dump_path {tf_dir.parent / 'minilm_oneflow'}" in log_tf


def test_oneflow_directory_is_a_plain_oneflow_save(chain, minilm_dir, modeling_for):
    _, of_dir, _, log_of = chain
    flow = backend.framework("oneflow")
    m = modeling_for("oneflow")
    model = m.BertModel(m.BertConfig.from_json_file(str(of_dir / "config.json")))
    model.load_state_dict(flow.load(str(of_dir)))  # strict: the keys are the model's own
    original = load_file(os.path.join(minilm_dir, "model.safetensors"))
    ours = model.numpy_state_dict()
    assert all(np.array_equal(ours[k], original[k[len("bert."):]]) for k in ours)
    assert sorted(os.listdir(of_dir.parent)) == ["minilm_oneflow", "minilm_tf"]  # no temporary leftovers
    assert "103 tensors" in log_of and "left out" not in log_of


@pytest.mark.parametrize("name,stage", [("torch", "tf"), ("torch", "oneflow"), ("oneflow", "oneflow")])
def test_converted_model_matches_transformers(name, stage, chain, minilm_reference, modeling_for):
    tf_dir, of_dir, _, _ = chain
    (ids, types, mask), ref = minilm_reference
    model = modeling_for(name).BertModel.from_pretrained(str(tf_dir if stage == "tf" else of_dir),
                                                         verbose=False).eval()
    with backend.framework(name).no_grad():
        hidden = model(*inputs(name, ids, types, mask)).hidden_states
    valid = mask.astype(bool)
    assert len(hidden) == 7
    for ours, theirs in zip(hidden, ref):
        assert np.abs(ours.numpy()[valid] - theirs[valid]).max() < 1e-5


# -- tiny models: every head, legacy snapshots, bad input ---------------------------------------
@pytest.fixture
def tiny(modeling_for, tmp_path):
    """A tiny TinyBERT classifier (3 labels, fit_dense to 48) saved as safetensors, and its TF checkpoint
    with Adam slots and a step counter beside the weights, as a TF training run leaves it."""
    m = modeling_for("torch")
    cfg = m.BertConfig.from_dict(tiny_config_dict(num_labels=3))
    model = m.TinyBertForSequenceClassification(cfg, num_labels=3, fit_size=48).eval()
    model.save_pretrained(str(tmp_path / "hf"))
    (tmp_path / "hf" / "vocab.txt").write_text("".join(f"tok{i}\n" for i in range(120)))
    tf_state, left = checkpoint.to_tf(model.numpy_state_dict(), cfg)
    assert left == []
    slots = {"bert/pooler/dense/kernel/adam_m": tf_state["bert/pooler/dense/kernel"],
             "bert/pooler/dense/kernel/adam_v": tf_state["bert/pooler/dense/kernel"],
             "global_step": np.array(7, dtype=np.int64)}
    os.mkdir(tmp_path / "tf")
    checkpoint.save_tf_checkpoint({**tf_state, **slots}, str(tmp_path / "tf"))
    files.write_json_atomic(str(tmp_path / "tf" / "bert_config.json"), tiny_config_dict())
    return model, tmp_path


def test_google_layout_of_heads(tiny):
    model, _ = tiny
    state = model.numpy_state_dict()
    tf_state, _ = checkpoint.to_tf(state, model.config)
    assert np.array_equal(tf_state["output_weights"], state["classifier.weight"])  # [labels, hidden], as Google
    assert tf_state["output_weights"].shape == (3, 32)
    assert np.array_equal(tf_state["fit_dense/kernel"], state["fit_dense.weight"].T)
    assert np.array_equal(tf_state["bert/encoder/layer_1/output/dense/kernel"],
                          state["bert.encoder.layer.1.output.dense.weight"].T)
    back = checkpoint.from_tf(tf_state, model.config)
    assert back.keys() == state.keys() and all(np.array_equal(back[k], state[k]) for k in state)


@pytest.mark.parametrize("name", BACKENDS)
def test_legacy_snapshot_loads_and_gives_the_same_outputs(name, tiny, modeling_for):
    model, tmp = tiny
    legacy = tmp / "legacy"
    write_legacy_snapshot(str(tmp / "tf" / "bert_model.ckpt"), legacy)
    (legacy / "bert-pooler-dense-weight-m").mkdir()  # legacy OneFlow's own Adam slot and step counter
    (legacy / "bert-pooler-dense-weight-m" / "out").write_bytes(np.zeros(32 * 32, np.float32).tobytes())
    (legacy / "System-Train-TrainStep-TrainJob").mkdir()
    (legacy / "System-Train-TrainStep-TrainJob" / "out").write_bytes(np.array([7], np.int64).tobytes())
    (legacy / "bert_config.json").write_text(json.dumps(tiny_config_dict(num_labels=3)))
    assert (legacy / "bert-encoder-layer_0-attention-self-query-weight" / "out").is_file()
    assert (legacy / "output_weight-output_weights" / "out").is_file()  # the original's top-level name

    state, skipped = checkpoint.read_legacy_snapshot(str(legacy))
    assert skipped == ["System-Train-TrainStep-TrainJob", "bert-pooler-dense-kernel-adam_m",
                       "bert-pooler-dense-kernel-adam_v", "bert-pooler-dense-weight-m", "global_ste-global_step"]
    expected = model.numpy_state_dict()
    assert state.keys() == expected.keys() and all(np.array_equal(state[k], expected[k]) for k in expected)

    loaded = modeling_for(name).TinyBertForSequenceClassification.from_pretrained(
        str(legacy), fit_size=48, verbose=False).eval()
    ids, types, mask = random_batch(np.random.default_rng(1), 120)
    with torch.no_grad():
        want = model(*[torch.tensor(a) for a in (ids, types, mask)], is_student=True)
    with backend.framework(name).no_grad():
        got = loaded(*inputs(name, ids, types, mask), is_student=True)
    assert np.abs(got[0].numpy() - want[0].numpy()).max() < 1e-5
    assert np.abs(got[2][-1].numpy() - want[2][-1].numpy()).max() < 1e-5  # fit_dense of the last layer


def test_tf_to_oneflow_script_reports_slots_and_heads(tiny, modeling_for):
    model, tmp = tiny
    log = run_script("convert_tf_ckpt_to_of.py", "--tf_checkpoint_path", tmp / "tf" / "bert_model.ckpt",
                     "--of_dump_path", tmp / "of")
    assert ("left out 3 optimizer slot(s) and counter(s): bert/pooler/dense/kernel/adam_m, "
            "bert/pooler/dense/kernel/adam_v, global_step") in log
    assert json.load(open(tmp / "of" / "config.json"))["num_labels"] == 3
    loaded = modeling_for("torch").TinyBertForSequenceClassification.from_pretrained(str(tmp / "of"), fit_size=48)
    a, b = model.numpy_state_dict(), loaded.numpy_state_dict()
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_tf_directory_without_index_file(tiny, modeling_for):
    model, tmp = tiny
    os.remove(tmp / "tf" / "checkpoint")
    m = modeling_for("torch")
    loaded = m.TinyBertForSequenceClassification.from_pretrained(str(tmp / "tf"), num_labels=3, fit_size=48,
                                                                 verbose=False)
    assert np.array_equal(loaded.classifier.weight.detach().numpy(), model.classifier.weight.detach().numpy())
    for suffix in (".index", ".data-00000-of-00001"):
        os.link(tmp / "tf" / f"bert_model.ckpt{suffix}", tmp / "tf" / f"model.ckpt-100{suffix}")
    with pytest.raises(checkpoint.CheckpointError, match=r"holds 2 TF checkpoints .* pass one prefix: "
                                                         r".*tf/bert_model\.ckpt, .*tf/model\.ckpt-100"):
        m.TinyBertForSequenceClassification.from_pretrained(str(tmp / "tf"))


def _as_format(fmt, model, directory):
    """`model` saved in `fmt` into `directory`; returns the file to damage."""
    model.save_pretrained(str(directory))
    state = model.numpy_state_dict()
    if fmt == "safetensors":
        return directory / "model.safetensors"
    os.remove(directory / "model.safetensors")
    if fmt == "pytorch":
        torch.save({k: torch.tensor(v) for k, v in state.items()}, directory / "pytorch_model.bin")
        return directory / "pytorch_model.bin"
    if fmt == "oneflow":
        checkpoint.save_oneflow(state, str(directory))
        tensor_dir = sorted(p for p in directory.iterdir() if (p / "meta").is_file())[0]
        return tensor_dir / "out"
    checkpoint.save_tf_checkpoint(checkpoint.to_tf(state, model.config)[0], str(directory))
    return directory / "bert_model.ckpt.data-00000-of-00001"


@pytest.mark.parametrize("fmt", ["safetensors", "pytorch", "oneflow", "tensorflow"])
def test_truncated_weight_file_is_named(fmt, modeling_for, tmp_path):
    m = modeling_for("torch")
    model = m.BertModel(m.BertConfig.from_dict(tiny_config_dict()))
    damaged = _as_format(fmt, model, tmp_path / fmt)
    assert checkpoint.detect_format(str(tmp_path / fmt)) == fmt
    damaged.write_bytes(damaged.read_bytes()[:damaged.stat().st_size // 2])
    with pytest.raises(checkpoint.CheckpointError) as error:
        m.BertModel.from_pretrained(str(tmp_path / fmt))
    shown = str(damaged) if fmt != "tensorflow" else str(tmp_path / fmt / "bert_model.ckpt.data-*")
    assert shown in str(error.value)


def test_garbled_oneflow_pickle_is_named(modeling_for, tmp_path):
    m = modeling_for("torch")
    _as_format("oneflow", m.BertModel(m.BertConfig.from_dict(tiny_config_dict())), tmp_path)
    (tmp_path / "pickled_data").write_bytes(b"not a pickle")
    with pytest.raises(checkpoint.CheckpointError, match=r"pickled_data: not a readable oneflow\.save directory"):
        m.BertModel.from_pretrained(str(tmp_path))


def test_legacy_blob_of_wrong_size_and_missing_variable(tiny, modeling_for):
    _, tmp = tiny
    legacy = tmp / "legacy"
    write_legacy_snapshot(str(tmp / "tf" / "bert_model.ckpt"), legacy)
    (legacy / "bert_config.json").write_text(json.dumps(tiny_config_dict(num_labels=3)))
    m = modeling_for("torch")
    blob = legacy / "bert-encoder-layer_1-intermediate-dense-weight" / "out"
    blob.write_bytes(blob.read_bytes()[:-8])
    with pytest.raises(checkpoint.CheckpointError,
                       match=r"variable bert-encoder-layer_1-intermediate-dense-weight should hold float32 of "
                             r"shape \(32, 64\) from the config \(8192 bytes\), but the file has 8184 bytes"):
        m.TinyBertForSequenceClassification.from_pretrained(str(legacy), fit_size=48)
    blob.write_bytes(np.zeros(32 * 64, np.float32).tobytes())
    os.rename(legacy / "bert-pooler-dense-weight", legacy / "bert-pooler-dense-weights")
    with pytest.raises(ValueError, match=r"missing 1 required tensor\(s\): bert\.pooler\.dense\.weight; "
                                         r"unexpected: bert-pooler-dense-weights"):
        m.TinyBertForSequenceClassification.from_pretrained(str(legacy), fit_size=48)


def test_failed_conversions_leave_no_output(tiny):
    model, tmp = tiny
    (tmp / "tf" / "bert_config.json").write_text(json.dumps(tiny_config_dict(intermediate_size=80)))
    with pytest.raises(checkpoint.CheckpointError, match=r"bert\.encoder\.layer\.0\.intermediate\.dense\.weight "
                                                         r"has shape \(64, 32\), but the config needs \(80, 32\)"):
        tf_to_of.main(["--tf_checkpoint_path", str(tmp / "tf"), "--of_dump_path", str(tmp / "of")])
    weights = tmp / "hf" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(checkpoint.CheckpointError, match=r"hf/model\.safetensors: not a readable safetensors"):
        pt_to_tf.main(["--model_name", str(tmp / "hf"), "--pytorch_model_path", str(weights),
                       "--tf_cache_dir", str(tmp / "out_tf")])
    with pytest.raises(FileNotFoundError, match=r"weight file .*nowhere\.bin does not exist"):
        pt_to_tf.main(["--model_name", str(tmp / "hf"), "--pytorch_model_path", str(tmp / "nowhere.bin"),
                       "--tf_cache_dir", str(tmp / "out_tf")])
    assert sorted(os.listdir(tmp)) == ["hf", "tf"]


def test_tf_writer_failure_leaves_no_directory(tiny, monkeypatch):
    model, tmp = tiny

    def fail(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(checkpoint, "copy_file", fail)  # the last step of the script
    with pytest.raises(OSError, match="disk full"):
        pt_to_tf.main(["--model_name", str(tmp / "hf"), "--tf_cache_dir", str(tmp / "out_tf")])
    assert sorted(os.listdir(tmp)) == ["hf", "tf"]


def test_masked_lm_bin_with_old_names_converts_and_loads(modeling_for, tmp_path, capsys):
    """An old-style pytorch_model.bin (LayerNorm.gamma/beta) of an MLM: its head goes to Google's cls/
    names, the decoder stays tied to the word embeddings, and the TF directory gives the same logits."""
    m = modeling_for("torch")
    cfg = m.BertConfig.from_dict(tiny_config_dict())
    model = m.BertForMaskedLM(cfg).eval()
    model.save_pretrained(str(tmp_path / "hf"))
    state = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"):
             torch.tensor(v) for k, v in model.numpy_state_dict().items()}
    torch.save(state, tmp_path / "old.bin")
    pt_to_tf.main(["--model_name", str(tmp_path / "hf"), "--pytorch_model_path", str(tmp_path / "old.bin"),
                   "--tf_cache_dir", str(tmp_path / "tf")])
    log = capsys.readouterr().out
    assert ("not converted (1, no Google name under this config): cls.predictions.decoder.weight "
            "(tied to bert.embeddings.word_embeddings.weight)") in log
    prefix = str(tmp_path / "tf" / "bert_model.ckpt")
    assert np.array_equal(tf.train.load_variable(prefix, "cls/predictions/output_bias"),
                          model.cls.predictions.bias.detach().numpy())
    assert np.array_equal(tf.train.load_variable(prefix, "cls/predictions/transform/LayerNorm/gamma"),
                          model.cls.predictions.transform.LayerNorm.weight.detach().numpy())
    loaded = m.BertForMaskedLM.from_pretrained(str(tmp_path / "tf"), verbose=False).eval()
    ids, types, mask = random_batch(np.random.default_rng(2), 120)
    with torch.no_grad():
        t = [torch.tensor(a) for a in (ids, types, mask)]
        assert np.abs(loaded(*t).numpy() - model(*t).numpy()).max() < 1e-5
