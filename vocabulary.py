"""Trimming a teacher's vocabulary to the tokens a task's text uses, for a student that needs no row
for the rest: XLM-R's 250k tokens would make a 312-wide student's word embeddings alone 78M parameters.

What a trimmed student holds:
- its own tokenizer, of the teacher's kind, whose ids are 0..N-1 over the kept tokens (in the teacher's
  order): a rewritten vocab.txt (WordPiece) or tokenizer.json (WordPiece, BPE or Unigram model; the
  post-processor's and the added tokens' ids renumbered), so predict.py, export_onnx.py and
  transformers' pipeline load it as any student, with no mapping of their own;
- checkpoint.TEACHER_IDS_NAME: the teacher's id of each student id, which task distillation applies to
  the student's features to feed the teacher its own ids (a total map: every kept token is a teacher
  token), so teacher and student see the same tokens at the same positions.

Why the task's text keeps its tokens: a text's tokens under the full vocabulary are also the tokens
under any subset that holds them. WordPiece takes the longest known prefix, and no longer one is in a
subset; Unigram takes the best-scoring segmentation, which is still among the subset's candidates; BPE
applies the lowest-ranked applicable merge, and every merge of the original run is kept (with the
tokens it joined: the derivation closure of each kept token). make_student.py checks it on every text
anyway and reports any that differ (ties, or a Unigram text with unknown characters, whose penalty
depends on the lowest kept score).

The limitation: text outside the task data may use tokens the student lacks. It is then split into
smaller kept pieces (BPE keeps every single-character token, so byte-level BPE can spell anything) or
becomes the unknown token (WordPiece, Unigram); the teacher, fed the same pieces, stays consistent with
the student, but neither sees what the full vocabulary would have given. The slow tokenizers' files
(vocab.json and merges.txt, sentencepiece models) are not written: they would give the teacher's ids.
"""
import copy
import json
import os
from dataclasses import dataclass, field

import numpy as np

import checkpoint
import glue


class TrimError(ValueError):
    pass


@dataclass
class Trimmed:
    """A trimmed tokenizer, not yet written: the teacher id of each student id, the student's
    tokenizer files (name -> text) and what its config needs."""
    teacher_ids: np.ndarray
    teacher_vocab_size: int
    files: dict
    pad_token_id: int
    config_extra: dict = field(default_factory=dict)

    @property
    def vocab_size(self):
        return len(self.teacher_ids)


def used_ids(tokenizer, texts, chunk=8192):
    """Sorted ids of every token of `texts` (without special tokens)."""
    seen = np.zeros(0, np.int64)
    for start in range(0, len(texts), chunk):
        flat, _ = glue.token_ids(tokenizer, texts[start:start + chunk])
        seen = np.union1d(seen, np.unique(flat))
    return seen


def special_ids(tokenizer):
    """Ids every student keeps whatever the text: the special tokens, the added tokens and those the
    post-processor puts around a text or a pair."""
    ids = set(tokenizer.all_special_ids)
    ids.update(int(i) for i in getattr(tokenizer, "added_tokens_decoder", {}))
    template = glue.template_of(tokenizer)
    for part in (*template.single, *template.pair):
        ids.update(token for token, _ in part)
    return ids


def trim(teacher_dir, texts, teacher_vocab_size):
    """The Trimmed tokenizer of `teacher_dir` for `texts` (every text the task holds)."""
    tokenizer = checkpoint.load_tokenizer(teacher_dir)
    keep = set(int(i) for i in used_ids(tokenizer, texts)) | special_ids(tokenizer)
    vocab_txt = checkpoint.find_vocab(teacher_dir)
    if vocab_txt:
        return _trim_vocab_txt(vocab_txt, tokenizer, keep, teacher_vocab_size)
    with open(os.path.join(teacher_dir, checkpoint.TOKENIZER_JSON), encoding="utf-8") as f:
        spec = json.load(f)
    files = {}
    spec, kept, new_id = _trim_tokenizer_json(spec, tokenizer, keep)
    files[checkpoint.TOKENIZER_JSON] = json.dumps(spec, ensure_ascii=False)
    for name in checkpoint.TOKENIZER_FILES[1:]:
        path = os.path.join(teacher_dir, name)
        if os.path.isfile(path):
            files[name] = json.dumps(_renumber_config_file(name, checkpoint.read_json(path), new_id),
                                     ensure_ascii=False, indent=2)
    return Trimmed(np.array(kept, np.int64), teacher_vocab_size, files, new_id.get(tokenizer.pad_token, 0))


