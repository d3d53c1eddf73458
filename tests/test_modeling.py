"""modeling.py against transformers on real weights, on both backends; saving, loading and bad input."""
import json
import os

import numpy as np
import pytest
import torch
import transformers

import backend
from conftest import BACKENDS, random_batch, tiny_config_dict


def to_backend(name, *arrays):
    flow = backend.framework(name)
    return [flow.tensor(a, dtype=flow.int64) for a in arrays]


def hf_reference(model_dir_or_model, ids, types, mask):
    """transformers' hidden states, and its pre-softmax scores rebuilt from its own q/k projections."""
    hf = model_dir_or_model
    if isinstance(hf, str):
        hf = transformers.BertModel.from_pretrained(hf, attn_implementation="eager")
    hf.eval()
    captured = []
    hooks = []
    for layer in hf.encoder.layer:
        att = layer.attention.self
        hooks.append(att.query.register_forward_hook(lambda m, i, o: captured.append(("q", o))))
        hooks.append(att.key.register_forward_hook(lambda m, i, o: captured.append(("k", o))))
    with torch.no_grad():
        out = hf(torch.tensor(ids), token_type_ids=torch.tensor(types), attention_mask=torch.tensor(mask),
                 output_hidden_states=True, output_attentions=True)
    for h in hooks:
        h.remove()
    heads = hf.config.num_attention_heads
    qs = [o for kind, o in captured if kind == "q"]
    ks = [o for kind, o in captured if kind == "k"]
    scores = []
    for q, k in zip(qs, ks):
        b, l, hsz = q.shape
        q = q.reshape(b, l, heads, hsz // heads).permute(0, 2, 1, 3)
        k = k.reshape(b, l, heads, hsz // heads).permute(0, 2, 1, 3)
        scores.append((q @ k.transpose(-1, -2) / (hsz // heads) ** 0.5).numpy())
    return [h.numpy() for h in out.hidden_states], scores, [a.numpy() for a in out.attentions]


@pytest.mark.parametrize("name", BACKENDS)
def test_bert_model_matches_transformers_on_real_weights(name, minilm_dir, modeling_for):
    m = modeling_for(name)
    flow = backend.framework(name)
    model = m.BertModel.from_pretrained(minilm_dir, verbose=False).eval()
    rng = np.random.default_rng(0)
    ids, types, mask = random_batch(rng, 30000, batch=3, length=12)
    ids[:, 0] = 101
    with flow.no_grad():
        out = model(*to_backend(name, ids, types, mask))
    ref_hidden, ref_scores, ref_probs = hf_reference(minilm_dir, ids, types, mask)

    assert len(out.hidden_states) == 7 and len(out.attentions) == 6
    valid = mask.astype(bool)
    for ours, ref in zip(out.hidden_states, ref_hidden):
        # padding positions carry no meaning in either implementation
        assert np.abs(ours.numpy()[valid] - ref[valid]).max() < 1e-4
    key_valid = np.broadcast_to(valid[:, None, None, :], ref_scores[0].shape)
    query_valid = np.broadcast_to(valid[:, None, :, None], ref_scores[0].shape)
    both = key_valid & query_valid
    for ours, ref, probs in zip(out.attentions, ref_scores, ref_probs):
        ours = ours.numpy()
        assert ours.shape == (3, 12, 12, 12)
        assert np.abs(ours[both] - ref[both]).max() < 1e-4
        assert (ours[~key_valid] < -9000).all()  # padding keys carry the additive mask
        softmax = np.exp(ours - ours.max(-1, keepdims=True))
        softmax /= softmax.sum(-1, keepdims=True)
        assert np.abs(softmax[query_valid] - probs[query_valid]).max() < 1e-5
    # the pooled output is tanh(dense(CLS)) of the last layer
    pooled = np.tanh(out.sequence_output.numpy()[:, 0] @ model.pooler.dense.weight.detach().numpy().T
                     + model.pooler.dense.bias.detach().numpy())
    assert np.abs(out.pooled_output.numpy() - pooled).max() < 1e-5


def test_backends_agree(minilm_dir, modeling_for):
    rng = np.random.default_rng(1)
    ids, types, mask = random_batch(rng, 30000, batch=2, length=10)
    outs = {}
    for name in BACKENDS:
        model = modeling_for(name).TinyBertForSequenceClassification.from_pretrained(
            minilm_dir, num_labels=3, fit_size=768, verbose=False).eval()
        if name == BACKENDS[0]:
            weights = model.numpy_state_dict()
        else:
            model.load_numpy_state_dict(weights)  # the same random head on both
        with backend.framework(name).no_grad():
            logits, atts, reps = model(*to_backend(name, ids, types, mask), is_student=True)
        outs[name] = [logits.numpy()] + [r.numpy() for r in reps] + [a.numpy() for a in atts]
    a, b = outs.values()
    valid = mask.astype(bool)
    assert np.abs(a[0] - b[0]).max() < 1e-4
    for x, y in zip(a[1:8], b[1:8]):
        assert x.shape == (2, 10, 768)
        assert np.abs(x[valid] - y[valid]).max() < 1e-4
    for x, y in zip(a[8:], b[8:]):
        assert np.abs(x - y).max() < 1e-3  # includes the -10000 of masked keys


@pytest.mark.parametrize("name", BACKENDS)
def test_classifier_contract_and_save_load_round_trip(name, modeling_for, tmp_path):
    m = modeling_for(name)
    flow = backend.framework(name)
    cfg = m.BertConfig.from_dict(tiny_config_dict())
    model = m.TinyBertForSequenceClassification(cfg, num_labels=2, fit_size=48).eval()
    ids, types, mask = random_batch(np.random.default_rng(2), cfg.vocab_size)
    inputs = to_backend(name, ids, types, mask)
    with flow.no_grad():
        logits, atts, reps = model(*inputs, is_student=False)
        _, _, student_reps = model(*inputs, is_student=True)
    assert tuple(logits.shape) == (3, 2)
    assert len(atts) == 2 and tuple(atts[0].shape) == (3, 4, 9, 9)
    assert len(reps) == 3 and tuple(reps[0].shape) == (3, 9, 32)
    assert len(student_reps) == 3 and tuple(student_reps[0].shape) == (3, 9, 48)
    w, bias = model.fit_dense.weight.detach().numpy(), model.fit_dense.bias.detach().numpy()
    assert np.allclose(student_reps[2].numpy(), reps[2].numpy() @ w.T + bias, atol=1e-5)

    model.save_pretrained(str(tmp_path / "saved"))
    assert sorted(os.listdir(tmp_path)) == ["saved"]  # no temporary directory left beside it
    assert set(os.listdir(tmp_path / "saved")) == {"config.json", "model.safetensors"}
    saved_cfg = json.load(open(tmp_path / "saved" / "config.json"))
    assert saved_cfg["num_labels"] == 2 and saved_cfg["hidden_size"] == 32
    again = m.TinyBertForSequenceClassification.from_pretrained(str(tmp_path / "saved"), fit_size=48,
                                                                 verbose=False).eval()
    assert again.num_labels == 2
    before, after = model.numpy_state_dict(), again.numpy_state_dict()
    assert before.keys() == after.keys()
    assert all(np.array_equal(before[k], after[k]) for k in before)
    with flow.no_grad():
        assert np.array_equal(again(*inputs)[0].numpy(), logits.numpy())


def test_saved_under_one_backend_loads_under_the_other(modeling_for, tmp_path):
    src, dst = BACKENDS
    m_src, m_dst = modeling_for(src), modeling_for(dst)
    model = m_src.BertForMaskedLM(m_src.BertConfig.from_dict(tiny_config_dict())).eval()
    model.save_pretrained(str(tmp_path / "m"))
    loaded = m_dst.BertForMaskedLM.from_pretrained(str(tmp_path / "m"), verbose=False).eval()
    a, b = model.numpy_state_dict(), loaded.numpy_state_dict()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    ids, types, mask = random_batch(np.random.default_rng(3), 120)
    with backend.framework(src).no_grad():
        la = model(*to_backend(src, ids, types, mask)).numpy()
    with backend.framework(dst).no_grad():
        lb = loaded(*to_backend(dst, ids, types, mask)).numpy()
    assert la.shape == (3, 9, 120)
    assert np.abs(la - lb).max() < 1e-4


def test_masked_lm_matches_transformers_and_tied_decoder(modeling_for, tmp_path):
    m = modeling_for("torch")
    cfg = m.BertConfig.from_dict(tiny_config_dict())
    model = m.BertForMaskedLM(cfg).eval()
    # transformers loads our directory: names and tying are what it expects
    model.save_pretrained(str(tmp_path / "mlm"))
    hf = transformers.BertForMaskedLM.from_pretrained(str(tmp_path / "mlm"), attn_implementation="eager").eval()
    ids, types, mask = random_batch(np.random.default_rng(4), cfg.vocab_size)
    t = [torch.tensor(a) for a in (ids, types, mask)]
    with torch.no_grad():
        ours = model(*t)
        ref = hf(input_ids=t[0], token_type_ids=t[1], attention_mask=t[2]).logits
        rows, cols = torch.tensor([0, 2, 2]), torch.tensor([1, 0, 3])
        picked = model(*t, masked_positions=(rows, cols))
    valid = mask.astype(bool)
    assert np.abs(ours.numpy()[valid] - ref.numpy()[valid]).max() < 1e-4
    assert np.abs(picked.numpy() - ours.numpy()[[0, 2, 2], [1, 0, 3]]).max() < 1e-5
    assert model.cls.predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight


def test_parameter_counts_of_bert_base_and_tinybert_match_transformers(modeling_for):
    m = modeling_for("torch")
    for cfg_dict in (dict(), dict(hidden_size=312, num_hidden_layers=4, intermediate_size=1200)):
        ours = m.BertModel(m.BertConfig.from_dict(cfg_dict))
        hf = transformers.BertModel(transformers.BertConfig(**cfg_dict))
        assert m.count_parameters(ours) == sum(p.numel() for p in hf.parameters())
    base = m.TinyBertForSequenceClassification(m.BertConfig(), num_labels=2)
    tiny = m.TinyBertForSequenceClassification(
        m.BertConfig(hidden_size=312, num_hidden_layers=4, intermediate_size=1200), num_labels=2)
    # the paper's 110M -> 14.5M (fit_dense only serves distillation and is not counted)
    assert round(m.count_parameters(base) / 1e6) == 109
    assert round(m.count_parameters(tiny) / 1e6, 1) == 14.4


def test_config_reads_google_bert_config_and_keeps_extra_keys(modeling_for, tmp_path):
    m = modeling_for("torch")
    google = {"attention_probs_dropout_prob": 0.1, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
              "hidden_size": 312, "initializer_range": 0.02, "intermediate_size": 1200,
              "max_position_embeddings": 512, "num_attention_heads": 12, "num_hidden_layers": 4,
              "type_vocab_size": 2, "vocab_size": 30522}
    (tmp_path / "bert_config.json").write_text(json.dumps(google))
    cfg = m.BertConfig.from_json_file(str(tmp_path / "bert_config.json"))
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.intermediate_size) == (312, 4, 1200)
    assert cfg.layer_norm_eps == 1e-12 and cfg.head_size == 26
    cfg2 = m.BertConfig.from_dict({**google, "id2label": {"0": "negative", "1": "positive"}})
    cfg2.save(str(tmp_path))
    back = json.load(open(tmp_path / "config.json"))
    assert back["id2label"] == {"0": "negative", "1": "positive"} and back["hidden_size"] == 312


@pytest.mark.parametrize("act", ["gelu_new", "relu"])
def test_other_activations_match_transformers(act, modeling_for, tmp_path):
    m = modeling_for("torch")
    model = m.BertModel(m.BertConfig.from_dict(tiny_config_dict(hidden_act=act))).eval()
    model.save_pretrained(str(tmp_path / "m"))
    ids, types, mask = random_batch(np.random.default_rng(5), 120)
    ref_hidden, _, _ = hf_reference(transformers.BertModel.from_pretrained(
        str(tmp_path / "m"), attn_implementation="eager"), ids, types, mask)
    with torch.no_grad():
        ours = model(*[torch.tensor(a) for a in (ids, types, mask)]).hidden_states[-1].numpy()
    valid = mask.astype(bool)
    assert np.abs(ours[valid] - ref_hidden[-1][valid]).max() < 1e-4


# -- bad input ----------------------------------------------------------------------------------
def test_missing_config_and_missing_weights_name_the_file_and_directory(modeling_for, tmp_path):
    m = modeling_for("torch")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty: no config\.json"):
        m.BertModel.from_pretrained(str(empty))
    (empty / "config.json").write_text(json.dumps(tiny_config_dict()))
    with pytest.raises(FileNotFoundError, match=r"empty: no weights found; expected one of: .*model\.safetensors"):
        m.BertModel.from_pretrained(str(empty))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        m.BertModel.from_pretrained(str(tmp_path / "nowhere"))


def test_wrong_shape_names_parameter_and_shapes(modeling_for, tmp_path):
    m = modeling_for("torch")
    m.BertModel(m.BertConfig.from_dict(tiny_config_dict())).save_pretrained(str(tmp_path / "m"))
    (tmp_path / "m" / "config.json").write_text(json.dumps(tiny_config_dict(intermediate_size=80)))
    with pytest.raises(ValueError, match=r"bert\.encoder\.layer\.0\.intermediate\.dense\.weight has shape "
                                         r"\(64, 32\), but the config needs \(80, 32\)"):
        m.BertModel.from_pretrained(str(tmp_path / "m"))


def test_missing_tensor_is_listed(modeling_for, tmp_path):
    m = modeling_for("torch")
    model = m.BertModel(m.BertConfig.from_dict(tiny_config_dict()))
    state = model.numpy_state_dict()
    del state["bert.pooler.dense.bias"]
    with pytest.raises(ValueError, match=r"missing 1 required tensor\(s\): bert\.pooler\.dense\.bias"):
        model.load_numpy_state_dict(state)


def test_garbled_safetensors_names_the_file(modeling_for, tmp_path):
    m = modeling_for("torch")
    m.BertModel(m.BertConfig.from_dict(tiny_config_dict())).save_pretrained(str(tmp_path / "m"))
    path = tmp_path / "m" / "model.safetensors"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"model\.safetensors: not a readable safetensors file"):
        m.BertModel.from_pretrained(str(tmp_path / "m"))


def test_unknown_backend_lists_valid_ones(monkeypatch):
    # a script imported by an earlier test may have chosen its backend for the process (backend.use)
    monkeypatch.setattr(backend, "_chosen", None)
    with pytest.raises(backend.BackendError, match="valid backends are oneflow, torch"):
        backend.use("jax")
    monkeypatch.setenv("BACKEND", "mxnet")
    monkeypatch.setattr("sys.argv", ["x"])
    with pytest.raises(backend.BackendError, match="'mxnet'"):
        backend.name()
    monkeypatch.setattr("sys.argv", ["x", "--backend", "torch"])
    assert backend.name() == "torch"


def test_pytorch_bin_with_gamma_beta_names_loads(modeling_for, tmp_path):
    """Old pytorch-pretrained-bert files: pytorch_model.bin, LayerNorm.gamma/beta, no 'bert.' prefix."""
    m = modeling_for("torch")
    model = m.BertModel(m.BertConfig.from_dict(tiny_config_dict()))
    state = {k[len("bert."):].replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"):
             torch.tensor(v) for k, v in model.numpy_state_dict().items()}
    d = tmp_path / "old"
    d.mkdir()
    torch.save(state, d / "pytorch_model.bin")
    (d / "config.json").write_text(json.dumps(tiny_config_dict()))
    loaded = m.BertModel.from_pretrained(str(d), verbose=False)
    a, b = model.numpy_state_dict(), loaded.numpy_state_dict()
    assert all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", BACKENDS)
def test_inference_without_scores_gives_the_same_outputs(name, modeling_for):
    """output_attentions=False (fused attention where the framework has it) changes speed, not results."""
    m = modeling_for(name)
    flow = backend.framework(name)
    model = m.TinyBertForSequenceClassification(m.BertConfig.from_dict(tiny_config_dict()), num_labels=3).eval()
    inputs = to_backend(name, *random_batch(np.random.default_rng(6), 120))
    with flow.no_grad():
        full = model(*inputs)
        fast = model(*inputs, output_attentions=False)
    assert fast[1] == [None, None]
    assert np.abs(full[0].numpy() - fast[0].numpy()).max() < 1e-5
    valid = inputs[2].numpy().astype(bool)
    assert np.abs(full[2][-1].numpy()[valid] - fast[2][-1].numpy()[valid]).max() < 1e-5


def test_load_tokenizer_from_vocab_txt_matches_the_models_own_tokenizer(minilm_dir, tmp_path):
    import shutil
    import checkpoint
    only_vocab = tmp_path / "m"
    only_vocab.mkdir()
    shutil.copy(os.path.join(minilm_dir, "vocab.txt"), only_vocab / "vocab.txt")
    ours = checkpoint.load_tokenizer(str(only_vocab))  # no tokenizer.json, no tokenizer_config.json
    ref = transformers.AutoTokenizer.from_pretrained(minilm_dir)
    texts = ["Hello World, TinyBERT!", "it 's a charming and often affecting journey . "]
    assert ours(texts, ["A second one.", "unbelievably"])["input_ids"] == \
        ref(texts, ["A second one.", "unbelievably"])["input_ids"]
    assert ours.tokenize("Hello") == ["hello"]
    (only_vocab / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\nHello\nhello\n")
    assert checkpoint.load_tokenizer(str(only_vocab)).tokenize("Hello") == ["Hello"]  # cased vocabulary
    with pytest.raises(FileNotFoundError, match=r"no vocab\.txt"):
        checkpoint.load_tokenizer(str(tmp_path))


@pytest.mark.parametrize("name", BACKENDS)
def test_attention_scores_and_their_gradients_equal_the_plain_product(name):
    """backend.attention_scores (OneFlow: batch_matmul reading k transposed, the scale applied inside) gives
    q @ k^T * scale and its gradients, on the permuted views the model passes it, as float64 numpy does."""
    flow = backend.framework(name)
    rng = np.random.default_rng(11)
    b, heads, length, size, scale = 3, 4, 7, 5, 0.37
    q_np, k_np = (rng.standard_normal((b, length, heads * size)).astype(np.float32) for _ in range(2))
    upstream = rng.standard_normal((b, heads, length, length)).astype(np.float32)
    q_leaf, k_leaf = (flow.tensor(a, requires_grad=True) for a in (q_np, k_np))
    q, k = (t.reshape(b, length, heads, size).permute(0, 2, 1, 3) for t in (q_leaf, k_leaf))
    scores = backend.attention_scores(flow)(q, k, scale)
    (scores * flow.tensor(upstream)).sum().backward()

    q64, k64 = (a.astype(np.float64).reshape(b, length, heads, size).transpose(0, 2, 1, 3) for a in (q_np, k_np))
    want = q64 @ k64.transpose(0, 1, 3, 2) * scale
    assert scores.shape == (b, heads, length, length)
    assert np.abs(scores.detach().numpy() - want).max() < 1e-5
    grad_q = (upstream @ k64 * scale).transpose(0, 2, 1, 3).reshape(b, length, heads * size)
    grad_k = (upstream.transpose(0, 1, 3, 2) @ q64 * scale).transpose(0, 2, 1, 3).reshape(b, length, heads * size)
    assert np.abs(q_leaf.grad.numpy() - grad_q).max() < 1e-5
    assert np.abs(k_leaf.grad.numpy() - grad_k).max() < 1e-5
