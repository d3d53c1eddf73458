"""Scoring a finished model: batched logits with dynamic padding, on OneFlow, PyTorch or ONNX Runtime,
and what is made of them (results_eval.json, the checks of a model's label order).

The one place where examples become scores for every caller that does not train: predict.py,
export_onnx.py, bench/bench_serving.py, and task_distill.py's evaluations, --do_eval and submissions.

- `load_student(path, backend_name=None, num_threads=None)` -> Student: a model directory (any
  weight format, run by modeling.py on either backend) or an .onnx file written by export_onnx.py
  (run by onnxruntime; it carries its own config.json and vocab.txt), with its tokenizer and labels.
- A runner is a callable (input_ids, token_type_ids, attention_mask) -> float32 logits [B, num_labels]
  on int64 numpy arrays: `ModelRunner(model, flow, device)` or `OnnxRunner(path, num_threads)`.
- `predict_logits(runner, features, batch_size)`: rows sorted by length, each batch padded to its
  longest row, logits returned in the features' order. `predict_examples` tokenizes first.
- `export_onnx(model, path)` (PyTorch backend) and `quantize_int8(src, dst)`: the ONNX files, written
  atomically, with the model directory's small text files in the graph's metadata.
- `load_evaluated` / `evaluated_model`, `results_json`, `write_results`: what --do_eval and the end of
  a training run report, in the original's keys; `label_order`: a model fine-tuned with another
  label order is refused (or its logits reordered) rather than scored wrongly.
"""
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Callable, List

import numpy as np
from tqdm import tqdm

import backend
import checkpoint
import files
import glue

INPUT_NAMES = ("input_ids", "token_type_ids", "attention_mask")
OUTPUT_NAME = "logits"
ONNX_OPSET = 17  # the first with LayerNormalization as one op
# Files of the model directory an .onnx file carries as metadata (key: METADATA_PREFIX + name), so
# that it alone is enough to serve: the tokenizer needs vocab.txt and casing, the labels config.json.
METADATA_PREFIX = "tinybert/"
METADATA_FILES = (checkpoint.CONFIG_NAME, checkpoint.VOCAB_NAME, *checkpoint.TOKENIZER_FILES)


class InferenceError(ValueError):
    pass


def is_onnx(path):
    return str(path).endswith(".onnx")


# ----------------------------------------------------------------------------------------------
# Runners
# ----------------------------------------------------------------------------------------------
class ModelRunner:
    """A modeling.py TinyBertForSequenceClassification on its framework (`flow`: torch or oneflow)."""

    def __init__(self, model, flow, device="cpu"):
        self.model, self.flow, self.device = model, flow, device
        self.num_labels = model.num_labels

    def __call__(self, input_ids, token_type_ids, attention_mask):
        flow, was_training = self.flow, self.model.training
        tensors = [flow.tensor(np.asarray(a, np.int64), device=self.device)
                   for a in (input_ids, token_type_ids, attention_mask)]
        self.model.eval()
        try:
            with flow.no_grad():
                logits = self.model(*tensors, output_attentions=False)[0]
        finally:
            self.model.train(was_training)
        return logits.float().cpu().numpy()


# What a served graph may hold. export_onnx.py writes default-domain operators only, with no control
# flow; other versions of onnxruntime's quantizer use the com.microsoft kernels below. Control flow
# (Loop, If, Scan: any operator with a subgraph) could run without end, and operators of other
# domains are code nobody here has vetted: both are refused before onnxruntime sees the graph.
DEFAULT_DOMAINS = ("", "ai.onnx")
CONTROL_FLOW = ("Loop", "If", "Scan", "SequenceMap")
QUANTIZATION_KERNELS = {"com.microsoft": {"DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QGemm", "QAttention",
                                          "DynamicQuantizeLinear", "MatMulInteger16", "QuantizeLinear",
                                          "DequantizeLinear"}}


