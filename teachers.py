"""Teachers that are not this project's BERT: any encoder transformers' AutoModelForSequenceClassification
loads (RoBERTa, XLM-R, ELECTRA, DeBERTa-v2/v3, DistilBERT, ALBERT, ...), seen through the interface the
distillation losses use: model(input_ids, token_type_ids, attention_mask) -> (logits, attentions, hidden
states), as modeling.TinyBertForSequenceClassification gives it.

- A directory whose config.json says model_type "bert" (or has none: Google's bert_config.json) keeps
  going through modeling.py, on both backends, exactly as before; any other runs through transformers,
  on the torch backend only.
- Hidden states: transformers returns the embeddings' output and every layer's, hidden-sized, as
  modeling.py does; rep_loss takes them as they are (the student's fit_dense projects onto the size).
- Attention: transformers returns probabilities, not the pre-softmax scores TinyBERT's att_loss
  compares. For the encoders whose scores are plain q.k / sqrt(head size) (SCORE_PROJECTIONS) the
  query and key projections are captured by forward hooks and the scores rebuilt, with modeling.py's
  additive mask, so att_loss sees the same quantity as from a BERT teacher. The others (DeBERTa's
  disentangled attention adds position terms) give probabilities, and distillation.att_kl_loss is used.
- Token types go in only where the teacher has a token-type embedding (RoBERTa has one row, DeBERTa-v3
  none, DistilBERT no input for them).
"""
import contextlib
import inspect
import math
import os
from types import SimpleNamespace

import numpy as np

import backend
import checkpoint
import files
import vocabulary

flow = backend.framework()  # torch for transformers models; on OneFlow from_pretrained refuses

# model_type -> the names of the query and key projections inside each attention layer, for the
# encoders whose pre-softmax scores are q.k / sqrt(head size) plus the mask (no position term).
SCORE_PROJECTIONS = {
    "bert": ("query", "key"),
    "roberta": ("query", "key"),
    "xlm-roberta": ("query", "key"),
    "camembert": ("query", "key"),
    "electra": ("query", "key"),
    "albert": ("query", "key"),
    "distilbert": ("q_lin", "k_lin"),
}
TEACHER_PATHS = ("modeling", "transformers")  # how load_teacher reads a teacher: modeling.py's BERT, or the Auto classes
MASK_VALUE = -10000.0  # modeling.MASK_VALUE: the same additive mask, so att_loss zeroes the same entries


def model_type(model_dir):
    """config.json's model_type; "bert" for a directory with none (Google's bert_config.json, old configs)."""
    config = checkpoint.read_json(checkpoint.find_config(model_dir))
    return str(config.get("model_type") or "bert")


def is_bert(model_dir):
    return model_type(model_dir) == "bert"


@contextlib.contextmanager
def rng_untouched():
    """Loading a model builds its modules at random before the weights arrive, and each way of reading
    a teacher draws a different count of numbers: under this, the student's new tensors (fit_dense, a
    classifier, a random start) follow the seed alone, whichever way and whichever teacher was read."""
    state = flow.get_rng_state()
    try:
        yield
    finally:
        flow.set_rng_state(state)


def load_teacher(model_dir, num_labels, device, modeling, allow_untrained=False, through=None, task="this task"):
    """The teacher of `model_dir` in eval mode on `device`: modeling.py's BERT for a BERT directory,
    else an AutoClassifier. through="transformers" takes the Auto path for a BERT directory too (what
    the tests use to check one path against the other)."""
    if through is None:
        through = "modeling" if is_bert(model_dir) else "transformers"
    with rng_untouched():
        if through == "modeling":
            teacher = modeling.TinyBertForSequenceClassification.from_pretrained(model_dir, num_labels=num_labels,
                                                                                 fit_size=None)
            untrained = any(k.startswith("classifier.") for k in teacher.missing_keys)
        else:
            teacher = AutoClassifier.from_pretrained(model_dir, num_labels)
            untrained = bool(teacher.missing_keys)
    if untrained and not allow_untrained:
        raise ValueError(f"teacher {model_dir} has no classifier: it was never fine-tuned on {task} "
                         "(run run_train_teacher.sh first), or pass --allow_untrained_teacher")
    return teacher.eval().to(device)


