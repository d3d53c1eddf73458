"""pregenerate_training_data.py and general_distill.py: BERT's instance rules on a corpus whose every
token names its document, tokenization identical to the tokenizer's, determinism, crash safety, and
general distillation end to end on both backends (losses, resume, the saved student)."""
import csv
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import backend
import checkpoint
import pregenerate_training_data as pregen
from conftest import BACKENDS, ROOT, shared_path, tiny_config_dict

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "."]
DOCS, WORDS = 8, 8
BATCH = 4  # general distillation's batch size in the tests


# ----------------------------------------------------------------------------------------------
# A corpus where the token "d3w5" belongs to document 3 ("d3w5x" is d3w5 ##x, a two-piece word)
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    rng = np.random.default_rng(0)
    docs = []
    for d in range(DOCS):
        sentences = []
        for _ in range(14):
            words = [f"d{d}w{rng.integers(WORDS)}" + ("x" if rng.random() < 0.2 else "")
                     for _ in range(rng.integers(3, 10))]
            sentences.append(" ".join(words))
        docs.append(sentences)
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n\n".join("\n".join(s) for s in docs) + "\n")
    return str(path), docs


@pytest.fixture(scope="module")
def vocab_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("vocab")
    words = [f"d{d}w{w}" for d in range(DOCS) for w in range(WORDS)]
    (directory / "vocab.txt").write_text("\n".join(SPECIALS + words + ["##x"]) + "\n")
    return str(directory)


def pregenerate(corpus_path, model_dir, out, *extra):
    pregen.main(["--train_corpus", corpus_path, "--bert_model", model_dir, "--output_dir", str(out),
                 "--max_seq_len", "32", "--seed", "7", *extra])


def read_epoch(out, epoch=0):
    with open(os.path.join(out, f"epoch_{epoch}.json")) as f:
        lines = f.read().splitlines()
    with open(os.path.join(out, f"epoch_{epoch}_metrics.json")) as f:
        return lines, json.load(f)


def docs_of(tokens):
    return {int(t[1]) for t in tokens if re.fullmatch(r"d\dw\d", t)}


def pieces(sentence):
    return [p for word in sentence.split() for p in ([word[:-1], "##x"] if word.endswith("x") else [word])]


def test_instances_follow_bert_rules(corpus, vocab_dir, tmp_path):
    corpus_path, docs = corpus
    pregenerate(corpus_path, vocab_dir, tmp_path, "--num_workers", "1", "--epochs_to_generate", "2",
                "--masked_lm_prob", "0.15", "--short_seq_prob", "0.2")
    streams = [" " + " ".join(p for s in doc for p in pieces(s)) + " " for doc in docs]
    lines, metrics = read_epoch(tmp_path)
    assert metrics == {"num_training_examples": len(lines), "max_seq_len": 32}
    assert len(lines) > 40
    random_next, masked_kinds = [], {"mask": 0, "same": 0, "other": 0}
    for line in lines:
        assert json.dumps(json.loads(line)) == line  # the layout json.dumps writes
        x = json.loads(line)
        tokens, seg = x["tokens"], x["segment_ids"]
        sep = tokens.index("[SEP]")
        assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]" and tokens.count("[SEP]") == 2
        assert len(tokens) <= 32 and seg == [0] * (sep + 1) + [1] * (len(tokens) - sep - 1)
        positions, labels = x["masked_lm_positions"], x["masked_lm_labels"]
        assert positions == sorted(set(positions)) and not {0, sep, len(tokens) - 1} & set(positions)
        assert len(positions) == min(20, max(1, round(len(tokens) * 0.15)))
        original = list(tokens)
        for p, label in zip(positions, labels):
            original[p] = label
            kind = "mask" if tokens[p] == "[MASK]" else "same" if tokens[p] == label else "other"
            masked_kinds[kind] += 1
        a, b = original[1:sep], original[sep + 1:-1]
        (doc_a,), (doc_b,) = docs_of(a), docs_of(b)
        # A and B are each a contiguous run of a document (truncation only trims their ends)
        assert " " + " ".join(a) + " " in streams[doc_a] and " " + " ".join(b) + " " in streams[doc_b]
        assert (doc_a != doc_b) == x["is_random_next"]
        random_next.append(x["is_random_next"])
    assert 0.3 < np.mean(random_next) < 0.9  # half of the multi-sentence chunks, plus all single ones
    total = sum(masked_kinds.values())
    assert 0.7 < masked_kinds["mask"] / total < 0.9 and masked_kinds["other"] > 0 and masked_kinds["same"] > 0
    assert read_epoch(tmp_path, 1)[0] != lines  # each epoch draws anew


