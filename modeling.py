"""BERT and the TinyBERT heads, written once for OneFlow and PyTorch.

Parameter names are Hugging Face BERT's, so `bert-base-uncased` and huawei-noah's General_TinyBERT
directories load as they are. The model returns what TinyBERT distils: every hidden state
(embeddings + one per layer) and every layer's attention scores *before* the softmax, with the
padding mask already added (masked keys hold about -10000, which `distillation.py` zeroes).

Only the shared subset of the two frameworks' APIs is used; `backend.framework()` says which one.
"""
import math
import os
from dataclasses import asdict, dataclass, field, fields
from typing import List, NamedTuple

import numpy as np

import backend
import checkpoint
import files

flow = backend.framework()
nn = flow.nn
F = nn.functional

# Added to the scores of padding keys. Finite (unlike the dtype's minimum) so that the scores stay
# usable as distillation targets, as in the reference TinyBERT.
MASK_VALUE = -10000.0


@dataclass
class BertConfig:
    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    # Anything else config.json holds (id2label, architectures, ...) is kept and written back.
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d):
        known = {f.name for f in fields(cls)} - {"extra"}
        cfg = cls(**{k: v for k, v in d.items() if k in known})
        cfg.extra = {k: v for k, v in d.items() if k not in known}
        return cfg

    @classmethod
    def from_json_file(cls, path):
        return cls.from_dict(checkpoint.check_config(checkpoint.read_json(path), path))

    def to_dict(self):
        d = asdict(self)
        extra = d.pop("extra")
        return {**extra, **d, "model_type": "bert"}

    def save(self, directory):
        files.write_json_atomic(os.path.join(directory, checkpoint.CONFIG_NAME), self.to_dict())

    @property
    def head_size(self):
        return self.hidden_size // self.num_attention_heads


def gelu_tanh(x):
    return 0.5 * x * (1.0 + flow.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x * x * x)))


# PyTorch has a fused attention kernel; OneFlow 0.9 has none, and takes the explicit path.
_fused_attention = getattr(F, "scaled_dot_product_attention", None)
_attention_scores = backend.attention_scores(flow)  # q @ k^T * scale

ACTIVATIONS = {
    "gelu": F.gelu,  # the exact, erf-based GELU that BERT was trained with
    "gelu_new": gelu_tanh,
    "gelu_pytorch_tanh": gelu_tanh,
    "relu": F.relu,
}


class BertEmbeddings(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.position_embeddings = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(self, input_ids, token_type_ids):
        positions = flow.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0)
        x = self.word_embeddings(input_ids) + self.position_embeddings(positions) \
            + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(x))


