"""The TinyBERT losses against values computed by hand with numpy, on both backends; layer mapping."""
import functools
from types import SimpleNamespace

import numpy as np
import pytest

import backend
from conftest import BACKENDS, bound


@pytest.fixture(scope="module")
def dist_for():
    return functools.partial(bound, "distillation")


def tensor(name, a):
    flow = backend.framework(name)
    return flow.tensor(np.asarray(a, dtype=np.float32))


def test_uniform_layer_maps(dist_for):
    d = dist_for("torch")
    assert d.uniform_layer_map(12, 4) == [3, 6, 9, 12]
    assert d.uniform_layer_map(6, 3) == [2, 4, 6]
    assert d.uniform_layer_map(4, 4) == [1, 2, 3, 4]
    # depths that do not divide: evenly spaced, the last layer on the last, no flag needed
    assert d.uniform_layer_map(6, 4) == [2, 3, 5, 6]
    assert d.uniform_layer_map(12, 5) == [2, 5, 7, 10, 12]
    assert d.uniform_layer_map(3, 4) == [1, 2, 2, 3]  # a shallower teacher: its layers are shared
    assert d.parse_layer_map("1,3,5,6", 6, 4) == [1, 3, 5, 6]
    assert d.parse_layer_map("", 12, 4) == [3, 6, 9, 12]
    with pytest.raises(ValueError, match="gives 2 teacher layers for a student of 3 layers"):
        d.parse_layer_map("2,4", 6, 3)
    with pytest.raises(ValueError, match=r"must be in 1\.\.6, got \[7\]"):
        d.parse_layer_map("2,4,7", 6, 3)


def _scores(rng, mask, heads=2):
    b, l = mask.shape
    s = rng.normal(size=(b, heads, l, l)).astype(np.float32)
    return s + (1.0 - mask[:, None, None, :]) * -10000.0


@pytest.mark.parametrize("name", BACKENDS)
def test_att_loss_and_rep_loss_equal_hand_computed_values(name, dist_for):
    d = dist_for(name)
    rng = np.random.default_rng(0)
    mask = np.array([[1, 1, 1, 0], [1, 1, 1, 1]], dtype=np.float32)
    teacher_atts = [_scores(rng, mask) for _ in range(6)]
    student_atts = [_scores(rng, mask) for _ in range(3)]
    teacher_reps = [rng.normal(size=(2, 4, 5)).astype(np.float32) for _ in range(7)]
    student_reps = [rng.normal(size=(2, 4, 5)).astype(np.float32) for _ in range(4)]
    layer_map = [2, 4, 6]

    def zero_masked(a):
        return np.where(a <= -100, 0.0, a)
    want_att = sum(np.mean((zero_masked(s) - zero_masked(teacher_atts[t - 1])) ** 2)
                   for s, t in zip(student_atts, layer_map))
    want_rep = sum(np.mean((s - teacher_reps[t]) ** 2) for s, t in zip(student_reps, [0, 2, 4, 6]))
    got_att = d.att_loss([tensor(name, a) for a in student_atts], [tensor(name, a) for a in teacher_atts], layer_map)
    got_rep = d.rep_loss([tensor(name, a) for a in student_reps], [tensor(name, a) for a in teacher_reps], layer_map)
    assert float(got_att.numpy()) == pytest.approx(want_att, rel=1e-5)
    assert float(got_rep.numpy()) == pytest.approx(want_rep, rel=1e-5)

    # masked means: over real tokens only (real query x real key for attention)
    pair = mask[:, None, :, None] * mask[:, None, None, :] * np.ones((1, 2, 1, 1))
    want_att_m = sum(((zero_masked(s) - zero_masked(teacher_atts[t - 1])) ** 2 * pair).sum() / pair.sum()
                     for s, t in zip(student_atts, layer_map))
    tok = mask[:, :, None] * np.ones((1, 1, 5))
    want_rep_m = sum(((s - teacher_reps[t]) ** 2 * tok).sum() / tok.sum() for s, t in zip(student_reps, [0, 2, 4, 6]))
    m = tensor(name, mask)
    got_att_m = d.att_loss([tensor(name, a) for a in student_atts], [tensor(name, a) for a in teacher_atts], layer_map, m)
    got_rep_m = d.rep_loss([tensor(name, a) for a in student_reps], [tensor(name, a) for a in teacher_reps], layer_map, m)
    assert float(got_att_m.numpy()) == pytest.approx(want_att_m, rel=1e-5)
    assert float(got_rep_m.numpy()) == pytest.approx(want_rep_m, rel=1e-5)
    assert abs(want_att_m - want_att) > 1e-3  # the two normalisations do differ on padded batches