def load_classifier(model_dir, num_labels, modeling, trainable_only_alone=False, **kwargs):
    """A model directory to train or score: modeling.py's TinyBERT classifier for a BERT directory,
    else an AutoClassifier (teacher fine-tuning of a RoBERTa, DeBERTa, ... directory). A distillation
    student (trainable_only_alone) must be this project's BERT: its fit_dense and attention scores are
    what the losses use."""
    if is_bert(model_dir):
        return modeling.TinyBertForSequenceClassification.from_pretrained(model_dir, num_labels=num_labels, **kwargs)
    if trainable_only_alone:
        raise ValueError(f"student {model_dir} is a {model_type(model_dir)} model: a distillation student is this "
                         "project's BERT (teachers.write_student makes one on a teacher's vocabulary); "
                         "other architectures are trained with --finetune only")
    return AutoClassifier.from_pretrained(model_dir, num_labels, verbose=kwargs.get("verbose", True))


class AutoClassifier(flow.nn.Module):
    """A transformers sequence classifier behind modeling.TinyBertForSequenceClassification's call:
    (logits, attentions, hidden states); attentions are pre-softmax scores when `scores` is True, else
    probabilities. A torch module, so that teacher fine-tuning trains and saves it like a BERT."""

    auto_class = "AutoModelForSequenceClassification"

    def __init__(self, model, source_dir, missing_keys=()):
        super().__init__()
        self.hf = model
        self.source_dir, self.missing_keys = source_dir, list(missing_keys)
        hf = model.config
        self.num_labels = hf.num_labels
        self.model_type = hf.model_type
        # RoBERTa's family numbers positions from padding_idx + 1: its table has that many rows fewer to use
        offset = (hf.pad_token_id or 0) + 1 if self.model_type in POSITION_OFFSET_PAST_PAD else 0
        self.config = SimpleNamespace(
            hidden_size=hf.hidden_size, num_hidden_layers=hf.num_hidden_layers,
            num_attention_heads=hf.num_attention_heads, vocab_size=hf.vocab_size,
            max_position_embeddings=getattr(hf, "max_position_embeddings", 512) - offset,
            type_vocab_size=getattr(hf, "type_vocab_size", 0) or 1, pad_token_id=hf.pad_token_id or 0,
            extra={"id2label": {str(k): v for k, v in hf.id2label.items()}})
        self.takes_token_types = ("token_type_ids" in inspect.signature(model.forward).parameters
                                  and (getattr(hf, "type_vocab_size", 0) or 0) > 1)
        self.scores = (self.model_type in SCORE_PROJECTIONS
                       and getattr(hf, "position_embedding_type", "absolute") in (None, "absolute"))
        self._projections = self._find_projections() if self.scores else []
        self._captured = None

    @classmethod
    def from_pretrained(cls, model_dir, num_labels=None, verbose=True, **_):
        if flow.__name__ != "torch":
            raise ValueError(f"{model_dir} is a {model_type(model_dir)} model: models other than BERT run through "
                             "transformers, on the torch backend only (--backend torch, or BACKEND=torch)")
        import transformers
        path = checkpoint.for_transformers(model_dir)
        kwargs = {"num_labels": num_labels} if num_labels else {}
        # eager attention: the SDPA kernels return no attention probabilities
        model, info = getattr(transformers, cls.auto_class).from_pretrained(
            path, attn_implementation="eager", output_loading_info=True, **kwargs)
        missing = list(info.get("missing_keys", ()))
        if verbose and missing:
            print(f"{model_dir}: initialised {len(missing)} tensor(s) it lacks: {', '.join(sorted(missing))}")
        return cls(model.float(), model_dir, missing)

    def save_pretrained(self, directory, vocab_file=None, exclude=()):
        """transformers' own layout (config.json with id2label, model.safetensors) and the tokenizer's
        files, so the directory loads again as a teacher, in predict.py and in transformers."""
        labels = {int(k): v for k, v in self.config.extra.get("id2label", {}).items()}
        if labels:
            self.hf.config.id2label, self.hf.config.label2id = labels, {v: k for k, v in labels.items()}
        with files.atomic_dir(directory) as tmp:
            self.hf.save_pretrained(tmp)
            for path in _tokenizer_paths(self.source_dir):
                checkpoint.copy_file(path, os.path.join(tmp, os.path.basename(path)))

    def load_numpy_state_dict(self, state, source="state dict"):
        """Resume (training.load_checkpoint): the weights save_pretrained wrote, under transformers' names."""
        import torch
        own = self.hf.state_dict()
        missing = [k for k, _ in self.hf.named_parameters() if k not in state]
        if missing:
            raise ValueError(f"{source}: missing {len(missing)} tensor(s), e.g. {', '.join(missing[:3])}")
        self.hf.load_state_dict({k: torch.from_numpy(checkpoint.as_float32(state[k]).copy()) for k in own if k in state},
                                strict=False)
        return [], [k for k in state if k not in own]

    def _find_projections(self):
        """[(query module, key module)] in layer order; ALBERT's one shared layer runs once per layer
        and its hooks fire each time, so captures are paired in call order, not by module."""
        q_name, k_name = SCORE_PROJECTIONS[self.model_type]
        named = dict(self.hf.named_modules())
        queries = [n for n in named if n.rsplit(".", 1)[-1] == q_name]
        pairs = [(named[q], named[q[:-len(q_name)] + k_name]) for q in queries]
        if not pairs:
            raise ValueError(f"teacher {self.source_dir}: no {q_name}/{k_name} modules in its "
                             f"{self.model_type} attention layers")
        return pairs

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, output_attentions=True, **_):
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if self.takes_token_types and token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        capture = output_attentions and self.scores
        hooks, self._captured = [], []
        if capture:
            for q, k in self._projections:
                hooks.append(q.register_forward_hook(lambda m, i, o: self._captured.append(("q", o))))
                hooks.append(k.register_forward_hook(lambda m, i, o: self._captured.append(("k", o))))
        try:
            out = self.hf(**inputs, output_hidden_states=output_attentions,
                             output_attentions=output_attentions and not self.scores, return_dict=True)
        finally:
            for h in hooks:
                h.remove()
        logits = getattr(out, "logits", None)  # an AutoEncoder has none
        if not output_attentions:
            return logits, [], []
        atts = self._scores(attention_mask) if capture else list(out.attentions)
        return logits, atts, list(out.hidden_states)

    def _scores(self, attention_mask):
        """Pre-softmax scores [B, heads, L, L] per layer from the captured projections."""
        heads = self.config.num_attention_heads
        qs = [t for kind, t in self._captured if kind == "q"]
        ks = [t for kind, t in self._captured if kind == "k"]
        if len(qs) != self.config.num_hidden_layers or len(ks) != len(qs):
            raise ValueError(f"teacher {self.source_dir}: captured {len(qs)} query and {len(ks)} key projections "
                             f"for {self.config.num_hidden_layers} layers")
        b, length, width = qs[0].shape
        size = width // heads
        split = lambda x: x.reshape(b, length, heads, size).permute(0, 2, 1, 3)
        additive = (1.0 - attention_mask[:, None, None, :].to(qs[0].dtype)) * MASK_VALUE
        return [split(q) @ split(k).transpose(-1, -2) / math.sqrt(size) + additive for q, k in zip(qs, ks)]


