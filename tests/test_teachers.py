"""Teachers that are not this project's BERT (teachers.py): tiny random RoBERTa, XLM-R, ELECTRA,
DeBERTa-v2, DistilBERT and ALBERT classifiers built with transformers (no download), each with a
tokenizer of its family's kind (byte-level BPE, SentencePiece-style unigram, WordPiece), distilled
through both stages of task_distill.py into a TinyBERT student that predict.py and transformers load."""
import csv
import os

import numpy as np
import pytest

import checkpoint
import glue
import inference
import make_student
import task_distill
import teachers
from conftest import shared_path, write_task_slice
from tiny_assets import demo_sentences, write_vocab

import modeling  # bound to the torch backend (conftest sets BACKEND)

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

SHAPE = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=48,
             max_position_embeddings=80)
# model_type -> (tokenizer kind, extra config); the vocabulary size comes from the tokenizer
ARCHITECTURES = {
    "roberta": ("bpe", dict(type_vocab_size=1)),
    "xlm-roberta": ("unigram-roberta", dict(type_vocab_size=1)),
    "electra": ("wordpiece", dict(embedding_size=16)),
    "deberta-v2": ("unigram-bert", dict(relative_attention=True, position_biased_input=False, type_vocab_size=0,
                                        pos_att_type=["p2c", "c2p"], max_relative_positions=-1, position_buckets=16)),
    "distilbert": ("wordpiece", dict()),
    "albert": ("unigram-bert", dict(embedding_size=16)),
}