def check_onnx(path):
    """Read the graph without its external data and raise, naming `path`, at the first operator
    outside what export_onnx.py writes or external-data location outside the file's directory."""
    import onnx
    try:
        proto = onnx.load(path, load_external_data=False)
    except Exception as e:  # protobuf's DecodeError and friends
        raise InferenceError(f"{path}: onnxruntime cannot load it, not an ONNX graph ({type(e).__name__}: {e})") from e
    if proto.functions:
        raise InferenceError(f"{path}: defines functions ({proto.functions[0].name}, ...); refused: an exported "
                             "student has none")
    for node in proto.graph.node:
        subgraph = any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute)
        if node.domain in DEFAULT_DOMAINS and node.op_type not in CONTROL_FLOW and not subgraph:
            continue
        if node.op_type in QUANTIZATION_KERNELS.get(node.domain, ()) and not subgraph:
            continue
        kind = "control flow" if node.op_type in CONTROL_FLOW or subgraph else "an operator of another domain"
        raise InferenceError(f"{path}: node {node.name or node.op_type} is {node.domain or 'ai.onnx'}.{node.op_type}, "
                             f"{kind}; refused: an exported student is a fixed feed-forward graph")
    home = os.path.dirname(os.path.abspath(path))
    tensors = list(proto.graph.initializer) + [a.t for n in proto.graph.node for a in n.attribute if a.HasField("t")]
    tensors += [t for sparse in proto.graph.sparse_initializer for t in (sparse.values, sparse.indices)]
    for tensor in tensors:
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = {e.key: e.value for e in tensor.external_data}.get("location", "")
        if not location or os.path.isabs(location):
            raise checkpoint.OutsidePath(f"{path}: tensor {tensor.name} keeps its data at {location!r}, which is not "
                                         f"a file beside the graph; refused")
        checkpoint.check_inside(os.path.join(home, location), home)
    return proto


class OnnxRunner:
    """An exported classifier graph through onnxruntime on the CPU."""

    def __init__(self, path, num_threads=None):
        import onnxruntime as ort
        if not os.path.isfile(path):
            raise FileNotFoundError(f"ONNX model {path} does not exist")
        check_onnx(path)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if num_threads:
            options.intra_op_num_threads = num_threads
            options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types for unreadable graphs
            raise InferenceError(f"{path}: onnxruntime cannot load it ({type(e).__name__}: {e})") from e
        names = [i.name for i in self.session.get_inputs()]
        if sorted(names) != sorted(INPUT_NAMES):
            raise InferenceError(f"{path}: inputs {names}; expected {list(INPUT_NAMES)} (a graph from export_onnx.py)")
        self.num_labels = self.session.get_outputs()[0].shape[-1]
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)

    def __call__(self, input_ids, token_type_ids, attention_mask):
        feeds = {n: np.asarray(a, np.int64) for n, a in zip(INPUT_NAMES, (input_ids, token_type_ids, attention_mask))}
        return self.session.run([OUTPUT_NAME], feeds)[0]


# ----------------------------------------------------------------------------------------------
# Batched prediction
# ----------------------------------------------------------------------------------------------
def predict_logits(runner, features, batch_size=64, progress=False, desc="predict"):
    """float32 logits [N, num_labels] of every row of `features`, in their order.

    Rows are sorted by length (longest first, so a memory problem shows at once) and each batch is
    cut to its longest row: short sentences never pay for max_seq_length."""
    out = np.zeros((len(features), runner.num_labels), np.float32)
    lengths = features.lengths
    order = glue.batch_order(lengths, batch_size, group_by_length=True)
    with tqdm(total=len(features), desc=desc, unit="ex", disable=None if progress else True, leave=False) as bar:
        for index in order:
            width = int(lengths[index].max())
            out[index] = runner(features.input_ids[index, :width], features.segment_ids[index, :width],
                                features.input_mask[index, :width])
            bar.update(len(index))
    return out


def predict_examples(runner, examples, tokenizer, max_seq_length, batch_size=64, progress=False):
    """(logits, number of examples truncated to max_seq_length) of a list of InputExamples."""
    features = glue.convert_examples_to_features(examples, tokenizer, max_seq_length, [None])
    return predict_logits(runner, features, batch_size, progress), features.num_truncated


# ----------------------------------------------------------------------------------------------
# A student ready to serve: runner + tokenizer + labels
# ----------------------------------------------------------------------------------------------
@dataclass
class Student:
    runner: Callable
    tokenizer: object
    labels: List            # names in logit order; [None] for a regressor (STS-B)
    max_positions: int      # max_position_embeddings: the longest input the model can take
    engine: str             # torch, oneflow or onnxruntime

    @property
    def is_regression(self):
        return self.labels == [None]