class AutoEncoder(AutoClassifier):
    """A transformers encoder without a task head (AutoModel: a masked-LM or any checkpoint of the
    encoder) behind the same call, logits None: general distillation's teacher, which needs only
    attentions and hidden states."""

    auto_class = "AutoModel"


def encoder_internals(teacher, input_ids, token_type_ids, attention_mask):
    """(attentions, hidden states) of either kind of load_encoder's teachers."""
    out = teacher(input_ids, token_type_ids, attention_mask)
    if isinstance(teacher, AutoClassifier):
        return out[1], out[2]
    return out.attentions, out.hidden_states


def _tokenizer_paths(model_dir):
    """The tokenizer's files of a model directory: vocab.txt (WordPiece) or transformers' fast-tokenizer
    files, and the sentencepiece / BPE files a slow tokenizer would need."""
    names = (checkpoint.VOCAB_NAME, *checkpoint.TOKENIZER_FILES, "vocab.json", "merges.txt", "spm.model",
             "sentencepiece.bpe.model")
    return [p for p in (os.path.join(model_dir, n) for n in names) if os.path.isfile(p)]


# model_type -> the name its encoder's weights carry in a sequence classifier, for the encoders whose
# layers are BERT's own (same modules, same names under the prefix): what --init_from_teacher copies.
BERT_SHAPED = {"bert": "bert", "roberta": "roberta", "xlm-roberta": "roberta", "camembert": "roberta",
               "electra": "electra"}
# RoBERTa's family numbers positions from padding_idx + 1, so its first real token reads that row.
POSITION_OFFSET_PAST_PAD = ("roberta", "xlm-roberta", "camembert")


