"""data_augmentation.py: candidate lists equal the reference's one-word-at-a-time procedure, GloVe
parsing and caching, bad input, the train_aug.tsv it writes, --seed, and resuming after a crash."""
import os
import random

import numpy as np
import pytest

import backend
import checkpoint
import data_augmentation as da
import word_vectors as wv
import glue
from conftest import shared_path, tiny_config_dict, write_task_slice

flow = backend.framework()
MAX_POSITIONS = 64  # small, so that real MRPC sentence pairs overflow it as long ones overflow BERT's 512


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Two framework threads on two shared, busy cores spin in every small op: one is faster here."""
    before = flow.get_num_threads()
    flow.set_num_threads(1)
    yield
    flow.set_num_threads(before)


@pytest.fixture(scope="module")
def tokenizer(minilm_dir):
    return checkpoint.load_tokenizer(minilm_dir)


@pytest.fixture(scope="module")
def mlm_dir(tmp_path_factory, minilm_dir):
    """A random BertForMaskedLM on the real uncased vocabulary, with 64 positions."""
    import modeling
    flow.manual_seed(0)
    config = modeling.BertConfig.from_dict(tiny_config_dict(vocab_size=30522, max_position_embeddings=MAX_POSITIONS))
    directory = str(tmp_path_factory.mktemp("mlm"))
    modeling.BertForMaskedLM(config).save_pretrained(directory, vocab_file=os.path.join(minilm_dir, "vocab.txt"))
    return directory


@pytest.fixture(scope="module")
def sentences():
    """Real sentences: short SST-2 phrases, MRPC sentences (some pairs overflow 64 positions), one
    sentence whose later words sit past position 64."""
    _, sst = glue.read_tsv(shared_path("glue_data", "SST-2", "train.tsv"), has_header=True)
    _, mrpc = glue.read_tsv(shared_path("glue_data", "MRPC", "train.tsv"), has_header=True)
    texts = [f[0] for _, f in sst[:24]] + [f[3] for _, f in mrpc[:8]]
    return texts + [" ".join(f[3] for _, f in mrpc[8:11])]


def write_glove(path, lines):
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in lines))
    return str(path)


def glove_line(word, vector):
    return word + " " + " ".join(f"{x:.5f}" for x in vector)


@pytest.fixture(scope="module")
def glove_path(tmp_path_factory, tokenizer, sentences):
    """Random 16-d vectors for the sentences' words and 400 other vocabulary words, plus the quirks
    of real files: a word with spaces, <unk>, a zero vector, a word given twice."""
    rng = np.random.default_rng(1)
    words = sorted({w for t in sentences for w in da.basic_tokens(tokenizer, t)})
    words += [w for w in list(tokenizer.get_vocab())[2000:2400] if w.isalpha() and w not in words]
    lines = [glove_line(w, rng.standard_normal(16)) for w in words]
    lines += [glove_line("at name@domain.com", rng.standard_normal(16)), glove_line("<unk>", rng.standard_normal(16)),
              glove_line("zero", np.zeros(16)), glove_line(words[5], rng.standard_normal(16))]
    return write_glove(tmp_path_factory.mktemp("glove") / "vectors.txt", lines)


def augmentor(mlm_dir, tokenizer, glove_path, double=False, **kwargs):
    model = da.load_masked_lm(mlm_dir, "cpu")
    return da.Augmentor(model.double() if double else model, tokenizer, wv.load_glove(glove_path, 0), **kwargs)


# ----------------------------------------------------------------------------------------------
# Candidates: the batched procedure against the reference's
# ----------------------------------------------------------------------------------------------
def test_candidate_lists_equal_the_reference_procedure(mlm_dir, tokenizer, glove_path, sentences):
    # float64 both ways: in float32 a padded batch and a batch of one round differently, and two
    # nearly tied logits may swap (bench/bench_augmentation.py counts how often in float32)
    fast = augmentor(mlm_dir, tokenizer, glove_path, double=True)
    calls = []
    forward = fast.model.forward
    fast.model.forward = lambda *a, **k: calls.append(1) or forward(*a, **k)
    ours = fast.candidates(sentences)
    ref = augmentor(mlm_dir, tokenizer, glove_path, double=True, reference_mode=True)
    theirs = ref.candidates(sentences)
    assert [w for w, _ in ours] == [w for w, _ in theirs]
    for text, (_, a), (_, b) in zip(sentences, ours, theirs):
        assert a == b, text
    assert fast.stats == ref.stats
    assert fast.stats["mlm"] > 100 and fast.stats["glove"] > 5 and fast.stats["truncated"] >= 3
    assert len(calls) < fast.stats["mlm"] / 10  # batched, not one forward per word
    words, cands = ours[-1]  # the long sentence: one-piece words past position 64 keep only themselves
    owner = tokenizer.backend_tokenizer.encode(sentences[-1], add_special_tokens=False).word_ids
    late = {w for position, w in enumerate(owner, start=1)
            if position >= MAX_POSITIONS and w in cands and owner.count(w) == 1}
    assert late and all(cands[w] == [words[w]] for w in late)
    early = [w for w in cands if w not in late and cands[w] != [words[w]]]
    assert len(early) > 5 and all(len(cands[w]) <= 15 for w in cands)
    assert not any(c.startswith("##") for cs in cands.values() for c in cs)


def test_candidates_are_cached_and_do_not_depend_on_the_batch(mlm_dir, tokenizer, glove_path, sentences):
    aug = augmentor(mlm_dir, tokenizer, glove_path, double=True, batch_tokens=256)
    together = aug.candidates(sentences[:10])
    computed = dict(aug.stats)
    again = aug.candidates(sentences[:10][::-1])
    assert again == together[::-1] and dict(aug.stats) == computed  # nothing recomputed
    alone = augmentor(mlm_dir, tokenizer, glove_path, double=True).candidates(sentences[3:4])
    assert alone[0] == together[3]


def test_glove_neighbours_rank_by_cosine_and_keep_title_case():
    rng = np.random.default_rng(0)
    words = ["Paris", "london", "rome", "berlin", "paris", "zero", "<unk>", "rome", "at name@domain.com"]
    words += [f"w{i}" for i in range(39)]
    vectors = rng.standard_normal((len(words), 8)).astype(np.float32)
    vectors[words.index("zero")] = 0
    vectors[[2, 6, 8]] = vectors[0] + 0.01  # no candidates although nearest: the first "rome", <unk>, a phrase
    # near "paris": w2 and w3 tie exactly; w5, one ulp away, is nearer in float64 but not in float32
    w2, w3, w5 = (words.index(w) for w in ("w2", "w3", "w5"))
    vectors[[w2, w3, w5]] = vectors[4] + 0.05 * rng.standard_normal(8).astype(np.float32)
    cosine = lambda v: v.astype(np.float64) @ vectors[4] / np.linalg.norm(v.astype(np.float64))
    for way in (np.inf, -np.inf):
        nudged = vectors[w5].copy()
        nudged[0] = np.nextafter(nudged[0], np.float32(way))
        if cosine(nudged) > cosine(vectors[w2]):
            vectors[w5] = nudged
    index = da.GloveIndex(wv.Glove(words, vectors))
    found = index.neighbours(["Paris", "paris", "rome", "absent", "zero"], M=5)
    assert set(found) == {"Paris", "paris", "rome"}  # no vector: no neighbours
    unit = vectors.astype(np.float64) / np.maximum(np.linalg.norm(vectors.astype(np.float64), axis=1), 1e-300)[:, None]
    usable = [i for i, w in enumerate(words) if w not in ("zero", "<unk>") and i not in (2, 8)]  # 2: the first "rome"
    for word in found:
        row = max(i for i, w in enumerate(words) if w == word)  # a repeated word: its last row
        ranked = sorted((i for i in usable if i != row), key=lambda i: -unit[i] @ unit[row])[:5]
        expected = [words[i] for i in ranked]
        assert found[word] == ([w.title() for w in expected] if word == "Paris" else expected)
        assert found[word] == index.reference_neighbours(word, 5)
    assert found["Paris"][0][0].isupper() and found["paris"] != found["Paris"]
    assert found["paris"][:3] == ["w5", "w2", "w3"]


# ----------------------------------------------------------------------------------------------
# GloVe files
# ----------------------------------------------------------------------------------------------
def test_glove_file_is_parsed_once_and_cached_beside_it(tmp_path, monkeypatch):
    rng = np.random.default_rng(2)
    vectors = rng.standard_normal((5, 4))
    words = ["the", ". . .", "at name@domain.com", "Paris", "caf\u00e9"]
    path = write_glove(tmp_path / "g.txt", [glove_line(w, v) for w, v in zip(words, vectors)])
    glove = wv.load_glove(path, max_words=0)
    assert glove.words == words
    np.testing.assert_allclose(glove.vectors, vectors, atol=1e-5)
    assert glove.vectors.dtype == np.float32
    assert os.path.isfile(wv.glove_cache_path(path, 0))
    assert wv.load_glove(path, max_words=3).words == words[:3]

    monkeypatch.setattr(wv, "parse_glove", lambda *a, **k: pytest.fail("parsed although cached"))
    cached = wv.load_glove(path, max_words=0)
    assert cached.words == words and np.array_equal(cached.vectors, glove.vectors)
    monkeypatch.undo()
    # a cache replaced by a link (to a stranger's arrays) is not read: the text file is parsed again
    cache = wv.glove_cache_path(path, 0)
    os.rename(cache, tmp_path / "elsewhere.npz")
    os.symlink(tmp_path / "elsewhere.npz", cache)
    parsed = []
    monkeypatch.setattr(wv, "parse_glove", lambda *a, **k: parsed.append(1) or glove)
    assert wv.load_glove(path, max_words=0).words == words and parsed == [1]
    monkeypatch.undo()
    with open(path, "a", encoding="utf-8") as f:
        f.write(glove_line("new", np.ones(4)) + "\n")
    assert wv.load_glove(path, max_words=0).words == words + ["new"]  # a changed file is parsed again


@pytest.mark.parametrize("bad,why", [
    ("word 0.1 0.2", "2 values, expected 4"),
    ("word 0.1 0.2 0.3 0.4 0.5", "5 values, expected 4"),
    ("word 0.1 zero 0.3 0.4", "'zero' is not a finite number"),
    ("word 0.1 nan 0.3 0.4", "'nan' is not a finite number"),
])
def test_bad_glove_line_is_named(tmp_path, bad, why):
    lines = [glove_line(f"w{i}", np.arange(4) + i) for i in range(30)]
    lines[21] = bad
    path = write_glove(tmp_path / "bad.txt", lines)
    with pytest.raises(wv.GloveError, match=f"{path}:22: .*{why}"):
        wv.load_glove(path, max_words=0)


# ----------------------------------------------------------------------------------------------
# Bad models
# ----------------------------------------------------------------------------------------------
def test_masked_lm_must_match_the_tokenizer_and_have_a_head(tmp_path, tokenizer, minilm_dir, glove_path):
    import modeling
    small = modeling.BertForMaskedLM(modeling.BertConfig.from_dict(tiny_config_dict()))
    with pytest.raises(da.AugmentError, match="vocab_size 120 but its tokenizer's vocab.txt has 30522"):
        da.Augmentor(small, tokenizer, wv.load_glove(glove_path, 0))
    with pytest.raises(da.AugmentError, match=r"needs a masked LM with its head .*missing 5 required tensor\(s\): cls.predictions.bias"):
        da.load_masked_lm(minilm_dir, "cpu")  # a bare BertModel


# ----------------------------------------------------------------------------------------------
# The script: train_aug.tsv
# ----------------------------------------------------------------------------------------------
def task_slice(root, task, rows):
    """A GLUE task directory with `rows` rows of the real train.tsv (CoLA's has no header)."""
    source = shared_path("glue_data", task)
    if glue.get_processor(task).has_header:
        return write_task_slice(os.path.join(root, task), source, rows, 2)
    os.makedirs(os.path.join(root, task))
    with open(os.path.join(source, "train.tsv"), encoding="utf-8") as f:
        head = [next(f) for _ in range(rows)]
    with open(os.path.join(root, task, "train.tsv"), "w", encoding="utf-8") as f:
        f.write("".join(head))


def run(mlm_dir, glove_path, root, task, *extra):
    return da.main(["--pretrained_bert_model", mlm_dir, "--glove_embs", glove_path, "--glue_dir", str(root),
                    "--task_name", task, "--backend", "torch", "--no-gpu", *extra])


def read(path):
    with open(path, "rb") as f:
        return f.read()


def test_estimate_foresees_the_rows_and_bytes_and_writes_nothing(tmp_path, mlm_dir, glove_path, monkeypatch):
    task_slice(tmp_path, "SST-2", 8)
    est = run(mlm_dir, glove_path, tmp_path, "SST-2", "--N", "6", "--estimate")
    assert sorted(os.listdir(tmp_path / "SST-2")) == ["dev.tsv", "train.tsv"]
    out = run(mlm_dir, glove_path, tmp_path, "SST-2", "--N", "6")
    written = read(out)
    assert est["rows"] == len(written.decode().splitlines()) - 1 and est["bytes"] == len(written)  # - the header
    monkeypatch.setattr(da, "ESTIMATE_EXAMPLES", 4)  # half the file: the rows of the first four, doubled
    half = run(mlm_dir, glove_path, tmp_path, "SST-2", "--N", "6", "--estimate")
    assert 0.5 * est["rows"] < half["rows"] < 1.5 * est["rows"] and half["rows"] % 2 == 0


@pytest.mark.parametrize("task,rows", [("SST-2", 8), ("MRPC", 4), ("CoLA", 5)])
def test_train_aug_rows_replace_only_candidate_words(tmp_path, mlm_dir, glove_path, tokenizer, task, rows):
    task_slice(tmp_path, task, rows)
    out = run(mlm_dir, glove_path, tmp_path, task, "--N", "6", "--chunk_examples", "3")
    processor = glue.get_processor(task)
    train = os.path.join(tmp_path, processor.dir_name, "train.tsv")
    assert not [f for f in os.listdir(os.path.dirname(out)) if ".partial" in f]
    source_lines = read(train).decode().splitlines()
    out_lines = read(out).decode().splitlines()
    if processor.has_header:
        assert out_lines[0] == source_lines[0]  # the header as it is (MRPC's BOM too)
        source_lines, out_lines = source_lines[1:], out_lines[1:]
    source = [line.split("\t") for line in source_lines]
    fresh, found = augmentor(mlm_dir, tokenizer, glove_path), {}
    for start in range(0, len(source), 3):  # the script's chunks: the same batches, the same floats
        texts = [s[c] for s in source[start:start + 3] for c in processor.text_columns]
        found.update(zip(texts, fresh.candidates(texts)))

    out_rows, starts = [line.split("\t") for line in out_lines], []
    for fields in source:  # each example's rows: the original first, then its variants
        starts.append(out_rows.index(fields, starts[-1] + 1 if starts else 0))
    assert starts[0] == 0 and len(out_rows) > 2 * len(source)
    groups = [out_rows[a + 1:b] for a, b in zip(starts, starts[1:] + [len(out_rows)])]

    for fields, group in zip(source, groups):
        per_column = {c: [] for c in processor.text_columns}
        for row in group:
            changed = [c for c in range(len(fields)) if row[c] != fields[c]]
            assert len(changed) == 1 and changed[0] in processor.text_columns  # other columns untouched
            per_column[changed[0]].append(row[changed[0]])
            words, cands = found[fields[changed[0]]]
            new = row[changed[0]].split(" ")
            assert len(new) == len(words)
            assert all(n == w or n in cands.get(k, []) for k, (n, w) in enumerate(zip(new, words)))
        for c, variants in per_column.items():
            assert len(variants) == len(set(variants)) <= 6 and fields[c] not in variants
    assert glue.get_processor(task).read_examples(os.path.dirname(out), "train_aug")  # GLUE's reader takes it


def test_seed_makes_the_output_identical(tmp_path, mlm_dir, glove_path):
    task_slice(tmp_path, "SST-2", 6)
    first = read(run(mlm_dir, glove_path, tmp_path, "SST-2", "--seed", "3"))
    with pytest.raises(da.AugmentError, match="exists; pass --overwrite"):
        run(mlm_dir, glove_path, tmp_path, "SST-2", "--seed", "3")
    again = read(run(mlm_dir, glove_path, tmp_path, "SST-2", "--seed", "3", "--overwrite", "--chunk_examples", "4"))
    other = read(run(mlm_dir, glove_path, tmp_path, "SST-2", "--seed", "4", "--overwrite"))
    assert again == first and other != first and other.count(b"\n") > 6


def test_interrupted_run_continues_after_the_last_complete_example(tmp_path, mlm_dir, glove_path, monkeypatch):
    task_slice(tmp_path, "SST-2", 10)
    out = os.path.join(tmp_path, "SST-2", "train_aug.tsv")
    whole = read(run(mlm_dir, glove_path, tmp_path, "SST-2", "--output", str(tmp_path / "whole.tsv")))

    real, calls = da.augment_rows, []

    def crash_on_third_chunk(*args):
        calls.append(args[-1])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args)
    monkeypatch.setattr(da, "augment_rows", crash_on_third_chunk)
    with pytest.raises(KeyboardInterrupt):
        run(mlm_dir, glove_path, tmp_path, "SST-2", "--chunk_examples", "3")
    assert not os.path.exists(out)
    progress = checkpoint.read_json(out + ".partial.progress.json")
    assert progress["examples_done"] == 6 and progress["bytes"] == os.path.getsize(out + ".partial")
    with open(out + ".partial", "ab") as f:
        f.write(b"rows of an example that was cut off\tin the mid" * 4000)

    with pytest.raises(da.AugmentError, match=r"other settings \(seed differ"):
        run(mlm_dir, glove_path, tmp_path, "SST-2", "--chunk_examples", "3", "--seed", "7")
    calls.clear()
    run(mlm_dir, glove_path, tmp_path, "SST-2", "--chunk_examples", "3")
    assert calls == [6, 9]  # only the examples not done before
    assert read(out) == whole
    assert not os.path.exists(out + ".partial") and not os.path.exists(out + ".partial.progress.json")