def test_whole_word_masking_masks_every_piece(corpus, vocab_dir, tmp_path):
    pregenerate(corpus[0], vocab_dir, tmp_path, "--num_workers", "1", "--epochs_to_generate", "1",
                "--masked_lm_prob", "0.3", "--do_whole_word_mask")
    whole_words = 0
    for line in read_epoch(tmp_path)[0]:
        x = json.loads(line)
        original = list(x["tokens"])
        for p, label in zip(x["masked_lm_positions"], x["masked_lm_labels"]):
            original[p] = label
        masked = set(x["masked_lm_positions"])
        for p in masked:  # a masked word's "##x" is masked with it, and the other way round
            if p + 1 < len(original) and original[p + 1] == "##x":
                assert p + 1 in masked
                whole_words += 1
            if original[p] == "##x":  # unless A or B starts with the rest of a word
                assert p - 1 in masked or original[p - 1] in ("[CLS]", "[SEP]")
        assert len(masked) <= min(20, max(1, round(len(original) * 0.3)))
    assert whole_words > 10


def test_output_is_seeded_and_the_same_for_any_number_of_workers(corpus, vocab_dir, tmp_path):
    pregenerate(corpus[0], vocab_dir, tmp_path / "one", "--num_workers", "1", "--epochs_to_generate", "1")
    pregenerate(corpus[0], vocab_dir, tmp_path / "two", "--num_workers", "2", "--epochs_to_generate", "1")
    pregen.main(["--train_corpus", corpus[0], "--bert_model", vocab_dir, "--output_dir", str(tmp_path / "seed"),
                 "--max_seq_len", "32", "--seed", "8", "--num_workers", "1", "--epochs_to_generate", "1"])
    one = (tmp_path / "one" / "epoch_0.json").read_bytes()
    assert one == (tmp_path / "two" / "epoch_0.json").read_bytes()
    assert one != (tmp_path / "seed" / "epoch_0.json").read_bytes()
    assert sorted(os.listdir(tmp_path / "two")) == ["epoch_0.json", "epoch_0_metrics.json"]  # no workspace left


