"""predict.py and inference.py on tiny random students; GLUE submission files for every task."""
import os

import numpy as np
import pytest

import glue
import inference
import modeling  # bound to the torch backend (conftest sets BACKEND)
import predict
from conftest import save_tiny_classifier, shared_path

SENTENCES = ["a gripping , funny and moving film .", "", "dull .",
             "the plot is a mess , the acting wooden and the jokes fall flat from start to finish .", "", "fine"]


@pytest.fixture(scope="module")
def vocab(minilm_dir):
    return os.path.join(minilm_dir, "vocab.txt")


@pytest.fixture(scope="module")
def classifier(tmp_path_factory, vocab):
    """A random 2-layer classifier with SST-2's label names, as task_distill.py records them."""
    d = tmp_path_factory.mktemp("models") / "sst2"
    save_tiny_classifier(modeling, d, vocab, layers=2, hidden=32, id2label={"0": "0", "1": "1"})
    return str(d)


def write(path, text, mode="w"):
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(path, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": "\n"})) as f:
        f.write(text)
    return str(path)


def direct_logits(model_dir, texts, pairs=None):
    """Logits of each input on its own (batch of one, no padding), the reference for batched runs."""
    student = inference.load_student(model_dir, "torch")
    out = []
    for i, text in enumerate(texts):
        ex = glue.InputExample(str(i), text, pairs[i] if pairs else None, None)
        f = glue.convert_examples_to_features([ex], student.tokenizer, 128, [None])
        n = int(f.lengths[0])
        out.append(student.runner(f.input_ids[:, :n], f.segment_ids[:, :n], f.input_mask[:, :n])[0])
    return np.array(out)


def run_predict(tmp_path, *argv):
    out = str(tmp_path / "out.tsv")
    predict.main([*map(str, argv), "--output", out, "--backend", "torch"])
    with open(out, encoding="utf-8") as f:
        return f.read().split("\n")[:-1]


# ----------------------------------------------------------------------------------------------
# predict.py
# ----------------------------------------------------------------------------------------------
def test_text_file_gives_one_line_per_input_line_in_order(classifier, tmp_path, capsys):
    src = write(tmp_path / "in.txt", "\n".join(SENTENCES) + "\n")
    lines = run_predict(tmp_path, "--model", classifier, "--input", src, "--batch_size", 2)
    assert len(lines) == len(SENTENCES)
    assert [i for i, line in enumerate(lines) if line == ""] == [1, 4]  # blank stays blank, in place
    expected = direct_logits(classifier, [s for s in SENTENCES if s])
    got = np.array([[float(x) for x in line.split("\t")[1:]] for line in lines if line])
    probs = np.exp(expected) / np.exp(expected).sum(1, keepdims=True)
    np.testing.assert_allclose(got, probs, atol=2e-6)  # length-sorted padded batches change nothing
    assert [line.split("\t")[0] for line in lines if line] == [str(k) for k in probs.argmax(1)]
    assert "predictions (torch)" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["in.txt", "out.tsv"]  # no temporary file left behind


def test_stdin_header_and_crlf(classifier, tmp_path, monkeypatch, capsys):
    import io
    import sys
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"dull .\r\n\r\nfine\r\n")))
    predict.main(["--model", classifier, "--header", "--task_name", "SST-2", "--backend", "torch"])
    lines = capsys.readouterr().out.split("\n")[:-1]
    assert lines[0] == "label\tp_0\tp_1" and lines[2] == "" and len(lines) == 4
    p = np.exp(direct_logits(classifier, ["dull .", "fine"]))
    got = [[float(x) for x in lines[k].split("\t")[1:]] for k in (1, 3)]
    np.testing.assert_allclose(got, p / p.sum(1, keepdims=True), atol=2e-6)