def test_truncated_sentences_are_counted_and_reported_once(tmp_path, mlm_dir, glove_path, tokenizer, capsys):
    task_slice(tmp_path, "MRPC", 6)
    run(mlm_dir, glove_path, tmp_path, "MRPC", "--N", "2")
    _, rows = glue.read_tsv(os.path.join(tmp_path, "MRPC", "train.tsv"), has_header=True)
    texts = {f[c] for _, f in rows for c in (3, 4)}
    long = [t for t in texts if 2 * len(tokenizer.tokenize(t)) + 3 > MAX_POSITIONS]
    assert long
    warnings = [line for line in capsys.readouterr().err.splitlines() if "longer than the model's" in line]
    assert warnings == [f"warning: {len(long)} sentence(s) made masked-LM inputs longer than the model's "
                        f"{MAX_POSITIONS} positions: truncated (words past position {MAX_POSITIONS} keep only "
                        "themselves as candidates)"]


def test_sampling_follows_the_reference():
    words = ["a", "good", "film", "."]
    cands = {1: ["bad", "great"], 2: ["movie"]}
    out = da.sample_sentences("A good film.", words, cands, 100, 0.5, random.Random(0))
    variants = {f"a {g} {f} ." for g in ("good", "bad", "great") for f in ("film", "movie")}
    assert out[0] == "A good film." and len(out) == len(set(out)) and set(out[1:]) == variants
    assert da.sample_sentences("x y", ["x", "y"], {0: ["z"]}, 5, 0.0, random.Random(0)) == ["x y"]
    always = da.sample_sentences("t", words, cands, 50, 1.0, random.Random(0))
    assert set(always[1:]) == {"a bad movie .", "a great movie ."}  # p=1: every candidate word replaced
    # p=0.3: each word is replaced in ~30% of the variants, by a candidate drawn uniformly
    counts = {"bad": 0, "great": 0, "movie": 0}
    draws = 3000
    for seed in range(draws):
        for variant in da.sample_sentences("t", words, cands, 1, 0.3, random.Random(seed))[1:]:
            for w in variant.split():
                counts[w] = counts.get(w, 0) + 1
    assert abs(counts["movie"] / draws - 0.3) < 0.03
    assert abs((counts["bad"] + counts["great"]) / draws - 0.3) < 0.03
    assert abs(counts["bad"] / (counts["bad"] + counts["great"]) - 0.5) < 0.06