def test_masked_losses_do_not_depend_on_extra_padding(dist_for):
    """With the mask, padding a batch further leaves the loss unchanged (dynamic padding is safe)."""
    d = dist_for("torch")
    rng = np.random.default_rng(1)
    mask = np.array([[1, 1, 1, 0], [1, 1, 1, 1]], dtype=np.float32)
    s, t = _scores(rng, mask), _scores(rng, mask)
    sr, tr = rng.normal(size=(2, 4, 3)).astype(np.float32), rng.normal(size=(2, 4, 3)).astype(np.float32)
    pad = lambda a, n: np.pad(a, [(0, 0)] * (a.ndim - 2) + [(0, n), (0, n)] if a.ndim == 4 else [(0, 0), (0, n), (0, 0)],
                              constant_values=0.0)
    padded_mask = np.pad(mask, [(0, 0), (0, 3)])
    s2 = pad(s, 3) + (1 - padded_mask[:, None, None, :]) * -10000.0
    t2 = pad(t, 3) + (1 - padded_mask[:, None, None, :]) * -10000.0
    a1 = d.att_loss([tensor("torch", s)], [tensor("torch", t)], [1], tensor("torch", mask))
    a2 = d.att_loss([tensor("torch", s2)], [tensor("torch", t2)], [1], tensor("torch", padded_mask))
    r1 = d.rep_loss([tensor("torch", sr)] * 2, [tensor("torch", tr)] * 2, [1], tensor("torch", mask))
    r2 = d.rep_loss([tensor("torch", pad(sr, 3))] * 2, [tensor("torch", pad(tr, 3) + 5.0)] * 2, [1],
                    tensor("torch", padded_mask))
    assert float(a1) == pytest.approx(float(a2), rel=1e-6)
    assert float(r1) != pytest.approx(float(r2))  # +5 reached the real positions too: guard against a vacuous test
    r3 = d.rep_loss([tensor("torch", pad(sr, 3))] * 2, [tensor("torch", pad(tr, 3))] * 2, [1],
                    tensor("torch", padded_mask))
    assert float(r1) == pytest.approx(float(r3), rel=1e-6)


@pytest.mark.parametrize("name", BACKENDS)
def test_soft_cross_entropy_and_pred_loss(name, dist_for):
    d = dist_for(name)
    rng = np.random.default_rng(2)
    s, t = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    for temperature in (1.0, 2.5):
        p = np.exp(t / temperature) / np.exp(t / temperature).sum(-1, keepdims=True)
        log_q = s / temperature - np.log(np.exp(s / temperature).sum(-1, keepdims=True))
        want = float(np.mean(-(p * log_q).sum(-1)))
        got = d.pred_loss(tensor(name, s), tensor(name, t), temperature)
        assert float(got.numpy()) == pytest.approx(want, rel=1e-5)
        # the reference's normalisation (--reference_mode): a mean over the [batch, labels] entries
        reference = d.pred_loss(tensor(name, s), tensor(name, t), temperature, over_labels="mean")
        assert float(reference.numpy()) == pytest.approx(float(np.mean(-(p * log_q))), rel=1e-5)
    # regression: MSE to the teacher's scores (the paper), or to the gold ones (the reference code)
    scores = np.array([0.5, 3.0, 4.2, 1.0])
    got = d.pred_loss(tensor(name, s[:, :1]), tensor(name, t[:, :1]), labels=tensor(name, scores), is_regression=True)
    assert float(got.numpy()) == pytest.approx(float(np.mean((s[:, 0] - t[:, 0]) ** 2)), rel=1e-5)
    gold = d.pred_loss(tensor(name, s[:, :1]), tensor(name, t[:, :1]), labels=tensor(name, scores),
                       is_regression=True, regression_target="gold")
    assert float(gold.numpy()) == pytest.approx(float(np.mean((s[:, 0] - scores) ** 2)), rel=1e-5)
    with pytest.raises(ValueError, match="'teacher' or 'gold'"):
        d.pred_loss(tensor(name, s[:, :1]), None, labels=tensor(name, scores), is_regression=True,
                    regression_target="labels")


def test_attention_loss_is_chosen_by_what_the_teacher_exposes(dist_for):
    d = dist_for("torch")
    assert d.choose_att_loss("auto", True, 12, 12)[0] == "mse"
    name, why = d.choose_att_loss("auto", True, 12, 4)
    assert name == "kl" and "12 attention heads, the student 4" in why
    name, why = d.choose_att_loss("auto", False, 4, 4)
    assert name == "kl" and "probabilities" in why
    assert d.choose_att_loss("kl", True, 4, 4)[0] == "kl"
    with pytest.raises(ValueError, match="--att_loss mse compares scores head by head, but the teacher has 12"):
        d.choose_att_loss("mse", True, 12, 4)
    m = d.match_layers(SimpleNamespace(num_hidden_layers=6, num_attention_heads=8),
                       SimpleNamespace(num_hidden_layers=4, num_attention_heads=4))
    assert m.layer_map == [2, 3, 5, 6] and m.att_loss_name == "kl"
    assert m.describe().startswith("layer map (student->teacher): emb->emb, 1->2, 2->3, 3->5, 4->6; att_loss kl")


def test_att_kl_loss_compares_head_averaged_distributions_over_real_queries(dist_for):
    """KL(teacher || student) of the head-mean attention, by hand in numpy; heads may differ, the
    teacher may give probabilities, and padded queries do not count."""
    d = dist_for("torch")
    rng = np.random.default_rng(0)
    mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0]], np.float32)
    s_scores, t_scores = _scores(rng, mask, heads=2), _scores(rng, mask, heads=3)

    def softmax(x):
        e = np.exp(x - x.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)
    p_s, p_t = softmax(s_scores).mean(1), softmax(t_scores).mean(1)
    kl = (p_t * (np.log(np.maximum(p_t, 1e-12)) - np.log(np.maximum(p_s, 1e-12)))).sum(-1)  # [B, L]
    want = (kl * mask).sum() / mask.sum()
    for teacher, are_scores in ((t_scores, True), (softmax(t_scores), False)):
        got = float(d.att_kl_loss([tensor("torch", s_scores)], [tensor("torch", teacher)], [1],
                                  tensor("torch", mask), teacher_scores=are_scores))
        assert got == pytest.approx(float(want), rel=1e-5)
    assert want > 0.01  # different random maps: a loss that could be wrong
    same = d.att_kl_loss([tensor("torch", t_scores)], [tensor("torch", t_scores)], [1], tensor("torch", mask))
    assert abs(float(same)) < 1e-6