def teacher_shape(teacher_dir):
    """The shape (and the config values that go with the weights) a student initialised from the
    teacher's layers takes: its width, heads, feed-forward size, activation, norm epsilon, token types."""
    kind = model_type(teacher_dir)
    if kind not in BERT_SHAPED:
        raise ValueError(f"--init_from_teacher copies the layers of BERT-shaped encoders ({', '.join(BERT_SHAPED)}); "
                         f"teacher {teacher_dir} is {kind}: start the student at random instead")
    config = checkpoint.read_json(checkpoint.find_config(teacher_dir))
    if kind == "electra" and int(config.get("embedding_size", config["hidden_size"])) != int(config["hidden_size"]):
        raise ValueError(f"teacher {teacher_dir}: ELECTRA with embedding_size {config['embedding_size']} projected to "
                         f"hidden_size {config['hidden_size']}; --init_from_teacher needs them equal")
    return dict(hidden_size=int(config["hidden_size"]), num_attention_heads=int(config["num_attention_heads"]),
                intermediate_size=int(config["intermediate_size"]), hidden_act=str(config.get("hidden_act", "gelu")),
                layer_norm_eps=float(config.get("layer_norm_eps", 1e-12)),
                type_vocab_size=max(1, int(config.get("type_vocab_size") or 1)))


def evenly(keep, total):
    """`keep` of `total` indices, evenly spaced from the first to the last."""
    if keep >= total:
        return np.arange(total)
    return np.round(np.linspace(0, total - 1, keep)).astype(np.int64)