def test_oneflow_gives_the_reference_candidates(modeling_for, mlm_dir, tokenizer, glove_path, sentences):
    da_of = backend.import_for("data_augmentation", "oneflow")
    model = modeling_for("oneflow").BertForMaskedLM.from_pretrained(mlm_dir, verbose=False).double().eval()
    ours = da_of.Augmentor(model, tokenizer, wv.load_glove(glove_path, 0)).candidates(sentences[:12])
    theirs = augmentor(mlm_dir, tokenizer, glove_path, double=True, reference_mode=True).candidates(sentences[:12])
    assert ours == theirs


def test_shards_merge_into_the_single_process_file(tmp_path, mlm_dir, glove_path, monkeypatch):
    """Three processes (--shard I/3, or RANK/WORLD_SIZE under a launcher), each resumable, write the
    bytes one process writes; the last to finish merges, in example order."""
    task_slice(tmp_path, "SST-2", 11)
    monkeypatch.setenv("RANK", "-1")  # what importing OneFlow leaves in a lone process: not a shard
    monkeypatch.setenv("WORLD_SIZE", "1")
    whole = read(run(mlm_dir, glove_path, tmp_path, "SST-2", "--chunk_examples", "2", "--output",
                     str(tmp_path / "whole.tsv")))
    out = tmp_path / "sharded.tsv"
    common = ["--chunk_examples", "2", "--output", str(out)]
    run(mlm_dir, glove_path, tmp_path, "SST-2", "--shard", "2/3", *common)
    run(mlm_dir, glove_path, tmp_path, "SST-2", "--shard", "0/3", *common)
    assert not out.exists()
    assert sorted(f for f in os.listdir(tmp_path) if "shard-" in f) == ["sharded.tsv.shard-0-of-3",
                                                                      "sharded.tsv.shard-2-of-3"]
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    run(mlm_dir, glove_path, tmp_path, "SST-2", *common)  # the launcher's rank and world
    assert read(str(out)) == whole
    assert not [f for f in os.listdir(tmp_path) if ".shard-" in f or "lock" in f]
    assert da.shard_rows(11, 2, 0, 3) == (0, 4) and da.shard_rows(11, 2, 2, 3) == (8, 11)


