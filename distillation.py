"""TinyBERT's losses and layer mapping, shared by general and task distillation.

Intermediate-layer distillation (Jiao et al., 2020, eq. 7-9): `att_loss`, the MSE between student
and teacher attention scores before the softmax, and `rep_loss`, the MSE between hidden states
(embeddings included) after the student's `fit_dense` projection. Prediction-layer distillation
(eq. 10): `soft_cross_entropy` of the student's logits against the teacher's at a `temperature`
(for a regression task, the MSE to the teacher's score).

Layer mapping: a list giving, for each student layer (1..S), the teacher layer (1..T) it learns
from. Uniform mapping takes every k-th teacher layer (k = T / S), as the paper, and the nearest
evenly spaced layers when T is no multiple of S; hidden state 0 (the embeddings) always maps to the
teacher's embeddings.

Attention. The paper's `att_loss` compares pre-softmax scores head by head, so it needs a teacher
that exposes its scores and has the student's head count. `att_kl_loss` needs neither: it compares
the attention distributions averaged over heads (KL(teacher || student) per real query), which any
transformers encoder returns, DeBERTa's disentangled attention included. `choose_att_loss` picks
one and says why.

Normalisation. The reference averages each MSE over every element of tensors padded to
max_seq_length, so the loss of a batch depends on how much padding it carries. With dynamic padding
that denominator would change from batch to batch; passing `mask` instead averages over real tokens
only (real query x real key pairs for attention), which is what the padded reference loss is
proportional to when padding positions agree, and does not depend on the padded length at all.
"""
import backend

flow = backend.framework()
F = flow.nn.functional

# Attention scores at or below this carry the additive padding mask (about -10000): set to zero on
# both sides so that the mask itself is not distilled (as the reference implementation does).
MASKED_SCORE = -1e2


