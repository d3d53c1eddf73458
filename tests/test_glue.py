"""glue.py on the real GLUE files: processors, bad input, features against BERT's own algorithm,
batches, metrics, and OFRecord files read back by numpy, by protobuf and by OneFlow's own reader."""
import logging
import math
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import checkpoint
import glue
import ofrecord
from conftest import ROOT, shared_path

# Official GLUE sizes (rows without the header).
OFFICIAL_ROWS = [("SST-2", "train", 67349), ("SST-2", "dev", 872), ("SST-2", "test", 1821),
                 ("CoLA", "train", 8551), ("CoLA", "dev", 1043), ("MRPC", "train", 3668), ("MRPC", "dev", 408),
                 ("RTE", "train", 2490), ("RTE", "dev", 277), ("WNLI", "train", 635), ("WNLI", "dev", 71),
                 ("STS-B", "train", 5749), ("STS-B", "dev", 1500), ("QNLI", "dev", 5463)]


@pytest.fixture(scope="module")
def tokenizer(minilm_dir):
    return checkpoint.load_tokenizer(minilm_dir)


def write(path, text, mode="w"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": "\n"})) as f:
        f.write(text)
    return path


# ----------------------------------------------------------------------------------------------
# Processors on the real files
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("task,split,rows", OFFICIAL_ROWS)
def test_real_files_have_the_official_row_counts(task, split, rows):
    examples = glue.get_processor(task).read_examples(shared_path("glue_data", task), split)
    assert len(examples) == rows
    labeled = split != "test"
    assert all((e.label is not None) == labeled for e in examples)


def test_real_files_quirks_are_read_as_data():
    cola = glue.get_processor("cola").read_examples(shared_path("glue_data", "CoLA"), "dev")
    assert cola[0] == glue.InputExample("dev-0", "The sailors rode the breeze clear of the rocks.", None, "1")
    assert cola[-1].text_a == "John talked to Bill about himself."  # the last line has no newline
    mrpc = glue.get_processor("MRPC").read_examples(shared_path("glue_data", "MRPC"), "train")
    assert mrpc[0].label == "1" and mrpc[0].text_a.startswith("Amrozi accused his brother")
    assert mrpc[0].text_b.startswith("Referring to him as only")
    sts = glue.get_processor("sts-b").read_examples(shared_path("glue_data", "STS-B"), "dev")
    assert (sts[0].label, sts[1].label) == (5.0, 4.75) and isinstance(sts[0].label, float)
    assert all(0.0 <= e.label <= 5.0 for e in sts)
    assert any('"' in (e.text_a + e.text_b) for e in sts)  # unbalanced quotes stay in the text
    sst_test = glue.get_processor("sst-2").read_examples(shared_path("glue_data", "SST-2"), "test")
    assert sst_test[0].text_a == "uneasy mishmash of styles and genres ."
    rte = glue.get_processor("rte").read_examples(shared_path("glue_data", "RTE"), "dev")
    assert {e.label for e in rte} == {"entailment", "not_entailment"}


def test_processor_table():
    want = {"sst-2": [0], "cola": [3], "mrpc": [3, 4], "mnli": [8, 9], "qqp": [3, 4], "qnli": [1, 2],
            "rte": [1, 2], "sts-b": [7, 8], "wnli": [1, 2]}
    for task, columns in want.items():
        p = glue.get_processor(task.upper())
        assert p.text_columns == columns and p.task == task
        assert p.is_regression == (task == "sts-b")
        assert p.num_labels == (1 if task == "sts-b" else 3 if task == "mnli" else 2)
    assert glue.get_processor("sts-b").labels == [None]
    assert not glue.get_processor("cola").has_header and glue.get_processor("sst-2").has_header
    assert glue.get_processor("mnli-mm").split_path("d", "dev") == os.path.join("d", "dev_mismatched.tsv")
    assert glue.get_processor("mnli").record_dir_name("dev_mismatched") == "eval_mismatched"
    with pytest.raises(glue.GlueDataError, match="unknown GLUE task 'sst3'.*sst-2"):
        glue.get_processor("sst3")
    with pytest.raises(glue.GlueDataError, match="unknown split 'validation'"):
        glue.get_processor("rte").split_path("d", "validation")


def mnli_row(i, label, width):
    cells = [str(i), "p", "q", "fiction", "(bin a)", "(bin b)", "(a)", "(b)", f"premise {i}", f"hypothesis {i}"]
    return "\t".join(cells + ["x"] * (width - 11) + ([label] if label else [])) + "\n"


def test_mnli_and_qqp_processors_on_small_files(tmp_path):
    mnli = tmp_path / "MNLI"
    write(str(mnli / "train.tsv"),
          "h\t" * 11 + "gold_label\n" + mnli_row(0, "neutral", 12) + mnli_row(1, "entailment", 12))
    write(str(mnli / "dev_matched.tsv"), "h\t" * 15 + "gold_label\n" + mnli_row(0, "contradiction", 16))
    write(str(mnli / "dev_mismatched.tsv"), "h\t" * 15 + "gold_label\n" + mnli_row(7, "neutral", 16) * 2)
    write(str(mnli / "test_matched.tsv"), "h\t" * 9 + "h\n" + mnli_row(3, None, 11))
    p = glue.get_processor("mnli")
    train = p.read_examples(str(mnli), "train")
    assert [(e.text_a, e.text_b, e.label) for e in train] == [("premise 0", "hypothesis 0", "neutral"),
                                                              ("premise 1", "hypothesis 1", "entailment")]
    assert p.read_examples(str(mnli), "dev")[0].label == "contradiction"
    assert len(p.read_examples(str(mnli), "dev_mismatched")) == 2
    assert len(glue.get_processor("mnli-mm").read_examples(str(mnli), "dev")) == 2
    assert p.read_examples(str(mnli), "test")[0] == glue.InputExample("test-0", "premise 3", "hypothesis 3", None)

    qqp = tmp_path / "QQP"
    write(str(qqp / "train.tsv"), "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n1\t2\t3\tWhy?\tHow?\t1\n")
    write(str(qqp / "test.tsv"), "id\tquestion1\tquestion2\n0\tWho?\tWhere?\n")
    q = glue.get_processor("qqp")
    assert q.read_examples(str(qqp), "train")[0][1:] == ("Why?", "How?", "1")
    assert q.read_examples(str(qqp), "test")[0][1:] == ("Who?", "Where?", None)


# ----------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------
RTE_HEADER = "index\tsentence1\tsentence2\tlabel\n"


@pytest.mark.parametrize("task,text,message", [
    ("rte", RTE_HEADER + "0\ta\tb\tentailment\n1\ta\tb\n", r"train.tsv:3: 3 columns, expected 4: '1\\ta\\tb'"),
    ("rte", RTE_HEADER + "0\ta\tb\tmaybe\n", r"train.tsv:2: unknown label 'maybe' \(expected one of entailment"),
    ("sts-b", "\t".join(["h"] * 10) + "\n" + "\t".join(["0"] * 7 + ["a", "b", "high"]) + "\n",
     r"train.tsv:2: could not convert string to float: 'high'"),
    ("sts-b", "\t".join(["h"] * 10) + "\n" + "\t".join(["0"] * 7 + ["a", "b", "nan"]) + "\n",
     r"train.tsv:2: score 'nan' is not a finite number"),
    ("rte", RTE_HEADER, r"train.tsv: no usable examples in split 'train'"),
    ("rte", "0\ta\tb\tentailment\n", r"train.tsv:1: expected a header line"),
    ("cola", "src\t1\t\tok\nsrc\t1\tonly three\n", r"train.tsv:2: 3 columns, expected 4"),
])
def test_bad_rows_name_file_and_line(tmp_path, task, text, message):
    write(str(tmp_path / "train.tsv"), text)
    with pytest.raises(glue.GlueDataError, match=message):
        glue.get_processor(task).read_examples(str(tmp_path), "train")


def test_bad_bytes_and_missing_split_name_the_path(tmp_path):
    write(str(tmp_path / "train.tsv"), RTE_HEADER.encode() + b"0\ta\tb\tentailment\n1\ta\xff\tb\tentailment\n", "wb")
    with pytest.raises(glue.GlueDataError, match=r"train.tsv:3: bytes that are not UTF-8"):
        glue.get_processor("rte").read_examples(str(tmp_path), "train")
    with pytest.raises(glue.GlueDataError, match=r"dev.tsv: file not found"):
        glue.get_processor("rte").read_examples(str(tmp_path), "dev")


def test_skip_bad_rows_counts_once(tmp_path, caplog):
    rows = ["0\ta\tb\tentailment", "1\ta\tb", "2\ta\tb\tnope", "3\tc\td\tnot_entailment"]
    write(str(tmp_path / "train.tsv"), RTE_HEADER + "\n".join(rows) + "\n")
    with caplog.at_level(logging.WARNING, logger="glue"):
        examples = glue.get_processor("rte").read_examples(str(tmp_path), "train", skip_bad_rows=True)
    assert [e.text_a for e in examples] == ["a", "c"]
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "skipped 2 bad rows" in warnings[0] and "line 3" in warnings[0]


# ----------------------------------------------------------------------------------------------
# Tokenizer and features
# ----------------------------------------------------------------------------------------------
def reference_row(tokenizer, a, b, max_len):
    """BERT run_classifier's featurization, written out token by token."""
    ta = tokenizer.tokenize(a)
    tb = tokenizer.tokenize(b) if b else []
    if tb:
        while len(ta) + len(tb) > max_len - 3:
            (ta if len(ta) > len(tb) else tb).pop()
    else:
        ta = ta[:max_len - 2]
    tokens = ["[CLS]", *ta, "[SEP]"] + ([*tb, "[SEP]"] if tb else [])
    segments = [0] * (len(ta) + 2) + [1] * (len(tb) + 1 if tb else 0)
    pad = max_len - len(tokens)
    return (tokenizer.convert_tokens_to_ids(tokens) + [0] * pad, [1] * len(tokens) + [0] * pad, segments + [0] * pad)


def test_features_match_bert_featurization_with_truncation(tokenizer, caplog):
    p = glue.get_processor("rte")
    examples = p.read_examples(shared_path("glue_data", "RTE"), "dev")
    examples[5] = examples[5]._replace(text_b=" \t ")  # b without tokens: a single sequence, as in BERT
    with caplog.at_level(logging.WARNING, logger="glue"):
        f = glue.convert_examples_to_features(examples, tokenizer, 40, p, chunk_size=100)
    ref = [reference_row(tokenizer, e.text_a, e.text_b, 40) for e in examples]
    np.testing.assert_array_equal(f.input_ids, [r[0] for r in ref])
    np.testing.assert_array_equal(f.input_mask, [r[1] for r in ref])
    np.testing.assert_array_equal(f.segment_ids, [r[2] for r in ref])
    assert f.input_ids.dtype == np.int32 and f.input_ids.shape == (277, 40)
    np.testing.assert_array_equal(f.lengths, f.input_mask.sum(1))
    np.testing.assert_array_equal(f.label_ids, [p.labels.index(e.label) for e in examples])
    too_long = sum(len(tokenizer.tokenize(e.text_a)) + len(tokenizer.tokenize(e.text_b)) > 37 for e in examples)
    assert f.num_truncated == too_long > 0
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [f"{too_long} of 277 examples were longer than max_seq_length=40 and were truncated"]


def test_truncated_lengths_equal_popping_one_token_at_a_time():
    la, lb, budget = np.meshgrid(np.arange(13), np.arange(13), np.arange(16), indexing="ij")
    keep_a, keep_b = glue.truncated_lengths(la.ravel(), lb.ravel(), budget.ravel())
    for a, b, t, ka, kb in zip(la.ravel(), lb.ravel(), budget.ravel(), keep_a, keep_b):
        while a + b > t:
            a, b = (a - 1, b) if a > b else (a, b - 1)
        assert (ka, kb) == (a, b)


def test_tokenizer_matches_the_models_own_tokenizer(tokenizer, minilm_dir):
    from tokenizers import Tokenizer
    own = Tokenizer.from_file(os.path.join(minilm_dir, "tokenizer.json"))  # the model's published tokenizer
    own.enable_truncation(128)
    own.enable_padding(length=128)
    examples = glue.get_processor("sst-2").read_examples(shared_path("glue_data", "SST-2"), "dev")
    f = glue.convert_examples_to_features(examples, tokenizer, 128, ["0", "1"])
    ref = own.encode_batch([e.text_a for e in examples])
    np.testing.assert_array_equal(f.input_ids, [e.ids for e in ref])
    np.testing.assert_array_equal(f.input_mask, [e.attention_mask for e in ref])


def test_lower_casing_from_the_model_directory(tmp_path, minilm_dir):
    uncased = tmp_path / "uncased"
    uncased.mkdir()
    shutil.copy(os.path.join(minilm_dir, "vocab.txt"), uncased)
    assert checkpoint.load_tokenizer(str(uncased)).tokenize("HELLO World") == ["hello", "world"]  # inferred
    write(str(uncased / "tokenizer_config.json"), '{"do_lower_case": false}')
    assert checkpoint.load_tokenizer(str(uncased)).tokenize("HELLO") == ["[UNK]"]
    cased = tmp_path / "cased"
    write(str(cased / "vocab.txt"), "[PAD]\n[UNK]\n[CLS]\n[SEP]\nHello\nhello\n")
    assert checkpoint.load_tokenizer(str(cased)).tokenize("Hello hello") == ["Hello", "hello"]
    with pytest.raises(FileNotFoundError, match="no vocab.txt"):
        checkpoint.load_tokenizer(str(tmp_path))


# ----------------------------------------------------------------------------------------------
# Batches
# ----------------------------------------------------------------------------------------------
def toy_features(n=53, width=24, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, width + 1, n)
    mask = (np.arange(width)[None, :] < lengths[:, None]).astype(np.int32)
    ids = (rng.integers(5, 1000, (n, width)) * mask).astype(np.int32)
    return glue.Features(ids, mask, (mask * rng.integers(0, 2, (n, 1))).astype(np.int32), rng.integers(0, 3, n))


def test_batches_pad_to_the_longest_row_and_cover_every_row():
    f = toy_features()
    orders = [{}, {"shuffle": True, "seed": 3}, {"shuffle": True, "group_by_length": True}, {"group_by_length": True}]
    for kwargs in orders:
        seen = []
        for batch in glue.iter_batches(f, 8, **kwargs):
            index = batch["index"]
            width = batch["input_ids"].shape[1]
            assert width == f.lengths[index].max()
            np.testing.assert_array_equal(batch["input_ids"], f.input_ids[index, :width])
            np.testing.assert_array_equal(batch["token_type_ids"], f.segment_ids[index, :width])
            np.testing.assert_array_equal(batch["attention_mask"], f.input_mask[index, :width])
            np.testing.assert_array_equal(batch["labels"], f.label_ids[index])
            assert not f.input_mask[index, width:].any()  # nothing real was cut
            seen.extend(index.tolist())
        assert sorted(seen) == list(range(len(f)))
        assert (seen == list(range(len(f)))) == (kwargs == {})


def test_batch_order_is_seeded_and_grouping_saves_padding():
    f = toy_features(n=400)
    order = lambda **k: [b.tolist() for b in glue.batch_order(f.lengths, 16, shuffle=True, **k)]  # noqa: E731
    assert order(seed=1, epoch=2) == order(seed=1, epoch=2)
    assert order(seed=1, epoch=2) != order(seed=1, epoch=3) != order(seed=2, epoch=3)

    def padding(**k):
        return sum(b["input_ids"].size - b["attention_mask"].sum() for b in glue.iter_batches(f, 16, shuffle=True, **k))
    assert padding(group_by_length=True, group_size=5) < 0.5 * padding()
    assert [len(b) for b in glue.batch_order(f.lengths, 16, drop_last=True)] == [16] * 25
    assert len(glue.batch_order(f.lengths[:50], 16, drop_last=True)) == 3


# ----------------------------------------------------------------------------------------------
# Metrics
# ----------------------------------------------------------------------------------------------
def test_metrics_against_their_definitions():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    p = np.where(rng.random(200) < 0.8, y, 1 - y)
    tp, fp, fn, tn = [int(((p == a) & (y == b)).sum()) for a, b in [(1, 1), (1, 0), (0, 1), (0, 0)]]
    f1 = 2 * tp / (2 * tp + fp + fn)
    mrpc = glue.compute_metrics("MRPC", p, y)
    assert mrpc == pytest.approx({"acc": (tp + tn) / 200, "f1": f1, "acc_and_f1": ((tp + tn) / 200 + f1) / 2})
    mcc = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    logits = np.stack([1 - p, p], axis=1) + rng.random((200, 2)) * 0.1
    assert glue.compute_metrics("cola", logits, y) == pytest.approx({"mcc": mcc})
    assert glue.compute_metrics("qqp", p, y, names=["precision", "recall"]) == \
        pytest.approx({"precision": tp / (tp + fp), "recall": tp / (tp + fn)})

    score = rng.random(100) * 5
    pred = score + rng.normal(0, 1, 100)
    rank = lambda a: np.argsort(np.argsort(a))  # noqa: E731 (no ties in continuous data)
    sts = glue.compute_metrics("sts-b", pred[:, None], score)
    pearson, spearman = np.corrcoef(pred, score)[0, 1], np.corrcoef(rank(pred), rank(score))[0, 1]
    assert sts == pytest.approx({"pearson": pearson, "spearman": spearman, "corr": (pearson + spearman) / 2})
    assert glue.compute_metrics("sts-b", np.ones(100), score)["pearson"] == 0.0
    assert [glue.best_metric_name(t) for t in ("CoLA", "sts-b", "mrpc", "mnli-mm")] == ["mcc", "corr", "acc", "acc"]


def test_metrics_refuse_bad_input():
    with pytest.raises(glue.GlueDataError, match="3 predictions for 2 labels"):
        glue.compute_metrics("rte", [0, 1, 1], [0, 1])
    with pytest.raises(glue.GlueDataError, match="labels are missing.*1 of 2"):
        glue.compute_metrics("rte", [0, 1], [0, -1])
    with pytest.raises(glue.GlueDataError, match="unknown metric 'auc'"):
        glue.compute_metrics("rte", [0, 1], [0, 1], names=["auc"])


# ----------------------------------------------------------------------------------------------
# OFRecord
# ----------------------------------------------------------------------------------------------
def test_varints_round_trip_including_negative_and_large_values():
    values = np.array([[0, 1, 127, 128, 300, 2 ** 31 - 1, -1, -2 ** 31, 2 ** 62, -2 ** 63]])
    flat, counts = ofrecord.encode_varints(values)
    assert counts.tolist() == [1 + 1 + 1 + 2 + 2 + 5 + 10 + 10 + 9 + 10]
    assert flat[:5].tolist() == [0, 1, 127, 0x80, 0x01]  # 128 = 0x80 0x01 in protobuf
    np.testing.assert_array_equal(ofrecord.decode_varints(flat).view(np.int64), values[0])


def test_ofrecord_codec_round_trips_any_columns_without_glue(tmp_path):
    rng = np.random.default_rng(0)
    columns = [("ids", ofrecord.INT64_LIST, rng.integers(-2 ** 40, 2 ** 40, (7, 3))),
               ("score", ofrecord.DOUBLE_LIST, rng.normal(size=(7, 2))),
               ("w", ofrecord.FLOAT_LIST, rng.normal(size=(7, 1)).astype(np.float32))]
    paths = ofrecord.write_split(columns, str(tmp_path / "dev"), num_parts=2)
    assert [os.path.basename(p) for p in paths] == ["dev.of_record-0", "dev.of_record-1"]
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(tmp_path / "dev").st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's private 0700
    back = ofrecord.read_split(str(tmp_path / "dev"), required=("ids",))
    for name, _, values in columns:
        np.testing.assert_array_equal(back[name], values)
    assert back["ids"].dtype == np.int64 and back["score"].dtype == np.float64
    with pytest.raises(ofrecord.OFRecordError, match=r"dev.of_record-0: records without feature\(s\) label"):
        ofrecord.read_split(str(tmp_path / "dev"), required=("ids", "label"))
    with pytest.raises(ofrecord.OFRecordError, match=r"columns of different lengths: \[6, 7\]"):
        ofrecord.write_split(columns + [("x", ofrecord.INT32_LIST, np.zeros((6, 1)))], str(tmp_path / "bad"))
    # the codec sits below glue and needs no framework: of this project it imports only the file-writing module
    project = {name[:-3] for name in os.listdir(ROOT) if name.endswith(".py")}
    with open(os.path.join(ROOT, "ofrecord.py"), encoding="utf-8") as fh:
        imported = set(re.findall(r"^(?:import|from) (\w+)", fh.read(), re.M))
    assert "numpy" in imported and imported & project == {"files"}


def test_ofrecord_round_trip_and_parts(tmp_path):
    f = toy_features(n=10)
    f.label_ids[3] = -1  # an unlabeled (test) row
    paths = glue.write_ofrecord(f, str(tmp_path / "RTE" / "eval"), num_parts=3)
    assert [os.path.basename(p) for p in paths] == ["eval.of_record-0", "eval.of_record-1", "eval.of_record-2"]
    back = glue.read_ofrecord(str(tmp_path / "RTE" / "eval"))
    for name in ("input_ids", "input_mask", "segment_ids", "label_ids"):
        np.testing.assert_array_equal(getattr(back, name), getattr(f, name))
    assert back.label_ids.dtype == np.int64 and back.input_ids.dtype == np.int32

    regression = glue.Features(f.input_ids, f.input_mask, f.segment_ids, np.linspace(0, 5, 10).astype(np.float32))
    glue.write_ofrecord(regression, str(tmp_path / "RTE" / "eval"), num_parts=1)  # replaces the 3 parts
    assert os.listdir(tmp_path / "RTE" / "eval") == ["eval.of_record-0"]
    np.testing.assert_array_equal(glue.read_ofrecord(str(tmp_path / "RTE" / "eval")).label_ids, regression.label_ids)


def test_ofrecord_write_crash_keeps_the_old_files(tmp_path, monkeypatch):
    f = toy_features(n=10)
    split = str(tmp_path / "train")
    glue.write_ofrecord(f, split, num_parts=2)
    before = {n: open(os.path.join(split, n), "rb").read() for n in os.listdir(split)}

    def crash(*args):
        raise KeyboardInterrupt
    monkeypatch.setattr(ofrecord, "serialize_records", crash)
    with pytest.raises(KeyboardInterrupt):
        glue.write_ofrecord(toy_features(n=10, seed=1), split, num_parts=1)
    assert {n: open(os.path.join(split, n), "rb").read() for n in os.listdir(split)} == before
    assert os.listdir(tmp_path) == ["train"]


def test_bad_ofrecord_files_are_named(tmp_path):
    split = tmp_path / "eval"
    glue.write_ofrecord(toy_features(n=4), str(split), num_parts=3)
    data = (split / "eval.of_record-1").read_bytes()
    (split / "eval.of_record-1").write_bytes(data[:-5])
    with pytest.raises(ofrecord.OFRecordError, match=r"eval.of_record-1: record 0 at byte 0 needs \d+ bytes"):
        glue.read_ofrecord(str(split))
    os.remove(split / "eval.of_record-1")
    with pytest.raises(ofrecord.OFRecordError, match=r"eval.of_record-1 is missing"):
        glue.read_ofrecord(str(split))
    with pytest.raises(ofrecord.OFRecordError, match=r"no OFRecord part files"):
        glue.read_ofrecord(str(tmp_path))


@pytest.fixture(scope="module")
def small_tasks(tokenizer):
    """Features of the first rows of RTE dev (classification) and STS-B dev (regression), 32 tokens."""
    out = {}
    for task, folder in (("rte", "RTE"), ("sts-b", "STS-B")):
        p = glue.get_processor(task)
        examples = p.read_examples(shared_path("glue_data", folder), "dev")[:11]
        out[task] = glue.convert_examples_to_features(examples, tokenizer, 32, p)
    return out


def test_oneflow_reads_the_records_written(tmp_path, small_tasks):
    import backend
    flow = backend.framework("oneflow")
    from oneflow.core.record import record_pb2
    for task, f in small_tasks.items():
        split = str(tmp_path / task / "eval")
        glue.write_ofrecord(f, split, num_parts=2)
        reader = flow.nn.OFRecordReader(split, batch_size=len(f), data_part_num=2, part_name_prefix="eval.of_record-",
                                        random_shuffle=False)
        record = reader()
        for name in ("input_ids", "input_mask", "segment_ids"):
            got = flow.nn.OFRecordRawDecoder(name, shape=(32,), dtype=flow.int32)(record).numpy()
            np.testing.assert_array_equal(got, getattr(f, name))
        label_type = flow.float if f.is_regression else flow.int32
        labels = flow.nn.OFRecordRawDecoder("label_ids", shape=(1,), dtype=label_type)(record).numpy()
        np.testing.assert_array_equal(labels[:, 0], f.label_ids)
        real = flow.nn.OFRecordRawDecoder("is_real_example", shape=(1,), dtype=flow.int32)(record).numpy()
        assert real.ravel().tolist() == [1] * len(f)

        # protobuf's own parser agrees, and what protobuf serializes our reader reads back
        with open(os.path.join(split, "eval.of_record-0"), "rb") as fh:
            data = fh.read()
        size = int.from_bytes(data[:8], "little")
        message = record_pb2.OFRecord.FromString(data[8:8 + size])
        assert list(message.feature["input_ids"].int32_list.value) == f.input_ids[0].tolist()
        theirs = tmp_path / task / "theirs" / "theirs.of_record-0"
        theirs.parent.mkdir()
        with open(theirs, "wb") as fh:
            for row in range(3):
                body = message.SerializeToString() if row == 0 else _pb_record(record_pb2, f, row)
                fh.write(len(body).to_bytes(8, "little") + body)
        back = glue.read_ofrecord(str(theirs.parent))
        np.testing.assert_array_equal(back.input_ids, f.input_ids[:3])
        np.testing.assert_array_equal(back.label_ids, f.label_ids[:3])


def _pb_record(record_pb2, f, row):
    m = record_pb2.OFRecord()
    for name in ("input_ids", "input_mask", "segment_ids"):
        m.feature[name].int32_list.value.extend(getattr(f, name)[row].tolist())
    if f.is_regression:
        m.feature["label_ids"].float_list.value.append(float(f.label_ids[row]))
    else:
        m.feature["label_ids"].int32_list.value.append(int(f.label_ids[row]))
    m.feature["is_real_example"].int32_list.value.append(1)
    return m.SerializeToString()


def test_load_features_takes_tsv_or_ofrecord(tmp_path, tokenizer, small_tasks, minilm_dir):
    glue_dir = tmp_path / "glue" / "RTE"
    glue_dir.mkdir(parents=True)
    with open(shared_path("glue_data", "RTE", "dev.tsv"), encoding="utf-8") as fh:
        write(str(glue_dir / "dev.tsv"), "".join(fh.readlines()[:12]))  # the header and 11 rows
    env = dict(os.environ, GLUE_DIR=str(tmp_path / "glue"), OUT_DIR=str(tmp_path / "out"), TASKS="RTE",
               MODEL_DIR=minilm_dir, MAX_SEQ_LENGTH="32", PYTHON=sys.executable)
    run = subprocess.run(["bash", os.path.join(ROOT, "glue_process.sh")], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    want = small_tasks["rte"]
    assert f"RTE dev: 11 records ({want.num_truncated} truncated)" in run.stdout
    assert "no test, train, train_aug split" in run.stdout
    assert os.listdir(tmp_path / "out" / "RTE") == ["eval"]

    sources = [(str(glue_dir), {"tokenizer": minilm_dir, "max_seq_length": 32}),
               (str(tmp_path / "out" / "RTE"), {}), (str(tmp_path / "out" / "RTE" / "eval"), {"max_seq_length": 32})]
    for path, kwargs in sources:
        got = glue.load_features(path, "rte", "dev", **kwargs)
        for name in ("input_ids", "input_mask", "segment_ids", "label_ids"):
            np.testing.assert_array_equal(getattr(got, name), getattr(want, name))
    with pytest.raises(glue.GlueDataError, match="records hold 32 tokens, max_seq_length=64"):
        glue.load_features(str(tmp_path / "out" / "RTE"), "rte", "dev", max_seq_length=64)
    with pytest.raises(glue.GlueDataError, match="integer labels, but sts-b is a regression task"):
        glue.load_features(str(tmp_path / "out" / "RTE"), "sts-b", "dev")
    with pytest.raises(glue.GlueDataError, match=r"eval: holds eval records; split 'train' is train.of_record-<i>"):
        glue.load_features(str(tmp_path / "out" / "RTE" / "eval"), "rte", "train")
    with pytest.raises(glue.GlueDataError, match="tsv input needs a tokenizer"):
        glue.load_features(str(glue_dir), "rte", "dev")
    with pytest.raises(glue.GlueDataError, match="neither train.tsv nor OFRecord part files"):
        glue.load_features(str(glue_dir), "rte", "train", tokenizer=tokenizer, max_seq_length=32)