def test_a_masked_lm_saved_by_transformers_loads_and_predicts_alike(tmp_path, capsys):
    """transformers' BertForMaskedLM is saved without a pooler and with the output bias twice
    (cls.predictions.bias and its tie cls.predictions.decoder.bias): augmentation needs no pooler."""
    import torch
    import transformers
    import modeling
    torch.manual_seed(0)
    hf = transformers.BertForMaskedLM(transformers.BertConfig(**tiny_config_dict())).eval()
    with torch.no_grad():
        hf.cls.predictions.bias.normal_()  # not zeros: a bias lost on the way would show
    hf.save_pretrained(str(tmp_path))
    saved = checkpoint.load_state_dict(str(tmp_path))
    assert not any(k.startswith("bert.pooler.") for k in saved)  # the layout this test is about
    model = da.load_masked_lm(str(tmp_path), "cpu")
    ids, types, mask = (np.array(a) for a in ([[2, 5, 9, 4, 3, 0], [2, 7, 1, 3, 0, 0]], [[0] * 6] * 2,
                                              [[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 0, 0]]))
    t = lambda a: flow.tensor(a, dtype=flow.int64)
    with flow.no_grad():
        ours = model(t(ids), t(types), t(mask)).cpu().numpy()
    with torch.no_grad():
        theirs = hf(input_ids=torch.tensor(ids), token_type_ids=torch.tensor(types),
                    attention_mask=torch.tensor(mask)).logits.numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    modeling.BertForMaskedLM.from_pretrained(str(tmp_path))  # verbose: the pooler is reported, not hidden
    assert "bert.pooler.dense.weight, bert.pooler.dense.bias" in capsys.readouterr().out
    saved["cls.predictions.decoder.bias"] = saved["cls.predictions.bias"] + 1
    with pytest.raises(ValueError, match="decoder.bias differs from cls.predictions.bias"):
        model.load_numpy_state_dict(saved, source="two biases")