def test_estimate_writes_nothing_and_matches_the_run_it_foresees(corpus, vocab_dir, minilm_dir, tmp_path, monkeypatch):
    """--estimate on a corpus smaller than its sample foresees the exact instances and bytes of epoch 0;
    on a real corpus four times its sample, within a quarter of them; and writes nothing."""
    est = pregen.main(["--train_corpus", corpus[0], "--bert_model", vocab_dir, "--output_dir", str(tmp_path / "e"),
                       "--max_seq_len", "32", "--seed", "7", "--num_workers", "1", "--estimate"])
    assert os.listdir(tmp_path / "e") == []
    pregenerate(corpus[0], vocab_dir, tmp_path / "run", "--num_workers", "1", "--epochs_to_generate", "1")
    lines, metrics = read_epoch(tmp_path / "run")
    assert est["instances_per_epoch"] == metrics["num_training_examples"] == len(lines)
    assert est["bytes_per_epoch"] == os.path.getsize(tmp_path / "run" / "epoch_0.json")
    wiki = shared_path("corpus", "wikitext-2-raw", "wiki.valid.raw")
    monkeypatch.setattr(pregen, "ESTIMATE_BYTES", os.path.getsize(wiki) // 4)
    args = ["--train_corpus", wiki, "--corpus_format", "wikitext", "--bert_model", minilm_dir, "--num_workers", "1",
            "--epochs_to_generate", "1"]
    est = pregen.main(args + ["--output_dir", str(tmp_path / "we"), "--estimate"])
    pregen.main(args + ["--output_dir", str(tmp_path / "wiki")])
    real = read_epoch(tmp_path / "wiki")[1]["num_training_examples"]
    assert 0.75 < est["instances_per_epoch"] / real < 1.25, (est, real)
    assert 0.75 < est["bytes_per_epoch"] / os.path.getsize(tmp_path / "wiki" / "epoch_0.json") < 1.25


def test_tokenization_equals_the_tokenizer(minilm_dir, tmp_path, monkeypatch):
    """Space-separated chunks, tokenized once each, give the tokenizer's ids for whole sentences."""
    with open(shared_path("corpus", "wikitext-2-raw", "wiki.valid.raw"), encoding="utf-8") as f:
        sentences = [line.strip() for _, line in zip(range(400), f) if line.strip()]
    sentences += ["two  spaces\tand a tab", "Café naïve façade", "東京タワー is tall", "the [MASK] token",
                  "bell\x07 and\u200bzero width", "non\u00a0breaking", "a \u0301b", "x" * 150 + " long",
                  "emoji 🙂 here", "ΣΊΣΥΦΟΣ", "  leading and trailing  "]
    pregen.prepare_workspace(minilm_dir, None, str(tmp_path))
    tokenizer = checkpoint.load_tokenizer(minilm_dir)
    want = [tokenizer(s, add_special_tokens=False)["input_ids"] for s in sentences]
    monkeypatch.setattr(pregen, "_worker", {})
    monkeypatch.setattr(pregen, "CHUNK_CACHE_SIZE", 50)  # cleared again and again on the way
    got = []
    for i in range(0, len(sentences), 7):
        ids, lengths, ends = pregen.tokenize_documents((str(tmp_path), sentences[i:i + 7], [3]))
        assert ends == [3] and lengths.sum() == len(ids)
        bounds = [0] + np.cumsum(lengths).tolist()
        got += [ids[start:stop].tolist() for start, stop in zip(bounds, bounds[1:])]
    assert got == want
    assert len(pregen._worker["cache"]) <= 50


def test_wikitext_titles_start_documents_and_paragraphs_split_into_sentences(tmp_path):
    with open(shared_path("corpus", "wikitext-2-raw", "wiki.valid.raw"), encoding="utf-8") as f:
        lines = f.readlines()[:400]
    (tmp_path / "wiki.raw").write_text("".join(lines), encoding="utf-8")
    docs = list(pregen.read_documents([str(tmp_path / "wiki.raw")], "wikitext"))
    titles = [line for line in lines if re.fullmatch(r" = [^=].* = \n", line)]
    assert len(docs) == len(titles) >= 2
    paragraphs = [line.strip() for line in lines if line.strip() and not line.strip().startswith("= ")]
    sentences = [s for doc in docs for s in doc]
    assert " ".join(sentences) == " ".join(paragraphs)  # nothing lost, headings left out
    assert len(sentences) > 3 * len(paragraphs)
    assert not any(re.search(r" [.?!] [A-Z]", s) for s in sentences)  # no sentence end left inside
    assert sum(s.endswith(" .") for s in sentences) > 0.8 * len(sentences)


def test_an_interrupted_run_leaves_no_epoch_file(corpus, vocab_dir, tmp_path, monkeypatch):
    pregenerate(corpus[0], vocab_dir, tmp_path, "--num_workers", "1", "--epochs_to_generate", "1")
    old = (tmp_path / "epoch_0.json").read_bytes()
    calls = []

    def crash_on_second_task(task, real=pregen.instances_json):
        calls.append(task)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(task)
    monkeypatch.setattr(pregen, "instances_json", crash_on_second_task)
    monkeypatch.setattr(pregen, "TOKENS_PER_TASK", 100)
    with pytest.raises(KeyboardInterrupt):
        pregenerate(corpus[0], vocab_dir, tmp_path, "--num_workers", "1", "--epochs_to_generate", "1",
                    "--seed", "8")
    # the old epoch stays whole but, without its metrics, no longer counts as this run's data
    assert sorted(os.listdir(tmp_path)) == ["epoch_0.json"]
    assert (tmp_path / "epoch_0.json").read_bytes() == old


def test_bad_corpus_is_named(vocab_dir, tmp_path):
    one_doc = tmp_path / "one.txt"
    one_doc.write_text("d0w1 d0w2\nd0w3\n")
    with pytest.raises(ValueError, match=r"one\.txt: 1 document\(s\) read as lines; random next sentences need at "
                                         r"least two\. .* or pass --corpus_format wikitext \(CORPUS_FORMAT=wikitext\)"):
        pregenerate(str(one_doc), vocab_dir, tmp_path / "out", "--num_workers", "1")
    # read as WikiText (no ' = Title = ' line: one document), the way out is the other format
    with pytest.raises(ValueError, match=r"read as wikitext; .* or pass --corpus_format lines \(CORPUS_FORMAT=lines\) "
                                         r"if it is not WikiText$"):
        pregenerate(str(one_doc), vocab_dir, tmp_path / "out", "--num_workers", "1", "--corpus_format", "wikitext")
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("d0w1\n\nd1w1 caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.txt:3: not UTF-8"):
        pregenerate(str(latin1), vocab_dir, tmp_path / "out", "--num_workers", "1")
    with pytest.raises(FileNotFoundError, match="no-such-model"):
        pregenerate(str(latin1), "no-such-model", tmp_path / "out", "--num_workers", "1")


# ----------------------------------------------------------------------------------------------
# General distillation
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def distill_setup(corpus, vocab_dir, modeling_for, tmp_path_factory):
    """Pregenerated data, a tiny random teacher (2 layers, 32 wide) and a 1-layer, 16-wide student."""
    m = modeling_for("torch")
    root = tmp_path_factory.mktemp("distill")
    vocab_size = len(open(os.path.join(vocab_dir, "vocab.txt")).read().split())
    backend.framework("torch").manual_seed(0)
    # weights 10x wider than BERT's initialisation: attention scores far from 0, worth distilling
    teacher = m.BertModel(m.BertConfig.from_dict(tiny_config_dict(vocab_size=vocab_size, initializer_range=0.2)))
    teacher.save_pretrained(str(root / "teacher"), vocab_file=os.path.join(vocab_dir, "vocab.txt"))
    student = m.TinyBertForPreTraining(m.BertConfig.from_dict(
        tiny_config_dict(vocab_size=vocab_size, hidden_size=16, num_hidden_layers=1, intermediate_size=32)),
        fit_size=32)
    student.save_pretrained(str(root / "student"), vocab_file=os.path.join(vocab_dir, "vocab.txt"))
    pregenerate(corpus[0], str(root / "teacher"), root / "data", "--num_workers", "1", "--epochs_to_generate", "2")
    return root


def general_distill(root, out, backend_name, *extra):
    command = [sys.executable, os.path.join(ROOT, "general_distill.py"), "--pregenerated_data", str(root / "data"),
               "--teacher_model", str(root / "teacher"), "--student_model", str(root / "student"),
               "--continue_train", "--output_dir", str(out), "--backend", backend_name, "--num_train_epochs", "3",
               "--train_batch_size", str(BATCH), "--learning_rate", "1e-2", "--logging_steps", "1",
               "--save_steps", "10", *extra]
    # one thread: models this small gain nothing from more, and lose much on a busy machine
    done = subprocess.run(command, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    with open(out / "train_log.csv") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)], done.stdout