def _trim_vocab_txt(path, tokenizer, keep, teacher_vocab_size):
    """A WordPiece vocab.txt: the kept lines in the teacher's order. The casing is written into the
    config: inferred from a trimmed vocabulary (a cased one trimmed on lower-case text) it could flip."""
    with open(path, encoding="utf-8") as f:
        tokens = f.read().split("\n")
    if tokens and tokens[-1] == "":
        tokens.pop()
    kept = sorted(i for i in keep if i < len(tokens))
    text = "".join(tokens[i] + "\n" for i in kept)
    pad = kept.index(tokenizer.pad_token_id) if tokenizer.pad_token_id in kept else 0
    lower = checkpoint.lower_case_of(os.path.dirname(path), path)
    return Trimmed(np.array(kept, np.int64), teacher_vocab_size, {checkpoint.VOCAB_NAME: text}, pad,
                   {"do_lower_case": lower})


def _trim_tokenizer_json(spec, tokenizer, keep):
    """(tokenizer.json spec over the kept tokens, their teacher ids in student-id order, {token: new id})."""
    spec = copy.deepcopy(spec)
    model = spec["model"]
    kind = model.get("type")
    backend = tokenizer.backend_tokenizer
    token_of = lambda i: backend.id_to_token(i)
    if kind == "BPE":
        keep = keep | _bpe_closure(model, {token_of(i) for i in keep})
    elif kind not in ("WordPiece", "Unigram"):
        raise TrimError(f"tokenizer.json's model is {kind!r}: trimming knows WordPiece, BPE and Unigram")
    if model.get("byte_fallback"):  # <0x00>..<0xFF>: what unknown characters fall back to
        keep = keep | {i for i in (backend.token_to_id(f"<0x{b:02X}>") for b in range(256)) if i is not None}
    kept = sorted(keep)
    tokens = [token_of(i) for i in kept]
    new_id = {token: n for n, token in enumerate(tokens)}
    if kind == "Unigram":
        pieces = model["vocab"]
        model["vocab"] = [pieces[i] for i in kept if i < len(pieces)]
        unk = model.get("unk_id")
        model["unk_id"] = None if unk is None else new_id[pieces[unk][0]]
    else:
        in_model = set(model["vocab"])
        model["vocab"] = {t: new_id[t] for t in tokens if t in in_model}
    if kind == "BPE":
        prefix = len(model.get("continuing_subword_prefix") or "")
        merges = []
        for merge in model["merges"]:
            a, b = merge.split(" ", 1) if isinstance(merge, str) else merge
            if a in new_id and b in new_id and a + b[prefix:] in new_id:
                merges.append(merge)
        model["merges"] = merges
    for added in spec.get("added_tokens") or []:
        added["id"] = new_id[added["content"]]
    spec["post_processor"] = _renumber(spec.get("post_processor"), new_id)
    if isinstance(spec.get("padding"), dict) and spec["padding"].get("pad_token") in new_id:
        spec["padding"]["pad_id"] = new_id[spec["padding"]["pad_token"]]
    if len(new_id) != len(kept):
        raise TrimError("tokenizer.json names one token under two ids; trimming would merge them")
    return spec, kept, new_id


def _bpe_closure(model, tokens):
    """The ids of `tokens`, of the tokens every merge that makes one of them joins (recursively: BPE
    builds a word through them), and of every single-character token (what a word outside the task
    data is spelt with)."""
    prefix = len(model.get("continuing_subword_prefix") or "")
    makers = {}
    for merge in model["merges"]:
        a, b = merge.split(" ", 1) if isinstance(merge, str) else merge
        makers.setdefault(a + b[prefix:], []).append((a, b))
    vocab = model["vocab"]
    out, todo = set(), list(tokens)
    while todo:
        token = todo.pop()
        if token in out:
            continue
        out.add(token)
        for a, b in makers.get(token, ()):
            todo += [a, b]
    out.update(t for t in vocab if len(t) == 1)
    return {vocab[t] for t in out if t in vocab}