class BertSelfAttention(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        if cfg.hidden_size % cfg.num_attention_heads:
            raise ValueError(f"hidden_size {cfg.hidden_size} is not a multiple of "
                             f"num_attention_heads {cfg.num_attention_heads}")
        self.heads, self.head_size = cfg.num_attention_heads, cfg.head_size
        self.query = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.key = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.value = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.dropout = nn.Dropout(cfg.attention_probs_dropout_prob)

    def _split_heads(self, x):  # [B, L, H] -> [B, heads, L, head_size]
        b, l, _ = x.shape
        return x.reshape(b, l, self.heads, self.head_size).permute(0, 2, 1, 3)

    def forward(self, x, additive_mask, output_attentions=True):
        q, k, v = (self._split_heads(p(x)) for p in (self.query, self.key, self.value))
        if not output_attentions and _fused_attention is not None:
            # Inference needs no scores: let the framework fuse scale, mask, softmax and product.
            context = _fused_attention(q, k, v, attn_mask=additive_mask,
                                       dropout_p=self.dropout.p if self.training else 0.0)
            scores = None
        else:
            scores = _attention_scores(q, k, 1.0 / math.sqrt(self.head_size))
            # Added as an expanded view: OneFlow's CPU broadcast add is many times slower than the same
            # add on an expanded tensor (bench/bench_ops.py); PyTorch is indifferent.
            scores = scores + additive_mask.expand(scores.shape)
            context = flow.matmul(self.dropout(F.softmax(scores, dim=-1)), v)
        context = context.permute(0, 2, 1, 3)
        b, l = context.shape[0], context.shape[1]
        return context.reshape(b, l, self.heads * self.head_size), scores if output_attentions else None


class BertSelfOutput(nn.Module):
    """Projection + residual + LayerNorm, after attention."""

    def __init__(self, cfg: BertConfig, in_size):
        super().__init__()
        self.dense = nn.Linear(in_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(self, x, residual):
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


BertOutput = BertSelfOutput  # the same block closes the feed-forward part


class BertAttention(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.self = BertSelfAttention(cfg)
        self.output = BertSelfOutput(cfg, cfg.hidden_size)

    def forward(self, x, additive_mask, output_attentions=True):
        context, scores = self.self(x, additive_mask, output_attentions)
        return self.output(context, x), scores


class BertIntermediate(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        if cfg.hidden_act not in ACTIVATIONS:
            raise ValueError(f"hidden_act {cfg.hidden_act!r} is not supported: use one of {sorted(ACTIVATIONS)}")
        self.dense = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.act = ACTIVATIONS[cfg.hidden_act]

    def forward(self, x):
        return self.act(self.dense(x))


class BertLayer(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.attention = BertAttention(cfg)
        self.intermediate = BertIntermediate(cfg)
        self.output = BertOutput(cfg, cfg.intermediate_size)

    def forward(self, x, additive_mask, output_attentions=True):
        x, scores = self.attention(x, additive_mask, output_attentions)
        return self.output(self.intermediate(x), x), scores


class BertEncoder(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.layer = nn.ModuleList([BertLayer(cfg) for _ in range(cfg.num_hidden_layers)])


class BertPooler(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, hidden):
        return flow.tanh(self.dense(hidden[:, 0]))


class BertModelOutput(NamedTuple):
    sequence_output: object       # [B, L, H], last layer
    pooled_output: object         # [B, H], tanh(dense([CLS]))
    hidden_states: List[object]   # num_layers + 1 tensors [B, L, H]: embeddings, then each layer
    attentions: List[object]      # num_layers tensors [B, heads, L, L]: scores before softmax


def _some(names, most=20):
    return ", ".join(names[:most]) + (" ..." if len(names) > most else "")


class PreTrainedBert(nn.Module):
    """Initialisation, loading and saving shared by every model class below."""

    # Parameters a fresh head may lack in a checkpoint of another kind (e.g. a classifier on top
    # of a pretrained BERT): created randomly and reported, never an error.
    optional_prefixes = ()
    # Checkpoints name the encoder "bert.*"; a bare BertModel owns those tensors without the prefix.
    state_prefix = ""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.source_dir = None  # where from_pretrained read us; save_pretrained copies vocab.txt from it
        self.missing_keys = []

    def init_weights(self):
        std = self.config.initializer_range
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, mean=0.0, std=std)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
            if isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            if isinstance(m, nn.Dropout) and hasattr(m, "generator"):
                # OneFlow gives each Dropout a generator of its own, all seeded alike, so every
                # layer would drop the same units; seed each from the global generator instead.
                m.generator.manual_seed(int(flow.randint(0, 2 ** 31 - 1, (1,)).numpy()[0]))
        self.tie_weights()

    def tie_weights(self):
        pass

    # -- numpy state dicts: the common currency of checkpoint.py --------------------------------
    def numpy_state_dict(self):
        return {self.state_prefix + k: v.detach().cpu().numpy() for k, v in self.state_dict().items()}

    def load_numpy_state_dict(self, state, source="state dict"):
        """Copy numpy arrays into the parameters; returns (missing, unexpected) names."""
        own = {self.state_prefix + k: v for k, v in self.state_dict().items()}
        misfit = {k for k, v in own.items() if k in state and tuple(state[k].shape) != tuple(v.shape)}
        # A head of another shape (fit_dense for another teacher, a classifier for another task)
        # is started afresh, like a missing one; the encoder itself must fit.
        state = {k: v for k, v in state.items() if not (k in misfit and k.startswith(self.optional_prefixes))}
        wrong = [f"parameter {k} has shape {tuple(state[k].shape)}, but the config needs {tuple(own[k].shape)}"
                 for k in sorted(misfit) if k in state]
        if wrong:
            raise ValueError(f"{source}: " + "; ".join(wrong))
        missing = [k for k in own if k not in state]
        required = [k for k in missing if not k.startswith(self.optional_prefixes)]
        unexpected = [k for k in state if k not in own]
        if required:
            # the unused names usually show the naming slip that made the others missing
            raise ValueError(f"{source}: missing {len(required)} required tensor(s): {_some(required)}"
                             + (f"; unexpected: {_some(unexpected)}" if unexpected else ""))
        n = len(self.state_prefix)
        tensors = {k[n:]: flow.from_numpy(checkpoint.as_float32(v).copy()) for k, v in state.items() if k in own}
        self.load_state_dict(tensors, strict=False)
        self.tie_weights()
        return missing, unexpected

    @classmethod
    def from_pretrained(cls, model_dir, verbose=True, **kwargs):
        config = BertConfig.from_json_file(checkpoint.find_config(model_dir))
        state = checkpoint.load_state_dict(model_dir, config=config)
        checkpoint.check_config_fits(state, config, model_dir)
        if "fit_size" in kwargs and kwargs["fit_size"] is None:
            # as saved (a stage-1 student keeps its projection), else a square one nobody will use
            saved = state.get("fit_dense.weight")
            kwargs["fit_size"] = int(saved.shape[0]) if saved is not None else config.hidden_size
        model = cls(config, **kwargs)
        missing, unexpected = model.load_numpy_state_dict(state, source=model_dir)
        if verbose and missing:
            print(f"{cls.__name__}: initialised {len(missing)} tensor(s) absent from {model_dir} or shaped otherwise: "
                  f"{', '.join(missing)}")
        if verbose and unexpected:
            print(f"{cls.__name__}: ignored {len(unexpected)} tensor(s) of {model_dir} it has no use for "
                  f"(e.g. {', '.join(unexpected[:3])})")
        model.source_dir = model_dir
        model.missing_keys = missing  # e.g. a classifier absent from a never fine-tuned BERT
        return model

    def save_pretrained(self, directory, vocab_file=None, exclude=()):
        """Write config.json, vocab.txt and model.safetensors; all-or-nothing (see files.atomic_dir).
        `exclude`: name prefixes to leave out (e.g. "fit_dense." for a model that only serves)."""
        vocab_file = vocab_file or checkpoint.find_vocab(self.source_dir)
        state = {k: v for k, v in self.numpy_state_dict().items() if not (exclude and k.startswith(tuple(exclude)))}
        with files.atomic_dir(directory) as tmp:
            self.config.save(tmp)
            checkpoint.save_safetensors(state, tmp)
            if vocab_file:
                checkpoint.copy_file(vocab_file, os.path.join(tmp, checkpoint.VOCAB_NAME))
            else:  # a BPE / SentencePiece vocabulary (a student of a RoBERTa, XLM-R, DeBERTa teacher)
                for path in checkpoint.tokenizer_files(self.source_dir):
                    checkpoint.copy_file(path, os.path.join(tmp, os.path.basename(path)))
            if checkpoint.read_teacher_ids(self.source_dir) is not None:  # a trimmed vocabulary's map to the teacher's
                checkpoint.copy_file(os.path.join(self.source_dir, checkpoint.TEACHER_IDS_NAME),
                                     os.path.join(tmp, checkpoint.TEACHER_IDS_NAME))


class BertModel(PreTrainedBert):
    state_prefix = "bert."

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config)
        self.init_weights()

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, output_attentions=True) -> BertModelOutput:
        """output_attentions=False skips the scores (attentions is a list of None) for a faster,
        fused attention where the framework has one (PyTorch's scaled_dot_product_attention)."""
        if token_type_ids is None:
            token_type_ids = flow.zeros_like(input_ids)
        if attention_mask is None:
            attention_mask = flow.ones_like(input_ids)
        x = self.embeddings(input_ids, token_type_ids)
        # [B, L] 1/0 -> [B, 1, 1, L] 0/MASK_VALUE, broadcast over heads and queries.
        additive_mask = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * MASK_VALUE
        hidden_states, attentions = [x], []
        for layer in self.encoder.layer:
            x, scores = layer(x, additive_mask, output_attentions)
            hidden_states.append(x)
            attentions.append(scores)
        return BertModelOutput(x, self.pooler(x), hidden_states, attentions)


class TinyBertForSequenceClassification(PreTrainedBert):
    """BERT + classifier (num_labels >= 2) or regressor (num_labels == 1, STS-B), and `fit_dense`,
    the student-to-teacher projection of hidden states used by intermediate-layer distillation."""

    optional_prefixes = ("classifier.", "fit_dense.")

    def __init__(self, config: BertConfig, num_labels=None, fit_size=768):
        """fit_size: the teacher's hidden size; from_pretrained(..., fit_size=None) takes the saved one."""
        super().__init__(config)
        num_labels = num_labels or config.extra.get("num_labels") or len(config.extra.get("id2label", {})) or 2
        config.extra["num_labels"] = num_labels
        self.num_labels = num_labels
        self.bert = BertModel(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, num_labels)
        self.fit_dense = nn.Linear(config.hidden_size, fit_size)
        self.init_weights()

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, is_student=False,
                output_attentions=True):
        out = self.bert(input_ids, token_type_ids, attention_mask, output_attentions)
        logits = self.classifier(self.dropout(out.pooled_output))
        reps = [self.fit_dense(h) for h in out.hidden_states] if is_student else out.hidden_states
        return logits, out.attentions, reps


class BertPredictionHead(nn.Module):
    """cls.predictions: transform (dense, act, LayerNorm), then a decoder tied to the word embeddings."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.transform = nn.Module()
        self.transform.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.transform.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.act = ACTIVATIONS[cfg.hidden_act]
        self.decoder = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        self.bias = nn.Parameter(flow.zeros(cfg.vocab_size))

    def forward(self, x):
        x = self.transform.LayerNorm(self.act(self.transform.dense(x)))
        return self.decoder(x) + self.bias


class BertForMaskedLM(PreTrainedBert):
    # The pooler serves [CLS] classification, not word prediction: transformers' BertForMaskedLM
    # is saved without one, and it is started afresh here (and reported) rather than required.
    optional_prefixes = ("cls.predictions.decoder.", "bert.pooler.")

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.bert = BertModel(config)
        self.cls = nn.Module()
        self.cls.predictions = BertPredictionHead(config)
        self.init_weights()

    def tie_weights(self):
        self.cls.predictions.decoder.weight = self.bert.embeddings.word_embeddings.weight

    def load_numpy_state_dict(self, state, source="state dict"):
        """transformers also saves the output bias as cls.predictions.decoder.bias (the same tensor as
        cls.predictions.bias, tied): it stands in for the bias when that is absent, else must equal it."""
        alias, bias = "cls.predictions.decoder.bias", "cls.predictions.bias"
        if alias in state:
            state = dict(state)
            value = state.pop(alias)
            if bias not in state:
                state[bias] = value
            elif np.shape(value) != np.shape(state[bias]) or not np.array_equal(value, state[bias]):
                raise ValueError(f"{source}: {alias} differs from {bias}; one output bias was expected")
        return super().load_numpy_state_dict(state, source=source)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, masked_positions=None):
        """Vocabulary logits [B, L, V]; or [N, V] at `masked_positions` ((batch_idx, pos) index
        tensors), which spares the 30k-wide decoder at every position nobody asked about."""
        out = self.bert(input_ids, token_type_ids, attention_mask, output_attentions=False)
        x = out.sequence_output
        if masked_positions is not None:
            x = x[masked_positions[0], masked_positions[1]]
        return self.cls.predictions(x)


class TinyBertForPreTraining(PreTrainedBert):
    """The general-distillation student: BERT + `fit_dense`; returns (atts, reps)."""

    optional_prefixes = ("fit_dense.",)

    def __init__(self, config: BertConfig, fit_size=768):
        super().__init__(config)
        self.bert = BertModel(config)
        self.fit_dense = nn.Linear(config.hidden_size, fit_size)
        self.init_weights()

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, is_student=True):
        out = self.bert(input_ids, token_type_ids, attention_mask)
        reps = [self.fit_dense(h) for h in out.hidden_states] if is_student else out.hidden_states
        return out.attentions, reps


def count_parameters(model: nn.Module, exclude=("fit_dense.",)):
    """Parameters that inference uses (fit_dense only serves distillation); tied weights once."""
    seen, total = set(), 0
    for name, p in model.named_parameters():
        if name.startswith(exclude) or id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
    return total