@pytest.fixture(scope="module")
def distilled(distill_setup):
    return {name: general_distill(distill_setup, distill_setup / f"out_{name}", name)[0] for name in BACKENDS}


def first_batch_losses(root):
    """att_loss, rep_loss of the untrained student on the run's first batch, computed here."""
    m = backend.import_for("modeling", "torch")
    d = backend.import_for("distillation", "torch")
    gd = backend.import_for("general_distill", "torch")
    torch = backend.framework("torch")
    epoch = gd.PregeneratedEpoch(str(root / "data" / "epoch_0.json"),
                                 json.load(open(root / "data" / "epoch_0_metrics.json")),
                                 gd.read_vocab(str(root / "teacher")))
    b = epoch.batches(BATCH, seed=42, device="cpu").make(0)
    batch = [b["input_ids"], b["token_type_ids"], b["attention_mask"]]
    teacher = m.BertModel.from_pretrained(str(root / "teacher"), verbose=False).eval()
    student = m.TinyBertForPreTraining.from_pretrained(str(root / "student"), fit_size=32, verbose=False)
    with torch.no_grad():
        t, (atts, reps) = teacher(*batch), student(*batch)
        return float(d.att_loss(atts, t.attentions, [2], batch[2])), float(d.rep_loss(reps, t.hidden_states, [2],
                                                                                       batch[2]))