def test_pairs_tsv_and_label_names_of_the_task(tmp_path, vocab):
    rte = save_tiny_classifier(modeling, tmp_path / "rte", vocab, layers=2, hidden=32,
                               id2label={"0": "entailment", "1": "not_entailment"})
    a = ["A man is playing a guitar .", "The cat sleeps .", "Nobody came ."]
    b = ["Someone plays music .", "A dog barks loudly at the postman every single morning .", "Everyone came ."]
    src = write(tmp_path / "pairs.tsv", "".join(f"{x}\t{y}\n" for x, y in zip(a, b)))
    lines = run_predict(tmp_path, "--model", rte, "--task_name", "RTE", "--input", src)
    expected = direct_logits(rte, a, b)
    assert [line.split("\t")[0] for line in lines] == [["entailment", "not_entailment"][k] for k in expected.argmax(1)]
    got = np.array([[float(x) for x in line.split("\t")[1:]] for line in lines])
    np.testing.assert_allclose(np.log(got[:, 1] / got[:, 0]), expected[:, 1] - expected[:, 0], atol=1e-4)
    with pytest.raises(predict.InputError, match="labels .* differ from the sst-2 labels"):
        run_predict(tmp_path, "--model", rte, "--task_name", "SST-2", "--input", write(tmp_path / "s.txt", "x\n"))


def test_regression_model_prints_scores(tmp_path, vocab):
    sts = save_tiny_classifier(modeling, tmp_path / "sts", vocab, layers=2, hidden=32, num_labels=1)
    src = write(tmp_path / "pairs.tsv", "A man plays .\tA man plays music .\n\nTwo dogs run .\tA cat sits .\n")
    lines = run_predict(tmp_path, "--model", sts, "--task_name", "STS-B", "--input", src, "--header")
    expected = direct_logits(sts, ["A man plays .", "Two dogs run ."], ["A man plays music .", "A cat sits ."])
    assert lines[0] == "score" and lines[2] == ""
    np.testing.assert_allclose([float(lines[1]), float(lines[3])], expected[:, 0], atol=1e-4)


@pytest.mark.parametrize("content,task,fmt,message", [
    (b"good film\n\xff\xfe bad\n", None, "auto", r"bad\.txt:2: bytes that are not UTF-8"),
    (b"", None, "auto", r"bad\.txt:1: empty input"),
    (b"\n  \n\n", None, "auto", r"bad\.txt:1: no sentence in the input"),
    (b"a\tb\nc\n", "MRPC", "tsv", r"bad\.txt:2: 1 columns, expected 2 \(sentence1<TAB>sentence2\)"),
    (b"one\ntwo\tthree\n", None, "tsv", r"bad\.txt:2: 2 columns, expected 1 \(one sentence, no tab\)"),
    (b"a\tb\tc\n", None, "tsv", r"bad\.txt:1: 3 columns, expected 2 \(sentence1<TAB>sentence2\)"),
    (b"a\tb\n", "QQP", "text", r"QQP takes sentence pairs"),
])
def test_bad_input_names_file_and_line(classifier, tmp_path, content, task, fmt, message):
    src = write(tmp_path / "bad.txt", content, "wb")
    argv = ["--model", classifier, "--input", src, "--input_format", fmt] + (["--task_name", task] if task else [])
    with pytest.raises(predict.InputError, match=message):
        predict.main(argv + ["--backend", "torch"])


def test_over_long_inputs_are_truncated_and_reported_once(classifier, tmp_path, capsys):
    long = " ".join(["word"] * 40)
    src = write(tmp_path / "in.txt", f"{long}\nshort one\n{long} again\n")
    lines = run_predict(tmp_path, "--model", classifier, "--input", src, "--max_seq_length", 16)
    err = capsys.readouterr().err
    assert err.count("truncated") == 1 and "2 of 3 inputs of" in err and "--max_seq_length 16" in err
    assert len(lines) == 3
    with pytest.raises(predict.InputError, match="exceeds the model's max_position_embeddings 128"):
        run_predict(tmp_path, "--model", classifier, "--input", src, "--max_seq_length", 512)


def test_model_without_classifier_is_refused(minilm_dir, tmp_path):
    src = write(tmp_path / "in.txt", "fine\n")
    with pytest.raises(inference.InferenceError, match="has no classifier"):
        run_predict(tmp_path, "--model", minilm_dir, "--input", src)


