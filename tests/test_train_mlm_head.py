"""experiments/train_mlm_head.py: BERT's masking, and a head trained on a frozen encoder that predicts
held-out words it could not before, written as a masked LM data augmentation loads."""
import importlib.util
import json
import os

import numpy as np
import pytest

import backend
from conftest import ROOT, tiny_config_dict

if backend.name() != "torch":
    pytest.skip("train_mlm_head.py runs on PyTorch", allow_module_level=True)

import checkpoint  # noqa: E402
import data_augmentation as da  # noqa: E402
import modeling  # noqa: E402


def load_script():
    spec = importlib.util.spec_from_file_location("train_mlm_head", os.path.join(ROOT, "experiments", "train_mlm_head.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_masking_is_berts():
    head = load_script()
    rng = np.random.default_rng(0)
    rows = [[101] + list(rng.integers(2000, 3000, 38)) + [102] for _ in range(500)]
    masked, targets = head.mask_rows(rows, np.random.default_rng(1), np.arange(999, 30522), 103)
    assert len(targets) == 500 * round(38 * 0.15)
    assert set(targets[:, 1]) <= set(range(1, 39))  # never [CLS] or [SEP]
    assert all(rows[r][p] == gold for r, p, gold in targets)
    now = np.array([masked[r][p] for r, p, _ in targets])
    assert 0.76 < np.mean(now == 103) < 0.84
    kept = np.mean(now == targets[:, 2])
    assert 0.07 < kept < 0.13  # 10% kept (a random piece rarely draws the same id)
    chosen = np.zeros((500, 40), bool)
    chosen[targets[:, 0], targets[:, 1]] = True
    assert (np.array(masked)[~chosen] == np.array(rows)[~chosen]).all()


def test_trained_head_predicts_held_out_words(tmp_path, capsys):
    head = load_script()
    # a language a small random encoder can learn: a paragraph repeats one of 12 words, so a masked
    # word is its neighbours'
    words = "red green blue river stone cloud music paper garden winter silver forest".split()
    with open(tmp_path / "wiki.train.raw", "w") as f:
        f.write(" = A heading = \n")
        for i in range(240):
            f.write(" " + " ".join([words[i % 12]] * 40) + " . \n")
    vocab = ["[PAD]", "[unused0]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "the"] + words
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    config = modeling.BertConfig.from_dict(tiny_config_dict(vocab_size=len(vocab), hidden_size=48))
    base = str(tmp_path / "encoder")
    modeling.BertModel(config).save_pretrained(base, vocab_file=str(tmp_path / "vocab.txt"))
    out = str(tmp_path / "mlm")
    head.main(head.parse_args(["--model", base, "--out", out, "--corpus", str(tmp_path / "wiki.train.raw"),
                               "--heldout", "20", "--epochs", "15", "--unfreeze_layers", "1", "--lr", "1e-2",
                               "--layer_lr", "3e-3", "--dtype", "fp32", "--threads", "1"]))
    printed = capsys.readouterr().out
    results = json.load(open(os.path.join(out, "mlm_head_results.json")))
    before, after = results["untrained"], results["trained"]
    assert results["train_paragraphs"] == 220 and results["heldout_paragraphs"] == 20
    assert after["top1"] > max(0.8, before["top1"] + 0.4) and after["top15"] >= after["top1"]
    assert after["loss"] < before["loss"] - 0.5
    assert f"top-1 {after['top1']:.1%}, top-15 {after['top15']:.1%}" in printed
    # what data augmentation loads predicts the same words: the weights were saved as trained
    model = da.load_masked_lm(out, "cpu")
    tokenizer = checkpoint.load_tokenizer(out)
    text = " ".join(["music"] * 20)
    ids = tokenizer(text)["input_ids"]
    position = ids.index(tokenizer.convert_tokens_to_ids("music"))
    ids[position] = tokenizer.mask_token_id
    import torch
    with torch.no_grad():
        logits = model(torch.tensor([ids]))[0, position]
    assert "music" in tokenizer.convert_ids_to_tokens(logits.topk(3).indices.tolist())
    assert set(head.replacement_ids(tokenizer)) == set(range(6, len(vocab)))