def labels_of(config, num_labels):
    """Label names in logit order from a config dict (id2label), LABEL_i when it has none."""
    if num_labels == 1:
        return [None]
    id2label = config.get("id2label") or {}
    names = [str(id2label[k]) for k in sorted(id2label, key=int)]
    return names if len(names) == num_labels else [f"LABEL_{i}" for i in range(num_labels)]


def modeling_for(backend_name):
    """modeling.py bound to `backend_name`: the process's `modeling` when it is (or will be) bound to
    that framework, else a copy of its own, so that the other framework is never imported for nothing."""
    loaded = sys.modules.get("modeling")
    if loaded is not None and loaded.flow is backend.framework(backend_name):
        return loaded
    if loaded is None and backend_name == backend.name():
        import modeling
        return modeling
    return backend.import_for("modeling", backend_name)


def load_classifier(model_dir, backend_name):
    """A fine-tuned TinyBertForSequenceClassification from a model directory, in eval mode."""
    modeling = modeling_for(backend_name)
    model = modeling.TinyBertForSequenceClassification.from_pretrained(model_dir, fit_size=None, verbose=False)
    if any(k.startswith("classifier.") for k in model.missing_keys):
        raise InferenceError(f"{model_dir} has no classifier: it was never fine-tuned on a task "
                             "(task_distill.py --pred_distill or --finetune writes one)")
    return model.eval()


def load_student(path, backend_name=None, device="cpu", num_threads=None):
    """A model directory (on `backend_name`, default the process's) or an .onnx file, ready to predict."""
    if is_onnx(path):
        runner = OnnxRunner(path, num_threads)
        with tempfile.TemporaryDirectory() as tmp:
            files = unpack_metadata(runner.metadata, tmp, path)
            tokenizer = checkpoint.load_tokenizer(tmp)
            config = checkpoint.read_json(files[checkpoint.CONFIG_NAME])
        engine = "onnxruntime"
    else:
        engine = backend_name or backend.name()
        flow = backend.framework(engine)
        if num_threads and hasattr(flow, "set_num_threads"):  # OneFlow 0.9 has no such call
            flow.set_num_threads(num_threads)
        model = load_classifier(path, engine).to(device)
        runner, tokenizer = ModelRunner(model, flow, device), checkpoint.load_tokenizer(path)
        config = model.config.to_dict()
    return Student(runner, tokenizer, labels_of(config, runner.num_labels),
                   int(config.get("max_position_embeddings", 512)), engine)


# ----------------------------------------------------------------------------------------------
# ONNX files
# ----------------------------------------------------------------------------------------------
def metadata_of_dir(model_dir):
    """{key: text} of the model directory's files that serving needs (see METADATA_FILES)."""
    out = {}
    for name in METADATA_FILES:
        path = os.path.join(model_dir, name)
        if name == checkpoint.CONFIG_NAME:
            path = checkpoint.find_config(model_dir)
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                out[METADATA_PREFIX + name] = f.read()
    if not {METADATA_PREFIX + checkpoint.VOCAB_NAME, METADATA_PREFIX + checkpoint.TOKENIZER_JSON} & set(out):
        raise InferenceError(f"{model_dir}: no {checkpoint.VOCAB_NAME} or {checkpoint.TOKENIZER_JSON}; an exported "
                             "model must carry its vocabulary")
    return out


def unpack_metadata(metadata, directory, source):
    """Write the files an .onnx file carries into `directory`; {name: path}."""
    files = {}
    for key, text in metadata.items():
        if key.startswith(METADATA_PREFIX) and key[len(METADATA_PREFIX):] in METADATA_FILES:
            files[key[len(METADATA_PREFIX):]] = path = os.path.join(directory, key[len(METADATA_PREFIX):])
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
    missing = [n for n in (checkpoint.CONFIG_NAME, checkpoint.VOCAB_NAME) if n not in files]
    if checkpoint.TOKENIZER_JSON in files and checkpoint.VOCAB_NAME in missing:
        missing.remove(checkpoint.VOCAB_NAME)
    if missing:
        raise InferenceError(f"{source}: no {' or '.join(missing)} in its metadata; export it with export_onnx.py")
    return files