def uniform_layer_map(teacher_layers, student_layers):
    """Evenly spaced teacher layers, the last student layer on the last teacher layer: every k-th
    when the depths divide (the paper's k = T / S), else the nearest layer to each multiple of T / S
    (6 -> 4: 2, 3, 5, 6), so that no depth pair needs a hand-written --layer_map."""
    return [((i + 1) * teacher_layers * 2 + student_layers) // (2 * student_layers) for i in range(student_layers)]


def parse_layer_map(text, teacher_layers, student_layers):
    """'--layer_map 2,4,6' -> [2, 4, 6]; empty -> uniform mapping; checked against both depths."""
    if not text:
        return uniform_layer_map(teacher_layers, student_layers)
    try:
        mapping = [int(x) for x in str(text).replace(" ", "").split(",") if x]
    except ValueError:
        raise ValueError(f"--layer_map {text!r}: expected comma-separated teacher layer numbers, e.g. 2,4,6")
    if len(mapping) != student_layers:
        raise ValueError(f"--layer_map {text!r} gives {len(mapping)} teacher layers for a student of "
                         f"{student_layers} layers")
    bad = [t for t in mapping if not 1 <= t <= teacher_layers]
    if bad:
        raise ValueError(f"--layer_map {text!r}: teacher layers must be in 1..{teacher_layers}, got {bad}")
    return mapping


def _mse(student, teacher, weight=None):
    if weight is None:
        return F.mse_loss(student, teacher)
    # weight: 0/1, broadcastable to the tensors; average over the entries it keeps
    diff = (student - teacher) ** 2 * weight
    kept = weight.sum() * (diff.numel() // weight.numel())  # entries the broadcast weight keeps
    return diff.sum() / kept.clamp(min=1.0)


def att_loss(student_atts, teacher_atts, layer_map, mask=None):
    """Sum over student layers of MSE(student scores, scores of the mapped teacher layer)."""
    weight = None
    if mask is not None:  # [B, L] -> [B, 1, L, L]: real query x real key
        m = mask.to(student_atts[0].dtype)
        weight = (m[:, None, :, None] * m[:, None, None, :])
    total = 0.0
    for s_att, t_layer in zip(student_atts, layer_map):
        t_att = teacher_atts[t_layer - 1]
        s_att = flow.where(s_att <= MASKED_SCORE, flow.zeros_like(s_att), s_att)
        t_att = flow.where(t_att <= MASKED_SCORE, flow.zeros_like(t_att), t_att)
        total = total + _mse(s_att, t_att, weight)
    return total


def rep_loss(student_reps, teacher_reps, layer_map, mask=None):
    """Sum over hidden states 0..S of MSE(fit_dense(student state), mapped teacher state)."""
    weight = None if mask is None else mask.to(student_reps[0].dtype)[:, :, None]
    total = 0.0
    for s_rep, t_index in zip(student_reps, [0] + list(layer_map)):
        total = total + _mse(s_rep, teacher_reps[t_index], weight)
    return total


def soft_cross_entropy(student_logits, teacher_logits, temperature=1.0, over_labels="sum"):
    """Cross-entropy of the student's softened distribution against the teacher's, mean over the batch.

    over_labels="sum" is the cross-entropy of each example; "mean" divides it by the number of labels,
    as the reference implementation's `.mean()` over the [batch, labels] tensor does.
    """
    targets = F.softmax(teacher_logits / temperature, dim=-1)
    per_label = -targets * F.log_softmax(student_logits / temperature, dim=-1)
    if over_labels == "mean":
        return per_label.mean()
    if over_labels != "sum":
        raise ValueError(f"over_labels={over_labels!r}: 'sum' or 'mean'")
    return per_label.sum(dim=-1).mean()


def pred_loss(student_logits, teacher_logits, temperature=1.0, labels=None, is_regression=False, over_labels="sum",
              regression_target="teacher"):
    """Prediction-layer loss: soft cross-entropy against the teacher; for regression (STS-B) the MSE to
    the teacher's score ("teacher", the paper's method) or to the gold score ("gold", what the reference
    code does; its authors confirmed the paper's results learned from the teacher)."""
    if not is_regression:
        return soft_cross_entropy(student_logits, teacher_logits, temperature, over_labels)
    if regression_target == "teacher":
        target = teacher_logits
    elif regression_target == "gold":
        target = labels
    else:
        raise ValueError(f"regression_target={regression_target!r}: 'teacher' or 'gold'")
    return F.mse_loss(student_logits.reshape(-1), target.reshape(-1).to(student_logits.dtype))


ATT_LOSSES = ("mse", "kl")


def choose_att_loss(requested, teacher_scores, teacher_heads, student_heads):
    """(att loss name, reason): the paper's "mse" on scores where the teacher allows it, else "kl";
    `requested` ("auto", "mse" or "kl") overrides, refused where the teacher cannot give what it needs."""
    if requested == "kl":
        return "kl", "asked for (--att_loss kl)"
    why_not = None
    if not teacher_scores:
        why_not = "the teacher exposes attention probabilities, not pre-softmax scores"
    elif teacher_heads != student_heads:
        why_not = f"the teacher has {teacher_heads} attention heads, the student {student_heads}"
    if requested == "mse":
        if why_not:
            raise ValueError(f"--att_loss mse compares scores head by head, but {why_not}: pass --att_loss kl or auto")
        return "mse", "asked for (--att_loss mse)"
    if requested != "auto":
        raise ValueError(f"--att_loss {requested!r}: one of auto, {', '.join(ATT_LOSSES)}")
    if why_not:
        return "kl", why_not
    return "mse", f"the teacher exposes pre-softmax scores and has the student's {student_heads} heads"


def _mean_attention(atts, are_scores):
    """[B, heads, L, L] scores (with the additive mask) or probabilities -> [B, L, L] head-averaged
    probabilities."""
    probs = F.softmax(atts, dim=-1) if are_scores else atts
    return probs.mean(dim=1)


def att_kl_loss(student_atts, teacher_atts, layer_map, mask=None, teacher_scores=True):
    """Sum over student layers of KL(teacher || student) between head-averaged attention
    distributions, mean over (real) queries. The student gives scores; the teacher scores or, with
    teacher_scores=False, probabilities. No head count needs to agree."""
    total = 0.0
    for s_att, t_layer in zip(student_atts, layer_map):
        p_s = _mean_attention(s_att.float(), True)
        p_t = _mean_attention(teacher_atts[t_layer - 1].float(), teacher_scores)
        # padded keys have probability ~0 on both sides; the clamp keeps their 0 * log 0 at 0
        per_query = (p_t * (p_t.clamp(min=1e-12).log() - p_s.clamp(min=1e-12).log())).sum(dim=-1)  # [B, L]
        if mask is None:
            total = total + per_query.mean()
        else:
            m = mask.to(per_query.dtype)
            total = total + (per_query * m).sum() / m.sum().clamp(min=1.0)
    return total


class Matching:
    """What intermediate-layer distillation compares: the layer map and the attention loss, decided
    once, printed by `describe()`, and applied by `att_term` (so what is printed is what runs)."""

    def __init__(self, layer_map, att_loss_name="mse", teacher_scores=True, reason=""):
        self.layer_map, self.att_loss_name = list(layer_map), att_loss_name
        self.teacher_scores, self.reason = teacher_scores, reason

    def att_term(self, student_atts, teacher_atts, mask=None):
        if self.att_loss_name == "mse":
            return att_loss(student_atts, teacher_atts, self.layer_map, mask)
        return att_kl_loss(student_atts, teacher_atts, self.layer_map, mask, self.teacher_scores)

    def describe(self):
        pairs = ", ".join(f"{s}->{t}" for s, t in enumerate(self.layer_map, 1))
        what = ("MSE of pre-softmax scores, head by head" if self.att_loss_name == "mse"
                else "KL of head-averaged attention distributions")
        return (f"layer map (student->teacher): emb->emb, {pairs}; att_loss {self.att_loss_name}: {what} "
                f"({self.reason})")


def match_layers(teacher_config, student_config, layer_map_text="", att_requested="auto", teacher_scores=True):
    """The Matching of a teacher and a student (configs with num_hidden_layers, num_attention_heads)."""
    layer_map = parse_layer_map(layer_map_text, teacher_config.num_hidden_layers, student_config.num_hidden_layers)
    name, reason = choose_att_loss(att_requested, teacher_scores, teacher_config.num_attention_heads,
                                   student_config.num_attention_heads)
    return Matching(layer_map, name, teacher_scores, reason)