def test_oneflow_backend_predicts_the_same(classifier, tmp_path):
    src = write(tmp_path / "in.txt", "\n".join(SENTENCES[:4]) + "\n")
    flow_student = inference.load_student(classifier, "oneflow")
    assert flow_student.engine == "oneflow"
    torch_lines = run_predict(tmp_path, "--model", classifier, "--input", src)
    ex = [glue.InputExample(str(i), s, None, None) for i, s in enumerate(SENTENCES[:4]) if s]
    logits, _ = inference.predict_examples(flow_student.runner, ex, flow_student.tokenizer, 64, batch_size=2)
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    got = np.array([[float(x) for x in line.split("\t")[1:]] for line in torch_lines if line])
    np.testing.assert_allclose(got, probs, atol=1e-5)


# ----------------------------------------------------------------------------------------------
# GLUE submission files
# ----------------------------------------------------------------------------------------------
MNLI_HEADER = ("index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\t"
               "sentence2_parse\tsentence1\tsentence2")
# task: (folder, {test file: header}, row(id, a, b) -> cells): the layouts of the GLUE download
TEST_LAYOUTS = {
    "CoLA": ("CoLA", {"test.tsv": "index\tsentence"}, lambda i, a, b: [i, a]),
    "SST-2": ("SST-2", {"test.tsv": "index\tsentence"}, lambda i, a, b: [i, a]),
    "MRPC": ("MRPC", {"test.tsv": "index\t#1 ID\t#2 ID\t#1 String\t#2 String"},
             lambda i, a, b: [i, "1089874", "1089925", a, b]),
    "STS-B": ("STS-B", {"test.tsv": "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2"},
              lambda i, a, b: [i, "main-news", "headlines", "2015", "0001", "none", "none", a, b]),
    "QQP": ("QQP", {"test.tsv": "id\tquestion1\tquestion2"}, lambda i, a, b: [i, a, b]),
    "MNLI": ("MNLI", {"test_matched.tsv": MNLI_HEADER, "test_mismatched.tsv": MNLI_HEADER},
             lambda i, a, b: [i, "31493", "31493c", "travel", "( x )", "( y )", "(ROOT x)", "(ROOT y)", a, b]),
    "QNLI": ("QNLI", {"test.tsv": "index\tquestion\tsentence"}, lambda i, a, b: [i, a, b]),
    "RTE": ("RTE", {"test.tsv": "index\tsentence1\tsentence2"}, lambda i, a, b: [i, a, b]),
    "WNLI": ("WNLI", {"test.tsv": "index\tsentence1\tsentence2"}, lambda i, a, b: [i, a, b]),
}
EXPECTED_FILES = {"CoLA": ["CoLA.tsv"], "SST-2": ["SST-2.tsv"], "MRPC": ["MRPC.tsv"], "STS-B": ["STS-B.tsv"],
                  "QQP": ["QQP.tsv"], "MNLI": ["MNLI-m.tsv", "MNLI-mm.tsv", "AX.tsv"], "QNLI": ["QNLI.tsv"],
                  "RTE": ["RTE.tsv"], "WNLI": ["WNLI.tsv"]}
# Texts of lengths 1..12 characters: the fake model below answers by length; ids out of order.
ROWS = [("12", "x", "first b"), ("3", "xxxxxx", "second b"), ("7", "xxxxxxxxxxx", "third b"), ("0", "xxxx", "4th b")]


def fake_logits(task):
    """A stand-in model: class len(text_a) % C (STS-B: len(text_a) - 3, to leave [0, 5]) and checks columns."""
    processor = glue.get_processor(task)

    def logits_of(examples):
        assert [e.text_a for e in examples] == [a for _, a, _ in ROWS]
        pairs = len(processor.test_text_columns) == 2
        assert [e.text_b for e in examples] == [b if pairs else None for _, _, b in ROWS]
        n = len(processor.labels)
        if processor.is_regression:
            return np.array([[len(e.text_a) - 3.0] for e in examples])
        return np.eye(n)[[len(e.text_a) % n for e in examples]] * 3.0 - 1.0
    return logits_of


def write_test_files(root, task, with_diagnostic=True):
    folder, files, row = TEST_LAYOUTS[task]
    for name, header in files.items():
        write(os.path.join(root, folder, name), "\n".join([header] + ["\t".join(row(*r)) for r in ROWS]) + "\n")
    if task == "MNLI" and with_diagnostic:
        write(os.path.join(root, "diagnostic", "diagnostic.tsv"),
              "index\tsentence1\tsentence2\n" + "".join(f"{i}\t{a}\t{b}\n" for i, a, b in ROWS))
    return os.path.join(root, folder)


