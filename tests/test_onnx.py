"""export_onnx.py: the real all-MiniLM-L6-v2 encoder exported to ONNX (fp32 and int8), run by
onnxruntime on real SST-2 dev sentences against the PyTorch model; predict.py on .onnx files."""
import json
import os

import numpy as np
import pytest

import export_onnx
import glue
import inference
import modeling  # bound to the torch backend (conftest sets BACKEND)
import predict
from conftest import shared_path

torch = modeling.flow


@pytest.fixture(scope="module")
def minilm_classifier(tmp_path_factory, minilm_dir):
    """MiniLM's real encoder and pooler with a seeded random SST-2 classifier, saved as a model directory."""
    torch.manual_seed(0)
    model = modeling.TinyBertForSequenceClassification.from_pretrained(minilm_dir, num_labels=2, fit_size=None,
                                                                       verbose=False)
    model.config.extra["id2label"] = {"0": "0", "1": "1"}
    # wider than a fresh head's 0.02, so that logits are of order 1 and a 1e-4 agreement means something
    torch.nn.init.normal_(model.classifier.weight, std=0.2)
    directory = str(tmp_path_factory.mktemp("models") / "minilm-sst2")
    model.save_pretrained(directory)
    return directory, model.eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory, minilm_classifier):
    out = tmp_path_factory.mktemp("onnx")
    fp32, int8 = str(out / "student.onnx"), str(out / "student_int8.onnx")
    export_onnx.main(["--model", minilm_classifier[0], "--output", fp32])
    export_onnx.main(["--model", minilm_classifier[0], "--output", int8, "--quantize", "int8"])
    return fp32, int8


@pytest.fixture(scope="module")
def dev_features(minilm_classifier):
    """64 real SST-2 dev sentences (every 14th), of 3 to 47 words."""
    examples = glue.get_processor("sst-2").read_examples(shared_path("glue_data", "SST-2"), "dev")[::14]
    return glue.convert_examples_to_features(examples, glue.tokenizer_from_dir(minilm_classifier[0]), 128, [None])


def test_fp32_graph_gives_the_torch_logits_on_real_sentences(minilm_classifier, exported, dev_features):
    _, model = minilm_classifier
    expected = inference.predict_logits(inference.ModelRunner(model, torch), dev_features, batch_size=16)
    assert expected.std() > 0.1  # real, varied logits: the comparison below is not of near-zeros
    runner = inference.OnnxRunner(exported[0], num_threads=1)
    for batch_size in (16, 5):  # other batch and sequence sizes than the export's example input
        got = inference.predict_logits(runner, dev_features, batch_size=batch_size)
        assert np.abs(got - expected).max() < 1e-4, batch_size
    shapes = [i.shape for i in runner.session.get_inputs()]
    assert shapes == [["batch", "sequence"]] * 3


def test_int8_graph_is_quantized_smaller_and_close(exported, dev_features):
    import onnx
    fp32, int8 = exported
    ops = {node.op_type for node in onnx.load(int8).graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} & ops or "DynamicQuantizeMatMul" in ops
    assert os.path.getsize(int8) < 0.35 * os.path.getsize(fp32)
    a = inference.predict_logits(inference.OnnxRunner(fp32), dev_features)
    b = inference.predict_logits(inference.OnnxRunner(int8), dev_features)
    assert np.abs(a - b).max() > 1e-4  # really another computation
    margin_a, margin_b = a[:, 1] - a[:, 0], b[:, 1] - b[:, 0]
    assert np.corrcoef(margin_a, margin_b)[0, 1] > 0.97  # per-tensor scales give 0.948 here
    assert np.abs(a - b).mean() < 0.1 * np.abs(a).mean()