def write_tokenizer(kind, directory):
    """A trained-on-the-demo tokenizer of `kind` in `directory`; returns (vocab size, pad id)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    if kind == "wordpiece":
        path = write_vocab(directory)
        return sum(1 for _ in open(path)), 0
    texts = demo_sentences()
    if kind == "bpe":
        specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
        tok = Tokenizer(models.BPE(unk_token="<unk>"))
        tok.pre_tokenizer, tok.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
        tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=300, special_tokens=specials,
                                                           initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    else:
        specials = (["<s>", "<pad>", "</s>", "<unk>", "<mask>"] if kind == "unigram-roberta"
                    else ["[CLS]", "[PAD]", "[SEP]", "[UNK]", "[MASK]"])
        tok = Tokenizer(models.Unigram())
        tok.pre_tokenizer, tok.decoder = pre_tokenizers.Metaspace(), decoders.Metaspace()
        tok.train_from_iterator(texts, trainers.UnigramTrainer(vocab_size=300, special_tokens=specials,
                                                               unk_token=specials[3]))
    cls_, pad, sep, unk, mask = specials
    if kind == "unigram-bert":  # DeBERTa-v3 / ALBERT: [CLS] a [SEP] b [SEP], types 0 then 1
        tok.post_processor = processors.TemplateProcessing(
            single=f"{cls_} $A {sep}", pair=f"{cls_} $A {sep} $B:1 {sep}:1",
            special_tokens=[(cls_, tok.token_to_id(cls_)), (sep, tok.token_to_id(sep))])
        names = ["input_ids", "token_type_ids", "attention_mask"]
    else:  # RoBERTa / XLM-R: <s> a </s></s> b </s>, no types
        tok.post_processor = processors.RobertaProcessing((sep, tok.token_to_id(sep)), (cls_, tok.token_to_id(cls_)))
        names = ["input_ids", "attention_mask"]
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, cls_token=cls_, sep_token=sep, pad_token=pad, unk_token=unk, mask_token=mask,
        model_input_names=names)
    fast.save_pretrained(str(directory))
    return tok.get_vocab_size(), tok.token_to_id(pad)


@pytest.fixture(scope="module")
def sst2(tmp_path_factory):
    return write_task_slice(tmp_path_factory.mktemp("data") / "SST-2", shared_path("glue_data", "SST-2"), 64, 32)


def write_teacher(model_type, directory, **shape):
    """A random (but complete: classifier included) transformers classifier and its tokenizer (bert:
    transformers' own BERT, on WordPiece), of SHAPE with `shape`'s changes."""
    import torch
    kind, extra = ("wordpiece", {}) if model_type == "bert" else ARCHITECTURES[model_type]
    vocab, pad = write_tokenizer(kind, directory)
    shape = {**SHAPE, **shape}
    if model_type == "distilbert":
        shape = dict(dim=32, n_layers=3, n_heads=4, hidden_dim=48, max_position_embeddings=80)
    config = transformers.AutoConfig.for_model(model_type, vocab_size=vocab, pad_token_id=pad, num_labels=2,
                                               **shape, **extra)
    torch.manual_seed(0)
    transformers.AutoModelForSequenceClassification.from_config(config).save_pretrained(str(directory))
    return str(directory)


def log_rows(run_dir):
    with open(os.path.join(run_dir, "train_log.csv")) as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("model_type", list(ARCHITECTURES))
def test_any_transformers_teacher_distils_through_both_stages(model_type, sst2, tmp_path, capsys):
    teacher = write_teacher(model_type, tmp_path / "teacher")
    student = str(tmp_path / "student")
    make_student.main(["--teacher_model", teacher, "--output_dir", student, "--num_hidden_layers", "2",
                       "--hidden_size", "16", "--num_attention_heads", "2", "--intermediate_size", "32"])
    common = ["--task_name", "SST-2", "--data_dir", sst2, "--teacher_model", teacher, "--max_seq_length", "32",
              "--train_batch_size", "16", "--seed", "1"]
    task_distill.main(common + ["--intermediate_distill", "--student_model", student, "--output_dir",
                                str(tmp_path / "s1"), "--num_train_epochs", "4", "--learning_rate", "3e-3"])
    printed = capsys.readouterr().out
    # 3 teacher layers, 2 student layers: evenly spaced; heads 4 vs 2 -> the head-free KL
    assert "layer map (student->teacher): emb->emb, 1->2, 2->3; att_loss kl" in printed
    rows = log_rows(tmp_path / "s1")
    for term in ("dev_att_loss", "dev_rep_loss"):
        first, last = float(rows[0][term]), float(rows[-1][term])
        assert last < 0.9 * first, (term, first, last)
    task_distill.main(common + ["--pred_distill", "--student_model", str(tmp_path / "s1"), "--output_dir",
                                str(tmp_path / "s2"), "--num_train_epochs", "3", "--learning_rate", "3e-3"])
    rows = log_rows(tmp_path / "s2")
    assert float(rows[-1]["cls_loss"]) < float(rows[0]["cls_loss"])

    # the student carries the teacher's tokenizer and is read alike by predict.py's loader and transformers
    out = str(tmp_path / "s2")
    served = inference.load_student(out, "torch")
    reference = transformers.AutoTokenizer.from_pretrained(teacher) if not os.path.isfile(
        os.path.join(teacher, "vocab.txt")) else None
    if reference is not None:
        assert served.tokenizer.get_vocab() == reference.get_vocab()
    examples = [glue.InputExample("1", "a gripping , funny film", None, None),
                glue.InputExample("2", "dull", "not worth it", None)]
    ours = inference.predict_examples(served.runner, examples, served.tokenizer, 32)[0]
    pipe = transformers.pipeline("text-classification", model=out, tokenizer=out, top_k=None)
    theirs = pipe([{"text": "a gripping , funny film"}, {"text": "dull", "text_pair": "not worth it"}],
                  function_to_apply="none")
    theirs = np.array([[d["score"] for d in sorted(r, key=lambda d: d["label"])] for r in theirs])
    np.testing.assert_allclose(ours, theirs, atol=1e-4)


def test_pair_layout_follows_the_teacher_tokenizer(tmp_path):
    """RoBERTa's <s> a </s></s> b </s> without token types; DeBERTa's [CLS] a [SEP] b [SEP] with types:
    the features are what the tokenizer itself gives for the pair."""
    for kind in ("bpe", "unigram-bert"):
        write_tokenizer(kind, tmp_path / kind)
        tok = checkpoint.load_tokenizer(str(tmp_path / kind))
        feats = glue.convert_examples_to_features([glue.InputExample("1", "good film", "bad plot", None)], tok, 40,
                                                  [None])
        own = tok("good film", "bad plot")
        n = len(own["input_ids"])
        assert feats.input_ids[0, :n].tolist() == own["input_ids"] and feats.input_mask[0].sum() == n
        assert feats.segment_ids[0, :n].tolist() == own.get("token_type_ids", [0] * n)
        assert (kind == "bpe") == ("token_type_ids" not in own)


def test_minilm_through_transformers_gives_the_losses_of_modeling_py(minilm_dir, tmp_path):
    """all-MiniLM-L6-v2 (real weights) as a teacher read by modeling.py and by transformers' Auto
    classes: with the same attention quantity (scores rebuilt from the hooked projections, or the
    probabilities for the KL) both give the same stage-1 and stage-2 losses."""
    import torch
    from conftest import ROOT
    base = modeling.TinyBertForSequenceClassification.from_pretrained(minilm_dir, num_labels=2, fit_size=384)
    teacher_dir = str(tmp_path / "teacher")
    base.save_pretrained(teacher_dir, exclude=("fit_dense.",))  # one classifier for both readers
    processor = glue.get_processor("SST-2")
    tokenizer = checkpoint.load_tokenizer(teacher_dir)
    examples = processor.read_examples(os.path.join(ROOT, "data", "demo", "SST-2"), "dev")[:12]
    feats = glue.convert_examples_to_features(examples, tokenizer, 40, processor)
    batch = task_distill.to_tensors(feats, np.arange(len(feats)), int(feats.lengths.max()), "cpu")
    torch.manual_seed(0)
    student = modeling.TinyBertForSequenceClassification(
        modeling.BertConfig(vocab_size=30522, hidden_size=48, num_hidden_layers=3, num_attention_heads=12,
                            intermediate_size=64), num_labels=2, fit_size=384).eval()
    results = {}
    for through in ("modeling", "transformers"):
        model = teachers.load_teacher(teacher_dir, 2, "cpu", modeling, through=through)
        teacher = task_distill.Teacher(model, processor, "cpu")
        for att in ("mse", "kl"):
            matching = task_distill.make_teacher(model, student, processor, "cpu", att_loss=att)[1]
            assert matching.layer_map == [2, 4, 6] and matching.att_loss_name == att
            with torch.no_grad():
                one = task_distill.Losses(task_distill.Mode.STAGE1, student, teacher, matching)(batch)
                two = task_distill.Losses(task_distill.Mode.STAGE2, student, teacher, matching)(batch)
            results[through, att] = {k: float(v) for k, v in {**one, "cls_loss": two["cls_loss"]}.items()}
    assert isinstance(model, teachers.AutoClassifier) and model.scores
    for att in ("mse", "kl"):
        ours, auto = results["modeling", att], results["transformers", att]
        assert set(ours) == {"att_loss", "rep_loss", "cls_loss", "loss"}
        for term in ours:
            assert auto[term] == pytest.approx(ours[term], abs=1e-5), (att, term)
        assert ours["att_loss"] > 1e-3 and ours["rep_loss"] > 1e-3  # a random student: values that could differ


def test_teacher_fine_tuning_takes_a_transformers_directory(sst2, tmp_path):
    """--finetune on a RoBERTa directory trains it as it is and writes it in transformers' layout
    (with its tokenizer and the task's labels), which then loads as a teacher and in --do_eval."""
    import torch
    init = write_teacher("roberta", tmp_path / "init")
    out = str(tmp_path / "ft")
    task_distill.main(["--finetune", "--task_name", "SST-2", "--data_dir", sst2, "--student_model", init,
                       "--output_dir", out, "--num_train_epochs", "2", "--learning_rate", "1e-3",
                       "--max_seq_length", "32", "--model_selection", "last"])
    rows = log_rows(out)
    assert len(rows) == 2 and float(rows[-1]["cls_loss"]) < float(rows[0]["cls_loss"])
    assert teachers.model_type(out) == "roberta" and os.path.isfile(os.path.join(out, "tokenizer.json"))
    trained = teachers.load_teacher(out, 2, "cpu", modeling)
    before = teachers.load_teacher(init, 2, "cpu", modeling)
    assert trained.config.extra["id2label"] == {"0": "0", "1": "1"}
    ids = torch.tensor([[0, 5, 6, 7, 2]])
    with torch.no_grad():
        assert not torch.allclose(trained(ids, None, torch.ones_like(ids))[0], before(ids, None, torch.ones_like(ids))[0])
    results = task_distill.main(["--do_eval", "--task_name", "SST-2", "--data_dir", sst2, "--student_model", out,
                                 "--output_dir", str(tmp_path / "eval"), "--max_seq_length", "32"])
    assert results["num_examples"] == 32 and "accuracy" in results


def test_a_bpe_student_exports_to_onnx_with_its_tokenizer(sst2, tmp_path):
    """export_onnx.py carries tokenizer.json in the file's metadata: the .onnx alone tokenizes as the
    student directory does and gives its logits."""
    pytest.importorskip("onnxruntime")
    import export_onnx
    teacher = write_teacher("roberta", tmp_path / "teacher")
    student = str(tmp_path / "student")
    make_student.main(["--teacher_model", teacher, "--output_dir", student, "--num_hidden_layers", "2",
                       "--hidden_size", "16", "--num_attention_heads", "2", "--intermediate_size", "32"])
    out = str(tmp_path / "s2")
    task_distill.main(["--pred_distill", "--task_name", "SST-2", "--data_dir", sst2, "--teacher_model", teacher,
                       "--student_model", student, "--output_dir", out, "--num_train_epochs", "1",
                       "--max_seq_length", "32"])
    onnx_path = str(tmp_path / "student.onnx")
    export_onnx.main(["--model", out, "--output", onnx_path])
    served, exported = inference.load_student(out, "torch"), inference.load_student(onnx_path)
    assert exported.tokenizer.get_vocab() == served.tokenizer.get_vocab()
    examples = [glue.InputExample("1", "a gripping , funny film", "dull", None)]
    np.testing.assert_allclose(inference.predict_examples(exported.runner, examples, exported.tokenizer, 32)[0],
                               inference.predict_examples(served.runner, examples, served.tokenizer, 32)[0], atol=1e-4)


def student_texts_to_teacher(teacher, student, data_dir):
    """(teacher features, the student's features with its ids mapped to the teacher's) of the task's dev
    split and a pair of its sentences: what distillation feeds the teacher from a trimmed student's batch."""
    examples = glue.get_processor("SST-2").read_examples(data_dir, "dev")
    examples.append(glue.InputExample("pair", examples[0].text_a, examples[1].text_a, None))
    ids = checkpoint.read_teacher_ids(student)[0]
    theirs = glue.convert_examples_to_features(examples, checkpoint.load_tokenizer(teacher), 64, [None])
    ours = glue.convert_examples_to_features(examples, checkpoint.load_tokenizer(student), 64, [None])
    return theirs, ours, ids


@pytest.mark.parametrize("model_type", ["roberta", "electra", "deberta-v2"])
def test_a_trimmed_vocabulary_gives_the_teacher_its_own_tokens(model_type, sst2, tmp_path, capsys):
    """BPE (every single character kept), WordPiece (vocab.txt) and Unigram with [CLS]/[SEP]: the
    trimmed tokenizer's ids, mapped through teacher_token_ids.json, are the teacher tokenizer's ids for
    the task's text, special tokens, padding and token types included."""
    teacher = write_teacher(model_type, tmp_path / "teacher")
    student = str(tmp_path / "student")
    make_student.main(["--teacher_model", teacher, "--output_dir", student, "--num_hidden_layers", "2",
                       "--hidden_size", "16", "--num_attention_heads", "2", "--intermediate_size", "32",
                       "--trim_vocab", sst2, "--task_name", "SST-2"])
    assert "checked: the student's tokenizer gives the teacher's tokens for 96 of 96 texts\n" in capsys.readouterr().out
    theirs, ours, ids = student_texts_to_teacher(teacher, student, sst2)
    np.testing.assert_array_equal(ids[ours.input_ids], theirs.input_ids)
    np.testing.assert_array_equal(ours.segment_ids, theirs.segment_ids)
    np.testing.assert_array_equal(ours.input_mask, theirs.input_mask)
    assert not any(os.path.isfile(os.path.join(student, n)) for n in ("vocab.json", "merges.txt", "spm.model"))


def test_a_trimmed_xlmr_student_distils_predicts_and_loads_in_transformers(sst2, tmp_path, capsys):
    """XLM-R (Unigram, <s> a </s></s> b </s>) trimmed to the task's tokens: the printed parameter counts
    are the student's, the teacher fed the mapped ids gives the logits it gives on its own features, both
    stages run, and predict.py, transformers' pipeline and the map agree on the trimmed student."""
    import torch
    import predict
    teacher = write_teacher("xlm-roberta", tmp_path / "teacher")
    shape = ["--num_hidden_layers", "2", "--hidden_size", "16", "--num_attention_heads", "2", "--intermediate_size", "32"]
    make_student.main(["--teacher_model", teacher, "--output_dir", str(tmp_path / "full")] + shape)
    student = str(tmp_path / "student")
    make_student.main(["--teacher_model", teacher, "--output_dir", student, "--trim_vocab", sst2,
                       "--task_name", "SST-2"] + shape)
    printed = capsys.readouterr().out
    count = lambda d: sum(int(v.size) for v in checkpoint.load_state_dict(d).values())
    kept = len(checkpoint.read_teacher_ids(student)[0])
    assert 5 < kept < 299 and checkpoint.read_json(os.path.join(student, "config.json"))["vocab_size"] == kept
    assert (f"student parameters: {count(str(tmp_path / 'full')):,} with the teacher's 299-token vocabulary -> "
            f"{count(student):,} with the {kept:,} tokens the task uses") in printed
    assert count(str(tmp_path / "full")) - count(student) == (299 - kept) * 16

    # the teacher on the student's batch (mapped) sees what it sees on its own features
    processor = glue.get_processor("SST-2")
    model = teachers.load_teacher(teacher, 2, "cpu", modeling)
    theirs, ours, ids = student_texts_to_teacher(teacher, student, sst2)
    rows = np.arange(len(ours))
    fed = task_distill.Teacher(model, processor, "cpu", teacher_ids=ids)(task_distill.to_tensors(ours, rows, 64, "cpu"))
    with torch.no_grad():
        own = model(*(torch.tensor(a.astype(np.int64)) for a in (theirs.input_ids, theirs.segment_ids,
                                                                  theirs.input_mask)))
    torch.testing.assert_close(fed[0], own[0])
    torch.testing.assert_close(fed[2][-1], own[2][-1])

    common = ["--task_name", "SST-2", "--data_dir", sst2, "--teacher_model", teacher, "--max_seq_length", "32",
              "--train_batch_size", "16", "--seed", "1", "--learning_rate", "3e-3"]
    task_distill.main(common + ["--intermediate_distill", "--student_model", student, "--output_dir",
                                str(tmp_path / "s1"), "--num_train_epochs", "4"])
    rows = log_rows(tmp_path / "s1")
    assert float(rows[-1]["dev_rep_loss"]) < 0.9 * float(rows[0]["dev_rep_loss"])
    out = str(tmp_path / "s2")
    task_distill.main(common + ["--pred_distill", "--student_model", str(tmp_path / "s1"), "--output_dir", out,
                                "--num_train_epochs", "2"])
    assert checkpoint.read_teacher_ids(out)[0].tolist() == ids.tolist()  # carried through both stages

    texts = [glue.InputExample("1", "a gripping , funny film", None, None), glue.InputExample("2", "dull", None, None)]
    served = inference.load_student(out, "torch")
    ours_logits = inference.predict_examples(served.runner, texts, served.tokenizer, 32)[0]
    pipe = transformers.pipeline("text-classification", model=out, tokenizer=out, top_k=None)
    theirs_logits = np.array([[d["score"] for d in sorted(r, key=lambda d: d["label"])]
                              for r in pipe([e.text_a for e in texts], function_to_apply="none")])
    np.testing.assert_allclose(ours_logits, theirs_logits, atol=1e-4)
    (tmp_path / "in.txt").write_text("a gripping , funny film\ndull\n")
    predict.main(["--model", out, "--input", str(tmp_path / "in.txt"), "--output", str(tmp_path / "out.tsv"),
                  "--max_seq_length", "32"])
    lines = (tmp_path / "out.tsv").read_text().splitlines()
    probs = np.exp(ours_logits) / np.exp(ours_logits).sum(1, keepdims=True)
    assert len(lines) == 2 and np.allclose([[float(x) for x in l.split("\t")[1:]] for l in lines], probs, atol=1e-4)

    # a trimmed student refuses a teacher whose tokens its map does not lead to
    other = write_teacher("deberta-v2", tmp_path / "other")  # the same Unigram pieces, other special tokens
    with pytest.raises(ValueError, match="not trimmed from teacher"):
        task_distill.main(common + ["--pred_distill", "--student_model", student, "--teacher_model", other,
                                    "--output_dir", str(tmp_path / "bad")])


@pytest.mark.parametrize("model_type", ["xlm-roberta", "bert"])
def test_init_from_teacher_copies_its_embeddings_and_every_kth_layer(model_type, sst2, tmp_path, capsys):
    """--init_from_teacher: student layer i is teacher layer map[i] tensor for tensor (RoBERTa's position
    table shifted past its padding row; with --trim_vocab the kept rows of its word embeddings); a copy
    of every layer computes the teacher's hidden states; a 2-layer copy distils through both stages."""
    import torch
    teacher = write_teacher(model_type, tmp_path / "teacher")
    trim = ["--trim_vocab", sst2, "--task_name", "SST-2"] if model_type == "xlm-roberta" else []
    student = str(tmp_path / "student")
    make_student.main(["--teacher_model", teacher, "--output_dir", student, "--num_hidden_layers", "2",
                       "--init_from_teacher"] + trim)
    assert "initialised from the teacher: embeddings and layers 2, 3 as student layers 1..2" in capsys.readouterr().out
    prefix = "roberta." if model_type == "xlm-roberta" else "bert."
    theirs = checkpoint.load_state_dict(teacher)
    ours = checkpoint.load_state_dict(student)
    assert checkpoint.read_json(os.path.join(student, "config.json"))["hidden_size"] == 32
    for i, t in enumerate([2, 3]):
        names = [k for k in ours if k.startswith(f"bert.encoder.layer.{i}.")]
        assert len(names) == 16
        for name in names:
            source = prefix + f"encoder.layer.{t - 1}." + name.split(".", 4)[4]
            np.testing.assert_array_equal(ours[name], theirs[source])
    words = theirs[prefix + "embeddings.word_embeddings.weight"]
    ids = checkpoint.read_teacher_ids(student)[0] if trim else np.arange(len(words))
    np.testing.assert_array_equal(ours["bert.embeddings.word_embeddings.weight"], words[ids])
    offset = 2 if model_type == "xlm-roberta" else 0  # padding_idx 1, first position 2
    positions = ours["bert.embeddings.position_embeddings.weight"]
    np.testing.assert_array_equal(positions, theirs[prefix + "embeddings.position_embeddings.weight"][offset:offset + len(positions)])

    whole = str(tmp_path / "whole")
    make_student.main(["--teacher_model", teacher, "--output_dir", whole, "--num_hidden_layers", "3",
                       "--init_from_teacher"] + trim)
    copy = modeling.BertModel.from_pretrained(whole, verbose=False).eval()
    model = teachers.load_teacher(teacher, 2, "cpu", modeling, through="transformers")
    student_ids = torch.tensor([[0, 5, 6, 7, 8, 9, 2]])
    teacher_ids = torch.tensor(ids)[student_ids]
    with torch.no_grad():
        hidden = copy(student_ids, torch.zeros_like(student_ids), torch.ones_like(student_ids))[2]
        reference = model(teacher_ids, torch.zeros_like(teacher_ids), torch.ones_like(teacher_ids))[2]
    assert len(hidden) == len(reference) == 4
    for a, b in zip(hidden, reference):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)

    common = ["--task_name", "SST-2", "--data_dir", sst2, "--teacher_model", teacher, "--max_seq_length", "32",
              "--train_batch_size", "16", "--seed", "1", "--learning_rate", "1e-3"]
    task_distill.main(common + ["--intermediate_distill", "--student_model", student, "--output_dir",
                                str(tmp_path / "s1"), "--num_train_epochs", "2"])
    assert "att_loss mse" in capsys.readouterr().out  # the teacher's heads and width: the paper's loss
    task_distill.main(common + ["--pred_distill", "--student_model", str(tmp_path / "s1"), "--output_dir",
                                str(tmp_path / "s2"), "--num_train_epochs", "1"])
    assert np.isfinite(float(log_rows(tmp_path / "s2")[-1]["cls_loss"]))


@pytest.mark.parametrize("model_type,refusal", [("electra", "embedding_size 16"), ("deberta-v2", "BERT-shaped")])
def test_init_from_teacher_refuses_layers_it_cannot_copy(model_type, refusal, tmp_path):
    teacher = write_teacher(model_type, tmp_path / "teacher")
    with pytest.raises(ValueError, match=refusal):
        make_student.main(["--teacher_model", teacher, "--output_dir", str(tmp_path / "s"), "--init_from_teacher"])
    roberta = write_teacher("roberta", tmp_path / "roberta")
    for flag, value in (("--hidden_size", "0"), ("--num_hidden_layers", "0"), ("--intermediate_size", "-4")):
        with pytest.raises(SystemExit):  # argparse's one line, not the default size taken in silence
            make_student.main(["--teacher_model", roberta, "--output_dir", str(tmp_path / "s"), flag, value])
        assert not os.path.exists(tmp_path / "s")
    with pytest.raises(ValueError, match="cannot widen it: hidden_size 64 .the teacher's is 32."):
        make_student.main(["--teacher_model", roberta, "--output_dir", str(tmp_path / "s"), "--init_from_teacher",
                           "--hidden_size", "64"])
    with pytest.raises(ValueError, match="cannot widen it: attention head size 16 .the teacher's is 8."):
        make_student.main(["--teacher_model", roberta, "--output_dir", str(tmp_path / "s"), "--init_from_teacher",
                           "--num_attention_heads", "2"])


def test_init_from_teacher_narrower_keeps_evenly_spaced_units(sst2, tmp_path, capsys):
    """--init_from_teacher with a smaller width: every tensor is the teacher's at the same evenly spaced
    hidden units, whole heads cut to the student's head size, evenly spaced feed-forward units (indices
    worked out here by hand, not by the code under test); the cut copy's hidden states point the
    teacher's way at the kept units, where a random start's do not; it distils through stage 1."""
    import torch
    teacher = write_teacher("bert", tmp_path / "teacher")  # 3 layers x 32 (4 heads of 8), feed-forward 48
    student = str(tmp_path / "student")
    make_student.main(["--teacher_model", teacher, "--output_dir", student, "--num_hidden_layers", "3",
                       "--layer_map", "1,2,3", "--init_from_teacher", "--hidden_size", "24", "--num_attention_heads",
                       "4", "--intermediate_size", "36"])
    assert ("narrower than the teacher, by uniform weight selection (the same evenly spaced units in every tensor): "
            "hidden_size 32 -> 24, intermediate_size 48 -> 36") in capsys.readouterr().out
    hidden = [round(i * 31 / 23) for i in range(24)]   # 0, 1, 3, 4, 5, 7, ... 31: 24 of 32, ends included
    heads = [h * 8 + j for h in range(4) for j in (0, 1, 3, 4, 6, 7)]  # 6 of each head's 8
    inner = [round(i * 47 / 35) for i in range(36)]
    assert len(set(hidden)) == 24 and len(set(inner)) == 36
    theirs, ours = checkpoint.load_state_dict(teacher), checkpoint.load_state_dict(student)
    cuts = {"embeddings.word_embeddings.weight": (slice(None), hidden), "embeddings.LayerNorm.weight": (hidden,),
            "encoder.layer.1.attention.self.key.weight": (heads, hidden),
            "encoder.layer.1.attention.self.key.bias": (heads,),
            "encoder.layer.1.attention.output.dense.weight": (hidden, heads),
            "encoder.layer.2.intermediate.dense.weight": (inner, hidden),
            "encoder.layer.2.output.dense.weight": (hidden, inner), "encoder.layer.2.output.dense.bias": (hidden,),
            "encoder.layer.2.output.LayerNorm.bias": (hidden,), "pooler.dense.weight": (hidden, hidden)}
    for name, index in cuts.items():
        expected = theirs["bert." + name][np.ix_(*[np.arange(len(theirs["bert." + name])) if isinstance(i, slice)
                                                   else np.array(i) for i in index])]
        np.testing.assert_array_equal(ours["bert." + name], expected, err_msg=name)

    model = teachers.load_teacher(teacher, 2, "cpu", modeling, through="transformers")
    ids = torch.tensor([[2, 5, 6, 7, 8, 9, 10, 11, 3]])
    with torch.no_grad():
        reference = model(ids, torch.zeros_like(ids), torch.ones_like(ids))[2]
    for path, low, high in ((student, 0.5, 1.0), (None, -1.0, 0.5)):
        copy = (modeling.BertModel.from_pretrained(path, verbose=False) if path else
                modeling.BertModel(modeling.BertConfig.from_json_file(os.path.join(student, "config.json")))).eval()
        with torch.no_grad():
            ours_hidden = copy(ids, torch.zeros_like(ids), torch.ones_like(ids))[2]
        for layer, (a, b) in enumerate(zip(ours_hidden, reference)):
            cosine = torch.nn.functional.cosine_similarity(a[0], b[0][:, hidden], dim=-1).mean().item()
            assert low < cosine <= high + 1e-6, (path, layer, cosine)

    common = ["--task_name", "SST-2", "--data_dir", sst2, "--teacher_model", teacher, "--max_seq_length", "32",
              "--train_batch_size", "16", "--seed", "1", "--intermediate_distill", "--student_model", student]
    task_distill.main(common + ["--output_dir", str(tmp_path / "s1"), "--num_train_epochs", "2", "--learning_rate",
                                "1e-3"])
    assert "att_loss mse" in capsys.readouterr().out  # the teacher's head count: the paper's loss still applies
    rows = log_rows(tmp_path / "s1")
    assert float(rows[-1]["dev_rep_loss"]) < float(rows[0]["dev_rep_loss"])
    # the teacher read by modeling.py (a BERT directory's default) and, from the command line, through
    # transformers, with the student held still (learning rate 0): the same dev losses
    losses = {}
    for through in ("auto", "transformers"):
        task_distill.main(common + ["--output_dir", str(tmp_path / through), "--num_train_epochs", "1",
                                    "--learning_rate", "0", "--teacher_through", through])
        read = {"auto": "read by modeling.py",
                "transformers": "a bert read through transformers' AutoModelForSequenceClassification"}[through]
        assert f"teacher {teacher}: {read}\n" in capsys.readouterr().out
        losses[through] = {k: float(v) for k, v in log_rows(tmp_path / through)[-1].items() if k.startswith("dev_")}
    assert {"dev_att_loss", "dev_rep_loss"} <= set(losses["auto"])
    for term, value in losses["auto"].items():
        assert losses["transformers"][term] == pytest.approx(value, rel=1e-4), term


def test_general_distillation_from_a_transformers_masked_lm(tmp_path, capsys):
    """A tiny RoBERTa masked LM (byte-level BPE) as general distillation's teacher: the corpus is
    pregenerated with its tokenizer, its 4 heads against the student's 2 take the KL, both losses fall,
    and the general student carries the teacher's tokenizer into task distillation's loaders."""
    import torch
    import general_distill
    import pregenerate_training_data
    from tiny_assets import demo_sentences
    teacher = tmp_path / "teacher"
    vocab, pad = write_tokenizer("bpe", teacher)
    config = transformers.AutoConfig.for_model("roberta", vocab_size=vocab, pad_token_id=pad, type_vocab_size=1,
                                               **SHAPE)
    torch.manual_seed(0)
    transformers.AutoModelForMaskedLM.from_config(config).save_pretrained(str(teacher))
    sentences = demo_sentences()
    corpus = tmp_path / "corpus.txt"  # documents of 8 sentences, a blank line between
    corpus.write_text("\n\n".join("\n".join(sentences[i:i + 8]) for i in range(0, len(sentences), 8)) + "\n")
    pregenerate_training_data.main(["--train_corpus", str(corpus), "--bert_model", str(teacher), "--output_dir",
                                    str(tmp_path / "data"), "--max_seq_len", "32", "--num_workers", "1",
                                    "--epochs_to_generate", "1"])
    student = str(tmp_path / "student")
    make_student.main(["--teacher_model", str(teacher), "--output_dir", student, "--num_hidden_layers", "2",
                       "--hidden_size", "16", "--num_attention_heads", "2", "--intermediate_size", "32"])
    out = tmp_path / "general"
    general_distill.main(["--pregenerated_data", str(tmp_path / "data"), "--teacher_model", str(teacher),
                          "--student_model", student, "--continue_train", "--output_dir", str(out),
                          "--num_train_epochs", "3", "--train_batch_size", "8", "--learning_rate", "1e-2",
                          "--logging_steps", "1", "--no-gpu"])
    assert "layer map (student->teacher): emb->emb, 1->2, 2->3; att_loss kl" in capsys.readouterr().out
    rows = log_rows(out)
    for term in ("att_loss", "rep_loss"):
        assert float(rows[-1][term]) < 0.8 * float(rows[0][term]), term
    assert checkpoint.load_tokenizer(str(out)).get_vocab() == checkpoint.load_tokenizer(str(teacher)).get_vocab()
    loaded = teachers.load_classifier(str(out), 2, modeling, fit_size=None, verbose=False)
    assert loaded.config.type_vocab_size == 2 and loaded.fit_dense.weight.shape == (32, 16)


def test_readme_own_teacher_commands_as_written(sst2, tmp_path):
    """The README's "Your own teacher" block, run with bash as it is written, in a copy of the repository
    where my_roberta is a tiny random RoBERTa and data/glue_data/SST-2 a slice of SST-2: the teacher is
    fine-tuned, the student cut from its layers on the task's tokens, and the wrapper's two stages give a
    student that predict.py reads."""
    import shutil
    import subprocess
    import sys
    from conftest import ROOT
    from test_wrappers_in_order import copy_repository
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    block = text.split("### Your own teacher", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    repo = tmp_path / "repo"
    copy_repository(repo)
    os.symlink(os.path.dirname(os.path.dirname(sys.executable)), repo / ".venv")  # the README's .venv/bin/python
    write_teacher("roberta", repo / "my_roberta", hidden_size=384, num_hidden_layers=4, num_attention_heads=12,
                  intermediate_size=1536)  # wider than the README's student
    shutil.copytree(sst2, repo / "data" / "glue_data" / "SST-2")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHON", "VENV", "TASK_NAME", "EXTRA_ARGS")}
    env.update(TOKENIZERS_PARALLELISM="false")
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "a roberta read through transformers' AutoModelForSequenceClassification" in done.stdout
    assert "narrower than the teacher, by uniform weight selection" in done.stdout
    student = repo / "models" / "student_model" / "SST-2"
    assert checkpoint.read_json(str(student / "config.json"))["hidden_size"] == 312
    assert os.path.isfile(student / "teacher_token_ids.json")  # the trimmed vocabulary travelled with it
    predicted = subprocess.run([str(repo / ".venv" / "bin" / "python"), "predict.py", "--model", str(student),
                                "--no-gpu"], cwd=repo, env=env, input="a gripping , funny film .\n",
                               capture_output=True, text=True, timeout=300)
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    label, probabilities = predicted.stdout.strip().split("\t", 1)
    assert label in ("0", "1") and abs(sum(float(p) for p in probabilities.split("\t")) - 1) < 1e-4


def test_fine_tuning_a_transformers_directory_resumes_to_the_same_model(sst2, tmp_path):
    """--finetune on a RoBERTa directory, killed mid-run (SIGKILL after step 3 of 6) and run again with
    --resume: the same weights and the same log as the run that was never stopped."""
    import subprocess
    import sys
    from conftest import ROOT
    init = write_teacher("roberta", tmp_path / "init")
    common = ["--finetune", "--task_name", "SST-2", "--data_dir", sst2, "--student_model", init, "--num_train_epochs",
              "3", "--learning_rate", "1e-3", "--max_seq_length", "32", "--eval_step", "2", "--model_selection", "last"]
    env = dict(os.environ, BACKEND="torch", TOKENIZERS_PARALLELISM="false")

    def run(out, *extra, kill_after=None):
        killer = [os.path.join(ROOT, "tests", "kill_after.py"), str(kill_after)] if kill_after else []
        return subprocess.run([sys.executable, *killer, os.path.join(ROOT, "task_distill.py"), *common,
                               "--output_dir", str(tmp_path / out), *extra], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=600)

    whole = run("whole")
    assert whole.returncode == 0, whole.stderr[-2000:]
    killed = run("killed", kill_after=3)
    assert killed.returncode == -9, killed.stderr[-2000:]
    resumed = run("killed", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming at epoch 0, batch 2, step 2" in resumed.stdout  # the step-2 checkpoint, end of epoch 0
    a = checkpoint.load_state_dict(str(tmp_path / "whole"))
    b = checkpoint.load_state_dict(str(tmp_path / "killed"))
    start = checkpoint.load_state_dict(init)
    assert a.keys() == b.keys() and max(float(np.abs(a[k] - b[k]).max()) for k in a) < 1e-6
    assert max(float(np.abs(a[k] - start[k]).max()) for k in a) > 1e-4  # it did train
    assert teachers.model_type(str(tmp_path / "killed")) == "roberta"
    steps = lambda out: [(r["step"], r["cls_loss"], r["dev_acc"]) for r in log_rows(tmp_path / out)]
    assert steps("killed") == steps("whole") and [s[0] for s in steps("whole")] == ["2", "4", "6"]


def test_reading_a_teacher_draws_no_random_numbers(tmp_path):
    """Each way of reading a teacher (modeling.py, transformers' Auto classes, general distillation's
    encoder) leaves the random state as it found it, so the student's new tensors follow the seed alone."""
    import torch
    import general_distill
    teacher = write_teacher("bert", tmp_path / "bert")
    roberta = write_teacher("roberta", tmp_path / "roberta")
    loads = {"modeling": lambda: teachers.load_teacher(teacher, 2, "cpu", modeling, through="modeling"),
             "transformers": lambda: teachers.load_teacher(teacher, 2, "cpu", modeling, through="transformers"),
             "general, bert": lambda: general_distill.load_teacher(teacher, "cpu"),
             "general, roberta": lambda: general_distill.load_teacher(roberta, "cpu")}
    for name, load in loads.items():
        torch.manual_seed(7)
        expected = torch.rand(3)
        torch.manual_seed(7)
        load()
        assert torch.equal(torch.rand(3), expected), name
    with teachers.rng_untouched():  # what the guard undoes: building a model does draw
        torch.manual_seed(7)
        modeling.BertModel(modeling.BertConfig(vocab_size=10, hidden_size=8, num_hidden_layers=1,
                                               num_attention_heads=2, intermediate_size=8))
        assert not torch.equal(torch.rand(3), expected)