def test_special_tokens_are_never_candidates(mlm_dir, tokenizer, glove_path):
    aug = augmentor(mlm_dir, tokenizer, glove_path)
    sep, unk, word = tokenizer.sep_token_id, tokenizer.unk_token_id, tokenizer.convert_tokens_to_ids("film")
    assert aug._tokens([sep, word, unk, tokenizer.convert_tokens_to_ids("##s")]) == ["film"]


def test_candidates_words_keeps_only_words_and_reads_deeper(mlm_dir, tokenizer, glove_path, sentences):
    anything = augmentor(mlm_dir, tokenizer, glove_path, double=True)
    words_only = augmentor(mlm_dir, tokenizer, glove_path, double=True, candidates="words")
    ids = tokenizer.convert_tokens_to_ids(["the", ",", "film", "##s", "movie", "[SEP]", "of", "actor"])
    assert anything._tokens(ids) == ["the", ",", "film", "movie", "of", "actor"]
    assert words_only._tokens(ids) == ["film", "movie", "actor"]
    ours = words_only.candidates(sentences[:6])
    theirs = augmentor(mlm_dir, tokenizer, glove_path, double=True, candidates="words",
                       reference_mode=True).candidates(sentences[:6])
    assert ours == theirs  # the batched and the one-word-at-a-time procedures still agree
    # the masked LM's lists (GloVe's are not filtered): 15 words each, read from the top 60
    mlm = [c for words, cands in ours for w, c in cands.items()
           if tokenizer.convert_tokens_to_ids(words[w]) != tokenizer.unk_token_id and c != [words[w]]]
    assert len(mlm) > 20 and all(len(c) == 15 and all(da.is_candidate_word(x) for x in c) for c in mlm)
    with pytest.raises(da.AugmentError, match="candidates='all'"):
        augmentor(mlm_dir, tokenizer, glove_path, candidates="all")


def test_show_candidates_prints_each_words_list(mlm_dir, glove_path, tokenizer, capsys):
    text = "a gorgeous , witty , seductive movie"
    da.main(["--pretrained_bert_model", mlm_dir, "--glove_embs", glove_path, "--show_candidates", text,
             "--backend", "torch", "--no-gpu"])
    lines = capsys.readouterr().out.splitlines()
    words, cands = augmentor(mlm_dir, tokenizer, glove_path).candidates([text])[0]
    assert lines[0] == " ".join(words)
    assert lines[1:] == [f"  {words[w]}: {', '.join(c)}" for w, c in cands.items()] and len(lines) == 5
    with pytest.raises(SystemExit):
        da.parse_args(["--pretrained_bert_model", mlm_dir, "--glove_embs", glove_path])  # nothing to do