def width_selection(teacher, student):
    """For a student narrower than the teacher it starts from: the teacher's indices it keeps, per kind
    of axis. Uniform weight selection (Xu et al., 2024, "Initializing Models with Larger Ones"): the same
    hidden units in every tensor, so the residual stream of every layer stays aligned with the
    embeddings'; evenly spaced heads, each cut to the student's head size; evenly spaced feed-forward
    units. `teacher`, `student`: {hidden_size, num_attention_heads, intermediate_size}."""
    sizes = {k: (int(teacher[k]), int(student[k])) for k in ("hidden_size", "num_attention_heads", "intermediate_size")}
    head = {who: sizes["hidden_size"][i] // sizes["num_attention_heads"][i] for i, who in enumerate(("teacher", "student"))}
    wider = [f"{k} {s} (the teacher's is {t})" for k, (t, s) in sizes.items() if s > t]
    if head["student"] > head["teacher"]:
        wider.append(f"attention head size {head['student']} (the teacher's is {head['teacher']})")
    if wider:
        raise ValueError("--init_from_teacher keeps a part of the teacher's width and cannot widen it: "
                         + ", ".join(wider))
    heads = evenly(sizes["num_attention_heads"][1], sizes["num_attention_heads"][0])
    within = evenly(head["student"], head["teacher"])
    return {"hidden": evenly(*sizes["hidden_size"][::-1]),
            "heads": (heads[:, None] * head["teacher"] + within[None, :]).reshape(-1),
            "inner": evenly(*sizes["intermediate_size"][::-1])}


# (part of a BERT tensor's name, what its rows index, what its columns index); the first match counts.
# A 1-D tensor (bias, LayerNorm) indexes what the rows of its weight do.
WIDTH_AXES = ((".attention.self.", "heads", "hidden"), (".attention.output.dense.", "hidden", "heads"),
              (".intermediate.dense.", "inner", "hidden"), (".output.dense.", "hidden", "inner"),
              ("pooler.dense.", "hidden", "hidden"), ("LayerNorm.", "hidden", None), ("embeddings.", None, "hidden"))


def select_width(name, array, keep):
    """`array` (the teacher's tensor `name`, BERT names) cut to the indices `keep` (width_selection)."""
    for part, rows, cols in WIDTH_AXES:
        if part in name:
            if rows:
                array = array[keep[rows]]
            if cols and array.ndim == 2:
                array = array[:, keep[cols]]
            return array
    return array


def teacher_layers(teacher_dir, student_state, layer_map, teacher_ids=None, shape=None):
    """`student_state` (a random student's numpy state, BERT names) with the teacher's embeddings, its
    layer layer_map[i] as student layer i+1 and its pooler where it has one; word embeddings only of
    the kept tokens with `teacher_ids` (a trimmed vocabulary); with `shape` narrower than the teacher's
    ({hidden_size, num_attention_heads, intermediate_size}), each tensor cut by width_selection.
    Returns (state, names copied)."""
    kind = model_type(teacher_dir)
    prefix = BERT_SHAPED[kind] + "."
    teacher = {("bert." + k[len(prefix):] if k.startswith(prefix) else k): v
               for k, v in checkpoint.load_state_dict(teacher_dir).items()}
    config = checkpoint.read_json(checkpoint.find_config(teacher_dir))
    offset = pad_offset(config) if kind in POSITION_OFFSET_PAST_PAD else 0
    keep = width_selection(teacher_shape(teacher_dir), shape) if shape else None
    state, copied = dict(student_state), []
    for name, value in student_state.items():
        source = name
        if name.startswith("bert.encoder.layer."):
            index, rest = name[len("bert.encoder.layer."):].split(".", 1)
            source = f"bert.encoder.layer.{layer_map[int(index)] - 1}.{rest}"
        if source not in teacher:
            continue
        array = np.asarray(teacher[source], np.float32)
        if name == "bert.embeddings.word_embeddings.weight" and teacher_ids is not None:
            array = array[teacher_ids]
        elif name == "bert.embeddings.position_embeddings.weight":
            array = array[offset:offset + value.shape[0]]
        if keep is not None:
            array = select_width(name, array, keep)
        if array.shape != value.shape:
            raise ValueError(f"teacher {teacher_dir}: {source} has shape {array.shape}, the student's {name} "
                             f"{value.shape}")
        state[name], copied = np.ascontiguousarray(array), copied + [name]
    missing = [n for n in student_state if n.startswith(("bert.embeddings.", "bert.encoder.")) and n not in copied]
    if missing:
        raise ValueError(f"teacher {teacher_dir}: no weights for {', '.join(missing[:3])}"
                         + (f" and {len(missing) - 3} more" if len(missing) > 3 else ""))
    return state, copied


def write_student(teacher_dir, out_dir, modeling, layers=4, hidden=312, heads=12, intermediate=1200, seed=0,
                  trimmed=None, layer_map=None):
    """A TinyBERT student on the teacher's vocabulary (its size, padding id and tokenizer files), for
    teachers with no General TinyBERT of their vocabulary: random, of the given shape; or, with
    `layer_map` (student layer i+1 <- teacher layer layer_map[i]), with the teacher's embeddings and
    those layers, whole or (a narrower shape) cut by width_selection (teacher_shape, teacher_layers). With `trimmed` (vocabulary.trim) on
    the kept tokens only, with their tokenizer and map to the teacher's ids. Returns (number of
    parameters, names copied from the teacher)."""
    teacher = checkpoint.read_json(checkpoint.find_config(teacher_dir))
    vocab = trimmed.vocab_size if trimmed else int(teacher["vocab_size"])
    pad = trimmed.pad_token_id if trimmed else int(teacher.get("pad_token_id") or 0)
    shape = dict(hidden_size=hidden, num_attention_heads=heads, intermediate_size=intermediate)
    positions = int(teacher.get("max_position_embeddings", 512))
    if layer_map is not None:
        shape = {**teacher_shape(teacher_dir), **shape}  # its activation, norm epsilon and token types
        if model_type(teacher_dir) in POSITION_OFFSET_PAST_PAD:
            positions -= pad_offset(teacher)
    config = modeling.BertConfig(
        vocab_size=vocab, num_hidden_layers=layers, max_position_embeddings=min(positions, 512), pad_token_id=pad,
        extra=dict(trimmed.config_extra) if trimmed else {}, **shape)
    modeling.flow.manual_seed(seed)
    student = modeling.BertModel(config)  # the encoder alone: fit_dense and classifier come with the stages
    state, copied = student.numpy_state_dict(), []
    if layer_map is not None:
        state, copied = teacher_layers(teacher_dir, state, layer_map, trimmed.teacher_ids if trimmed else None,
                                       dict(hidden_size=hidden, num_attention_heads=heads, intermediate_size=intermediate))
    with files.atomic_dir(out_dir) as tmp:
        config.save(tmp)
        checkpoint.save_safetensors(state, tmp)
        if trimmed:
            vocabulary.write(trimmed, tmp, source=os.path.basename(os.path.normpath(os.path.abspath(teacher_dir))))
        else:
            for path in _tokenizer_paths(teacher_dir):
                checkpoint.copy_file(path, os.path.join(tmp, os.path.basename(path)))
    return sum(int(v.size) for v in state.values()), copied


def pad_offset(config):
    """Rows of a RoBERTa-family position table before its first real position (padding_idx + 1)."""
    return int(config.get("pad_token_id") or 0) + 1