def test_onnx_file_serves_alone_through_predict(minilm_classifier, exported, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("a gripping , funny film .\n\nthe plot is a mess .\n", encoding="utf-8")
    outputs = {}
    for name, model in (("dir", minilm_classifier[0]), ("onnx", exported[0])):
        out = tmp_path / f"{name}.tsv"
        predict.main(["--model", model, "--input", str(src), "--output", str(out), "--task_name", "SST-2",
                      "--backend", "torch"])
        outputs[name] = [line.split("\t") for line in out.read_text(encoding="utf-8").split("\n")[:-1]]
    assert outputs["onnx"][1] == [""] and len(outputs["onnx"]) == 3
    for d, o in zip(outputs["dir"], outputs["onnx"]):
        assert d[:1] == o[:1]
        np.testing.assert_allclose([float(x) for x in o[1:]], [float(x) for x in d[1:]], atol=1e-5)
    student = inference.load_student(exported[1])
    assert student.engine == "onnxruntime" and student.labels == ["0", "1"] and student.max_positions == 512
    assert student.tokenizer.tokenize("Hello World") == ["hello", "world"]  # uncased, as MiniLM


def test_bad_models_and_files_are_refused(minilm_dir, minilm_classifier, tmp_path):
    with pytest.raises(inference.InferenceError, match="has no classifier"):
        export_onnx.main(["--model", minilm_dir, "--output", str(tmp_path / "x.onnx")])
    with pytest.raises(SystemExit):
        export_onnx.parse_args(["--model", minilm_classifier[0], "--output", str(tmp_path / "x.bin")])
    assert os.listdir(tmp_path) == []  # nothing half-written
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00not a protobuf" * 10)
    with pytest.raises(inference.InferenceError, match="garbage.onnx: onnxruntime cannot load it"):
        inference.OnnxRunner(str(garbage))


def test_graph_without_metadata_is_refused(exported, tmp_path):
    """An .onnx file from elsewhere lacks the vocabulary: predict.py says so instead of guessing one."""
    import onnx
    proto = onnx.load(exported[0])
    del proto.metadata_props[:]
    path = str(tmp_path / "bare.onnx")
    onnx.save(proto, path)
    with pytest.raises(inference.InferenceError, match="bare.onnx: no config.json or vocab.txt in its metadata"):
        inference.load_student(path)


def test_task_distill_evaluates_an_onnx_file_as_its_model_directory(minilm_classifier, exported, tmp_path):
    """--do_eval --student_model X.onnx: the dev metrics of the model directory it came from (fp32), its
    own for int8; parameters counted in the graph, modelSize the file's."""
    import task_distill
    data = tmp_path / "SST-2"
    data.mkdir()
    rows = open(shared_path("glue_data", "SST-2", "dev.tsv"), encoding="utf-8").read().splitlines()
    (data / "dev.tsv").write_text("\n".join(rows[:1] + rows[1::9]) + "\n", encoding="utf-8")  # 97 sentences
    results = {}
    for name, model in (("dir", minilm_classifier[0]), ("fp32", exported[0]), ("int8", exported[1])):
        results[name] = task_distill.main(["--do_eval", "--task_name", "SST-2", "--data_dir", str(data),
                                           "--student_model", str(model), "--output_dir", str(tmp_path / name),
                                           "--max_seq_length", "64", "--backend", "torch"])
        assert results[name]["num_examples"] == 97
    d, fp32, int8 = results["dir"], results["fp32"], results["int8"]
    assert d["backend"] == "torch" and fp32["backend"] == int8["backend"] == "onnxruntime"
    assert fp32["model_dir"] == os.path.relpath(exported[0]) and not os.path.isabs(d["model_dir"])  # nothing of /home
    for k in ("accuracy", "f_1", "MCC"):
        assert fp32[k] == pytest.approx(d[k], abs=1e-6), k
    assert 0.5 < d["accuracy"] < 1 and abs(int8["accuracy"] - d["accuracy"]) <= 0.05
    assert d["parameters"] <= fp32["parameters"] <= d["parameters"] * 1.01  # + ONNX's shape constants
    assert int8["parameters"] == pytest.approx(d["parameters"], rel=0.01)
    assert fp32["modelSize"] == round(os.path.getsize(exported[0]) / 2 ** 20, 2)
    assert int8["modelSize"] < 0.35 * d["modelSize"]
    import onnx
    proto = onnx.load(exported[1])
    for prop in proto.metadata_props:  # the same graph, its labels recorded the other way round
        if prop.key == inference.METADATA_PREFIX + "config.json":
            config = json.loads(prop.value)
            config["id2label"] = {"0": "1", "1": "0"}
            prop.value = json.dumps(config)
    swapped = str(tmp_path / "swapped.onnx")
    onnx.save(proto, swapped)
    with pytest.raises(ValueError, match="swapped.onnx: label order"):
        task_distill.main(["--do_eval", "--task_name", "SST-2", "--data_dir", str(data), "--student_model", swapped,
                           "--output_dir", str(tmp_path / "swapped"), "--backend", "torch"])
    with pytest.raises(ValueError, match="3 labels"):
        task_distill.main(["--do_eval", "--task_name", "MNLI", "--data_dir", str(data), "--student_model",
                           exported[1], "--output_dir", str(tmp_path / "mnli"), "--backend", "torch"])