def test_general_distillation_lowers_both_losses_on_both_backends(distill_setup, distilled):
    metrics = [json.load(open(distill_setup / "data" / f"epoch_{e}_metrics.json")) for e in (0, 1, 0)]
    steps = sum(-(-x["num_training_examples"] // BATCH) for x in metrics)  # three epochs, the third reuses epoch_0
    att0, rep0 = first_batch_losses(distill_setup)
    for name, rows in distilled.items():
        assert [r["step"] for r in rows] == list(range(1, steps + 1)), name
        assert rows[-1]["epoch"] == pytest.approx(3.0)
        assert rows[0]["att_loss"] == pytest.approx(att0, rel=1e-4)
        assert rows[0]["rep_loss"] == pytest.approx(rep0, rel=1e-4)
        for term in ("att_loss", "rep_loss"):
            assert np.mean([r[term] for r in rows[-3:]]) < 0.7 * rows[0][term], (name, term)
        assert rows[-1]["lr"] < rows[steps // 4]["lr"]  # the linear schedule decays
        assert os.path.isfile(distill_setup / f"out_{name}" / "curves.png")
    # the same start, data and order: both backends follow the same path
    for a, b in zip(distilled["torch"], distilled["oneflow"]):
        assert a["loss"] == pytest.approx(b["loss"], rel=2e-3)


def test_the_student_is_a_model_directory_task_distillation_loads(distill_setup, distilled):
    import checkpoint
    m = backend.import_for("modeling", "torch")
    out = distill_setup / "out_torch"
    assert (out / "vocab.txt").read_text() == (distill_setup / "teacher" / "vocab.txt").read_text()
    saved = checkpoint.load_state_dict(str(out))
    start = checkpoint.load_state_dict(str(distill_setup / "student"))
    model = m.TinyBertForSequenceClassification.from_pretrained(str(out), num_labels=2, fit_size=32, verbose=False)
    assert model.config.num_hidden_layers == 1 and model.config.hidden_size == 16
    own = model.numpy_state_dict()
    for name in ("fit_dense.weight", "bert.encoder.layer.0.attention.self.query.weight",
                 "bert.embeddings.word_embeddings.weight"):
        assert np.array_equal(own[name], saved[name])
        assert np.abs(saved[name] - start[name]).max() > 1e-3  # trained, not the starting weights
    with open(out / "resume" / "state.json") as f:
        assert json.load(f)["step"] == len(distilled["torch"])


def test_resume_continues_the_same_run(distill_setup, distilled):
    import checkpoint
    out = distill_setup / "resumed"
    first, stdout = general_distill(distill_setup, out, "torch", "--max_steps", "5")
    assert len(first) == 5 and "step 5 of" in stdout
    rows, stdout = general_distill(distill_setup, out, "torch", "--resume")
    assert "resuming at epoch 0, batch 5, step 5" in stdout
    whole = distilled["torch"]
    assert [r["step"] for r in rows] == [r["step"] for r in whole]
    assert [r["loss"] for r in rows] == pytest.approx([r["loss"] for r in whole], rel=1e-5)
    a, b = checkpoint.load_state_dict(str(out)), checkpoint.load_state_dict(str(distill_setup / "out_torch"))
    assert max(float(np.abs(a[k] - b[k]).max()) for k in a) < 1e-5


def test_teacher_saved_as_a_masked_lm_without_pooler_is_taken(distill_setup, tmp_path):
    """transformers' BertForMaskedLM saves no pooler, and an LM head general distillation has no use for."""
    import checkpoint
    gd = backend.import_for("general_distill", "torch")
    state = checkpoint.load_state_dict(str(distill_setup / "teacher"))
    state = {k: v for k, v in state.items() if not k.startswith("bert.pooler.")}
    state["cls.predictions.bias"] = np.zeros(state["bert.embeddings.word_embeddings.weight"].shape[0], np.float32)
    masked_lm = tmp_path / "bert-mlm"
    masked_lm.mkdir()
    for name in ("config.json", "vocab.txt"):
        (masked_lm / name).write_bytes((distill_setup / "teacher" / name).read_bytes())
    checkpoint.save_safetensors(state, str(masked_lm))
    teacher = gd.load_teacher(str(masked_lm), "cpu")
    own = teacher.numpy_state_dict()
    assert np.array_equal(own["bert.encoder.layer.1.output.dense.weight"], state["bert.encoder.layer.1.output.dense.weight"])
    assert teacher.missing_keys == ["bert.pooler.dense.weight", "bert.pooler.dense.bias"]
    with pytest.raises(ValueError, match=r"missing 1 required tensor\(s\): bert.encoder.layer.1.output.dense.weight"):
        del state["bert.encoder.layer.1.output.dense.weight"]
        checkpoint.save_safetensors(state, str(masked_lm))
        gd.load_teacher(str(masked_lm), "cpu")


def test_bad_data_is_named(distill_setup, tmp_path):
    gd = backend.import_for("general_distill", "torch")
    vocab = gd.read_vocab(str(distill_setup / "teacher"))
    with pytest.raises(FileNotFoundError, match="no epoch_0.json.*run pregenerate_training_data.py"):
        gd.find_epochs(str(tmp_path), 3)
    lines = (distill_setup / "data" / "epoch_0.json").read_text().splitlines()
    metrics = {"num_training_examples": len(lines), "max_seq_len": 32}
    (tmp_path / "short.json").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(ValueError, match=r"short\.json: .* instances, but its metrics file says"):
        gd.PregeneratedEpoch(str(tmp_path / "short.json"), metrics, vocab)
    (tmp_path / "foreign.json").write_text("\n".join(lines[:2] + [lines[2].replace('"d', '"e')] + lines[3:]) + "\n")
    epoch = gd.PregeneratedEpoch(str(tmp_path / "foreign.json"), metrics, vocab)
    with pytest.raises(ValueError, match=r"foreign\.json:3: 'e.*' is not in the teacher's vocabulary"):
        epoch.batches(len(lines), seed=0, device="cpu").make(0)


def test_lengths_beyond_the_models(distill_setup):
    from types import SimpleNamespace
    gd = backend.import_for("general_distill", "torch")
    epochs = gd.find_epochs(str(distill_setup / "data"), 2)
    positions = [SimpleNamespace(max_position_embeddings=n) for n in (64, 32, 16)]
    gd.check_lengths(epochs, positions[0], positions[1])
    with pytest.raises(ValueError, match=r"epoch_\d\.json: instances of up to 32 tokens, but the models have 16 "
                                         r"positions: pregenerate with --max_seq_len 16"):
        gd.check_lengths(epochs, positions[0], positions[2])