def _save_onnx_atomic(proto, path, metadata):
    import onnx
    del proto.metadata_props[:]
    for key, value in sorted(metadata.items()):
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        onnx.save(proto, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def export_onnx(model, path, metadata, opset=ONNX_OPSET):
    """Write `model` (a PyTorch TinyBertForSequenceClassification) as input_ids, token_type_ids,
    attention_mask [batch, sequence] -> logits [batch, num_labels]; both axes dynamic."""
    torch = backend.framework("torch")
    if not isinstance(model, torch.nn.Module):
        raise InferenceError(f"export needs a PyTorch model (backend torch); got {type(model).__module__}")

    class LogitsOnly(torch.nn.Module):  # the serving path: no attention scores, no fit_dense
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, token_type_ids, attention_mask):
            return self.inner(input_ids, token_type_ids, attention_mask, output_attentions=False)[0]

    # a padded row in the example input, so the mask path is traced as it runs in serving
    mask = torch.tensor([[1] * 8, [1] * 5 + [0] * 3])
    dummy = (torch.randint(0, model.config.vocab_size, (2, 8)) * mask, torch.zeros(2, 8, dtype=torch.int64), mask)
    axes = {name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES}
    axes[OUTPUT_NAME] = {0: "batch"}
    import onnx
    with tempfile.TemporaryDirectory(dir=os.path.dirname(os.path.abspath(path))) as tmp:
        raw = os.path.join(tmp, "model.onnx")
        # dynamo=False: the TorchScript exporter; the dynamo one needs onnxscript, whose onnx-ir
        # wants ml_dtypes>=0.5, which TensorFlow 2.15 (ml-dtypes~=0.2) in this venv excludes.
        torch.onnx.export(LogitsOnly(model).eval(), dummy, raw, input_names=list(INPUT_NAMES),
                          output_names=[OUTPUT_NAME], dynamic_axes=axes, opset_version=opset, dynamo=False)
        _save_onnx_atomic(onnx.load(raw), path, metadata)
    return path


def quantize_int8(src, dst, per_channel=True):
    """Dynamic int8 quantization (weights int8 ahead of time, activations per batch) of an exported
    graph through onnxruntime; the metadata is carried over.

    per_channel: one scale per output column of each weight. On MiniLM's real weights it keeps the
    logits closer to fp32's than one scale per matrix (correlation of the margins 0.983 against
    0.948, tests/test_onnx.py's sentences) at the same size."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    metadata = {p.key: p.value for p in onnx.load(src, load_external_data=False).metadata_props}
    with tempfile.TemporaryDirectory(dir=os.path.dirname(os.path.abspath(dst))) as tmp:
        out = os.path.join(tmp, "int8.onnx")
        quantize_dynamic(src, out, weight_type=QuantType.QInt8, per_channel=per_channel)
        _save_onnx_atomic(onnx.load(out), dst, metadata)
    return dst


def onnx_summary(path):
    """'N MB, M nodes (op counts)' of an .onnx file, for logs."""
    import onnx
    proto = onnx.load(path, load_external_data=False)
    ops = {}
    for node in proto.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    top = ", ".join(f"{k} {v}" for k, v in sorted(ops.items(), key=lambda kv: -kv[1])[:6])
    return f"{os.path.getsize(path) / 2 ** 20:.1f} MB, {len(proto.graph.node)} nodes ({top})"


def onnx_parameters(path):
    """Number of weights the graph holds (its initializers' elements; an int8 graph's quantization
    scales and zero points count too)."""
    import onnx
    proto = onnx.load(path, load_external_data=False)
    return int(sum(np.prod(t.dims, dtype=np.int64) for t in proto.graph.initializer))


def json_metadata(**values):
    """Extra metadata entries (values as JSON), e.g. what the export was made from."""
    return {METADATA_PREFIX + k: json.dumps(v) for k, v in values.items()}


# ----------------------------------------------------------------------------------------------
# Scoring a finished model: --do_eval, the results of a training run, submissions
# ----------------------------------------------------------------------------------------------
RESULTS_NAME = "results_eval.json"


def label_permutation(model, processor, role, allow_remap):
    """Index array mapping the task's label order onto `model`'s logits, or None if they agree."""
    return label_order(model.config.extra.get("id2label"), model.source_dir, processor, role, allow_remap)


def label_order(id2label, source, processor, role, allow_remap):
    """label_permutation for a model's id2label dict (model directory or .onnx file `source`)."""
    if processor.is_regression or not id2label:
        return None
    names = [str(id2label[k]) for k in sorted(id2label, key=int)]
    if all(n == f"LABEL_{i}" for i, n in enumerate(names)) or names == list(processor.labels):
        return None
    if sorted(names) != sorted(processor.labels):
        raise ValueError(f"{role} {source}: its labels {names} are not the {processor.task} labels "
                         f"{processor.labels}: was it fine-tuned on another task?")
    if not allow_remap:
        raise ValueError(f"{role} {source}: label order {names} differs from the task's {processor.labels}; "
                         "pass --remap_teacher_labels to reorder its logits")
    return np.array([names.index(label) for label in processor.labels])