def _renumber(node, new_id):
    """A post-processor spec with its special tokens' ids renumbered (RobertaProcessing's and
    BertProcessing's [token, id] pairs, TemplateProcessing's special_tokens, Sequence's parts)."""
    if isinstance(node, list):
        if len(node) == 2 and isinstance(node[0], str) and isinstance(node[1], int) and node[0] in new_id:
            return [node[0], new_id[node[0]]]
        return [_renumber(x, new_id) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: _renumber(v, new_id) for k, v in node.items()}
    if isinstance(out.get("tokens"), list) and isinstance(out.get("ids"), list):
        out["ids"] = [new_id[t] for t in out["tokens"]]
    return out


def _renumber_config_file(name, data, new_id):
    """tokenizer_config.json's added_tokens_decoder and added_tokens.json are keyed by id."""
    if name == "added_tokens.json":
        return {token: new_id[token] for token in data if token in new_id}
    if name == "tokenizer_config.json" and isinstance(data.get("added_tokens_decoder"), dict):
        data = dict(data)
        data["added_tokens_decoder"] = {str(new_id[v["content"]]): v for v in data["added_tokens_decoder"].values()
                                        if v.get("content") in new_id}
    return data


def write(trimmed, directory, source=None):
    """The tokenizer files and the id map into `directory` (which the caller writes atomically)."""
    for name, text in trimmed.files.items():
        with open(os.path.join(directory, name), "w", encoding="utf-8") as f:
            f.write(text)
    record = {"teacher_vocab_size": int(trimmed.teacher_vocab_size), "source": source,
              "teacher_ids": [int(i) for i in trimmed.teacher_ids]}
    with open(os.path.join(directory, checkpoint.TEACHER_IDS_NAME), "w", encoding="utf-8") as f:
        json.dump(record, f)


def mismatches(teacher_tokenizer, student_tokenizer, teacher_ids, texts, chunk=8192):
    """How many of `texts` the student's tokenizer, mapped to teacher ids, does not give exactly the
    teacher's tokens (0 is what trimming promises for the text it was made from)."""
    bad = 0
    for start in range(0, len(texts), chunk):
        part = texts[start:start + chunk]
        t_flat, t_len = glue.token_ids(teacher_tokenizer, part)
        s_flat, s_len = glue.token_ids(student_tokenizer, part)
        if np.array_equal(t_len, s_len) and np.array_equal(t_flat, teacher_ids[s_flat]):
            continue
        t_rows = np.split(t_flat, np.cumsum(t_len)[:-1])
        s_rows = np.split(teacher_ids[s_flat], np.cumsum(s_len)[:-1])
        bad += sum(not np.array_equal(t, s) for t, s in zip(t_rows, s_rows))
    return bad


def check_student(teacher_dir, teacher_vocab_size, student_dir, student_vocab_size, teacher_ids):
    """Refuse a trimmed student that does not fit this teacher: the map's sizes, and each student
    token's teacher id is the id the teacher's own tokenizer gives that token."""
    recorded = checkpoint.read_teacher_ids(student_dir)[1]
    if recorded != teacher_vocab_size:
        raise TrimError(f"student {student_dir} was trimmed from a vocabulary of {recorded} tokens; teacher "
                        f"{teacher_dir} has {teacher_vocab_size}")
    if len(teacher_ids) != student_vocab_size:
        raise TrimError(f"student {student_dir}: {checkpoint.TEACHER_IDS_NAME} maps {len(teacher_ids)} ids, its "
                        f"config has vocab_size {student_vocab_size}")
    teacher_vocab = checkpoint.load_tokenizer(teacher_dir).get_vocab()
    student_vocab = checkpoint.load_tokenizer(student_dir).get_vocab()
    wrong = [t for t, i in student_vocab.items() if i < len(teacher_ids) and teacher_vocab.get(t) != teacher_ids[i]]
    if wrong:
        raise TrimError(f"student {student_dir} was not trimmed from teacher {teacher_dir}'s vocabulary: "
                        f"{len(wrong)} token(s) map elsewhere, e.g. {wrong[:3]}")


def parameters_line(teacher_vocab_size, kept, hidden, total_kept):
    """'student parameters: A with the teacher's V-token vocabulary -> B with N kept (word embeddings X -> Y)'."""
    full = total_kept + (teacher_vocab_size - kept) * hidden
    return (f"student parameters: {full:,} with the teacher's {teacher_vocab_size:,}-token vocabulary -> "
            f"{total_kept:,} with the {kept:,} tokens the task uses (word embeddings {teacher_vocab_size * hidden:,} "
            f"-> {kept * hidden:,}; {1 - total_kept / full:.0%} fewer parameters)")