@pytest.mark.parametrize("task", list(TEST_LAYOUTS))
def test_submission_files_for_every_task(task, tmp_path):
    data_dir = write_test_files(tmp_path / "glue", task)
    out = tmp_path / "submission"
    paths = glue.write_submissions(task, data_dir, str(out), fake_logits(task))
    assert [os.path.basename(p) for p in paths] == EXPECTED_FILES[task]
    labels = glue.get_processor(task).labels
    for path in paths:
        lines = open(path, encoding="utf-8").read().split("\n")
        assert lines[0] == "index\tprediction" and lines[-1] == ""
        ids, values = zip(*(line.split("\t") for line in lines[1:-1]))
        assert list(ids) == [i for i, _, _ in ROWS]  # the file's ids, in file order
        if task == "STS-B":
            assert list(values) == ["0.000", "3.000", "5.000", "1.000"]  # 1-3 -> 0, 11-3 -> 5: clipped
        else:
            assert list(values) == [labels[len(a) % len(labels)] for _, a, _ in ROWS]
    assert sorted(os.listdir(out)) == sorted(EXPECTED_FILES[task])


def test_label_names_the_benchmark_expects():
    names = {task: glue.get_processor(task).labels for task in TEST_LAYOUTS}
    assert names["MNLI"] == ["contradiction", "entailment", "neutral"] == glue.DIAGNOSTIC.labels
    assert names["QNLI"] == names["RTE"] == ["entailment", "not_entailment"]
    assert all(names[t] == ["0", "1"] for t in ("CoLA", "SST-2", "MRPC", "QQP", "WNLI"))
    text = glue.submission_text("mnli", ["5", "6"], np.array([[0.1, 0.0, 2.0], [3.0, 0.0, 0.0]]))
    assert text == "index\tprediction\n5\tneutral\n6\tcontradiction\n"
    with pytest.raises(glue.GlueDataError, match=r"shape \(2, 2\) for 2 examples; expected \(2, 3\)"):
        glue.submission_text("mnli", ["5", "6"], np.zeros((2, 2)))


def test_mnli_without_diagnostic_skips_ax_and_bad_rows_are_named(tmp_path, caplog):
    data_dir = write_test_files(tmp_path / "glue", "MNLI", with_diagnostic=False)
    paths = glue.write_submissions("mnli-mm", data_dir, str(tmp_path / "out"), fake_logits("mnli"))
    assert [os.path.basename(p) for p in paths] == ["MNLI-m.tsv", "MNLI-mm.tsv"]
    assert "AX.tsv not written" in caplog.text
    write(os.path.join(data_dir, "test_mismatched.tsv"), MNLI_HEADER + "\n1\tonly\tthree\n")
    with pytest.raises(glue.GlueDataError, match=r"test_mismatched\.tsv:2: 3 columns, expected 10"):
        glue.write_submissions("mnli", data_dir, str(tmp_path / "out2"), fake_logits("mnli"))
    assert not os.path.exists(tmp_path / "out2" / "MNLI-mm.tsv")


def test_real_sst2_test_set_through_a_model(classifier, tmp_path):
    """The wiring task_distill.py --do_predict uses: glue.write_submissions + inference.predict_examples."""
    data_dir = shared_path("glue_data", "SST-2")
    student = inference.load_student(classifier, "torch")
    seen = []

    def logits_of(examples):
        seen.extend(examples)
        return inference.predict_examples(student.runner, examples, student.tokenizer, 64, batch_size=256)[0]
    path, = glue.write_submissions("SST-2", data_dir, str(tmp_path), logits_of)
    lines = open(path, encoding="utf-8").read().splitlines()
    assert len(lines) == 1822 and lines[1].startswith("0\t") and lines[-1].startswith("1820\t")
    assert {line.split("\t")[1] for line in lines[1:]} <= {"0", "1"}
    assert seen[0].text_a == "uneasy mishmash of styles and genres ."
    first = direct_logits(classifier, [seen[0].text_a])[0]
    assert lines[1] == f"0\t{int(first.argmax())}"