def timed_logits(runner, features, batch_size):
    start = time.perf_counter()
    out = predict_logits(runner, features, batch_size)
    return out, len(features) / max(time.perf_counter() - start, 1e-9)


@dataclass
class Evaluated:
    """What --do_eval/--do_predict run: a model directory on this backend, or an .onnx file."""
    runner: object
    tokenizer: object
    parameters: int
    size_mb: float          # fp32 weights (the original's modelSize), or the .onnx file's size
    engine: str


def load_evaluated(path, processor, device, backend_name):
    """A model directory (on `backend_name`) or an .onnx file, checked against the task's labels."""
    if is_onnx(path):
        student = load_student(path)
        if student.runner.num_labels != processor.num_labels:
            raise ValueError(f"{path}: {student.runner.num_labels} outputs; task {processor.task} has "
                             f"{processor.num_labels} labels")
        if not student.is_regression:
            label_order({str(i): n for i, n in enumerate(student.labels)}, path, processor, "model", allow_remap=False)
        return Evaluated(student.runner, student.tokenizer, onnx_parameters(path),
                         round(os.path.getsize(path) / 2 ** 20, 2), student.engine)
    import teachers  # only where a model directory is scored: the .onnx path needs no framework
    model = teachers.load_classifier(path, processor.num_labels, modeling_for(backend_name), fit_size=None).to(device)
    label_permutation(model, processor, "model", allow_remap=False)
    return evaluated_model(model, checkpoint.load_tokenizer(path), backend.framework(backend_name), device)


def evaluated_model(model, tokenizer, flow, device):
    params = modeling_for(flow.__name__).count_parameters(model)
    return Evaluated(ModelRunner(model, flow, device), tokenizer, params, round(params * 4 / 2 ** 20, 2),
                     flow.__name__)


def results_json(task, evaluated, model_path, features, batch_size):
    """The original's keys (accuracy, MCC, precision, recall, f_1, modelSize MB, reasoningTime
    examples/s) plus the task's own metrics."""
    processor = glue.get_processor(task)
    logits, speed = timed_logits(evaluated.runner, features, batch_size)
    names = ["pearson", "spearman", "corr"] if processor.is_regression else ["acc", "mcc", "precision", "recall", "f1"]
    preds = logits if processor.is_regression else logits.argmax(-1)
    m = glue.compute_metrics(task, preds, features.label_ids, names=names)
    m.update(glue.compute_metrics(task, preds, features.label_ids))
    renamed = {"acc": "accuracy", "mcc": "MCC", "f1": "f_1"}
    out = {renamed.get(k, k): round(v, 6) for k, v in m.items()}
    out.update(task=processor.task, best_metric=glue.best_metric_name(task),
               num_examples=len(features), parameters=evaluated.parameters, modelSize=evaluated.size_mb,
               reasoningTime=round(speed, 1), backend=evaluated.engine,
               model_dir=os.path.relpath(model_path))  # published results carry no absolute path of this machine
    return out


def write_results(output_dir, results):
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, RESULTS_NAME)
    files.write_text_atomic(path, json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print(f"wrote {path}")
    return results
