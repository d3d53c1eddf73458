"""TinyBERT data augmentation: GLUE train.tsv -> train_aug.tsv, words replaced by masked-LM and GloVe candidates.

    python data_augmentation.py --bert_model models/bert-base-uncased \\
        --glove_embs glove/glove.840B.300d.txt --glue_dir data/glue_data --task_name SST-2

The algorithm is the reference's (huawei-noah TinyBERT data_augmentation.py), so results carry over.
For each alphabetic, non-stop word of a text column: if the word is one word piece, its candidates are
the masked LM's top-M predictions with the word masked (input `[CLS] masked sentence [SEP] sentence
[SEP]`; predictions that are `##` pieces dropped); if it is several pieces, its M nearest GloVe
neighbours by cosine (title case kept). Each text then yields up to N sentences, each word replaced
with probability p by a random candidate; the original comes first, duplicates are dropped.

Where this differs from the reference, and why:
- speed: the masked positions of a chunk of examples go through the masked LM in padded batches sorted
  by length, with the LM head only at the masked position; GloVe neighbours come from one matrix
  product per batch of words (a float32 shortlist on the device, then the reference's float64 order);
  a sentence or word met again is not recomputed. `--reference_mode` runs the reference's procedure
  (one forward pass per word, batch of one); bench/bench_augmentation.py compares the two.
- pair tasks: while the second text column is augmented the first keeps its original text (the
  reference left the last augmented first sentence there), and the original row is written once.
- the output is written to `train_aug.tsv.partial` in whole examples with a progress file beside it;
  a rerun continues after the last complete example and the file takes its final name when complete.
  Every example draws from its own generator seeded by (--seed, row, column), so a resumed run writes
  the same bytes as an uninterrupted one.
- a special token ([SEP], [UNK], ...) among the masked LM's predictions is dropped like a `##` piece:
  the reference would write it into the sentence.
- `--candidates words` keeps only masked-LM predictions that are themselves candidate words (letters,
  not stop words): for a weak masked LM, whose top predictions are mostly "the", "," and ".".
- the default N is the task's in the reference (SST-2 and QNLI 20, MNLI and QQP 10, the others 30).
- GloVe lines whose word holds spaces (glove.840B) are read (word_vectors.py), where the reference
  fails on them; such phrases are never candidates. The file is parsed once and cached beside it.
"""
import argparse
import collections
import hashlib
import os
import random
import shutil
import sys
import time
from typing import NamedTuple

import numpy as np
from tqdm import tqdm

import backend
import checkpoint
import files
import cli
import glue
import modeling
from word_vectors import load_glove

flow = backend.framework()

# The reference's stop words (NLTK's English list, plus "'s" and "'re").
STOP_WORDS = frozenset("""
i me my myself we our ours ourselves you you're you've you'll you'd your yours yourself yourselves he him
his himself she she's her hers herself it it's its itself they them their theirs themselves this that that'll
these those am is are was were be been being have has had having do does did doing a an the and but if or
because as until while of at by for with about against between into through during before after above below
to from up down in out on off over under again further then once here there all any both each few more most
other some such no nor not only own same so than too very s t can will just don don't should should've now d
ll m o re ve y ain aren aren't couldn couldn't didn didn't doesn doesn't hadn hadn't hasn hasn't haven haven't
isn isn't ma mightn mightn't mustn mustn't needn needn't shan shan't shouldn shouldn't wasn wasn't weren
weren't won won't wouldn wouldn't 's 're""".split())

# N of the reference's run (it overrode --N with these); tasks not listed use 30.
TASK_N = {"sst-2": 20, "qnli": 20, "mnli": 10, "mnli-mm": 10, "qqp": 10}
DEFAULT_N = 30
# (examples per chunk, padded tokens per masked-LM batch). A chunk's masked positions are batched by
# length: the more examples a chunk holds, the closer in length a batch's rows, the less padding
# (bench/bench_augmentation.py measures the choice).
CPU_BATCHING = (256, 2048)
GPU_BATCHING = (1024, 32768)


# Which masked-LM predictions may replace a word: "any" (the reference: all but ## pieces), or "words"
# (only what is itself a candidate word: letters, not a stop word), for a masked LM whose top
# predictions are mostly "the", "," and "." (a head trained briefly, see experiments/train_mlm_head.py).
CANDIDATE_KINDS = ("any", "words")


class AugmentError(ValueError):
    pass


# ----------------------------------------------------------------------------------------------
# GloVe neighbours (the vectors come from word_vectors.py)
# ----------------------------------------------------------------------------------------------
class GloveIndex:
    """Nearest GloVe neighbours by cosine, ranked as the reference ranks them (float64 cosines,
    descending; ties by row), for many words at once.

    As in the reference, when a word occurs twice the last row counts, and rows without a vector
    (all zeros, `<unk>`, an earlier duplicate) are never candidates. Nor are words with spaces
    (glove.840B's "at name@domain.com", which the reference could not read): a candidate replaces one word.
    """
    SLACK = 8  # float32 shortlist beyond M, so that the float64 top M is surely in it

    def __init__(self, glove, device="cpu"):
        self.words = glove.words
        self.row = {w: i for i, w in enumerate(glove.words)}
        self.vectors = glove.vectors
        self.norms = np.concatenate([np.sqrt(np.sum(b.astype(np.float64) ** 2, axis=1))
                                     for b in np.array_split(glove.vectors, max(1, len(glove.words) // 50000))])
        last = np.zeros(len(self.words), bool)
        last[list(self.row.values())] = True
        one_word = np.array([bool(w) and " " not in w for w in self.words])
        self.valid = last & (self.norms > 0) & one_word
        self.norms[self.norms == 0] = 1  # rows without a vector stay zero vectors
        if "<unk>" in self.row:
            self.valid[self.row["<unk>"]] = False
        scale = np.where(self.valid, 1 / self.norms, 0).astype(np.float32)
        self.device = device
        self.unit32 = flow.tensor(self.vectors * scale[:, None], device=device)  # only for the shortlist
        self.bias = flow.tensor(np.where(self.valid, 0, -np.inf).astype(np.float32), device=device)
        self._full64 = None

    def unit64(self, rows):
        return self.vectors[rows].astype(np.float64) / self.norms[rows][:, None]

    def _titled(self, word, rows):
        found = [self.words[r] for r in rows]
        return [w.title() for w in found] if word.istitle() else found  # keeps "Paris" -> "London"

    def query_rows(self, words):
        """{word: row} of the words that have a vector."""
        return {w: self.row[w] for w in words if w in self.row and self.valid[self.row[w]]}

    def neighbours(self, words, M, max_scores=1 << 26):
        """{word: its M nearest neighbours} for every word with a vector."""
        rows = self.query_rows(words)
        out, items = {}, list(rows.items())
        k = min(M + self.SLACK, len(self.words))
        step = max(1, max_scores // len(self.words))  # bounds the [words, vocabulary] score matrix
        for i in range(0, len(items), step):
            batch = items[i:i + step]
            q = flow.tensor(np.array([r for _, r in batch], np.int64), device=self.device)
            with flow.no_grad():
                scores = flow.matmul(self.unit32[q], self.unit32.transpose(0, 1)) + self.bias
                scores[flow.arange(len(batch), device=self.device), q] = float("-inf")
                top_values, top_rows = flow.topk(scores, k, dim=1)
            top_values, top_rows = top_values.cpu().numpy(), top_rows.cpu().numpy()
            for (word, row), values, short in zip(batch, top_values, top_rows):
                out[word] = self._titled(word, self._exact_order(row, short[np.isfinite(values)])[:M])
        return out

    def _exact_order(self, row, rows):
        cosines = np.einsum("ij,j->i", self.unit64(rows), self.unit64([row])[0])
        return rows[np.lexsort((rows, -cosines))]

    def full_unit64(self):
        """The normalised float64 matrix the reference scans (built once, as the reference at load)."""
        if self._full64 is None:
            self._full64 = self.unit64(np.arange(len(self.words)))
        return self._full64

    def reference_neighbours(self, word, M):
        """The reference's way: a full scan of the normalised float64 matrix for one word."""
        rows = self.query_rows([word])
        if not rows:
            return []
        full, row = self.full_unit64(), rows[word]
        cosines = np.einsum("ij,j->i", full, full[row])
        cosines[~self.valid] = -np.inf
        cosines[row] = -np.inf
        order = np.argsort(-cosines, kind="stable")[:M]
        return self._titled(word, order[np.isfinite(cosines[order])])


# ----------------------------------------------------------------------------------------------
# Words, word pieces, and the masked LM's candidates
# ----------------------------------------------------------------------------------------------
def basic_tokens(tokenizer, text):
    """BERT's basic tokenization (clean, lower-case and strip accents if uncased, split punctuation)."""
    bt = tokenizer.backend_tokenizer
    return [w for w, _ in bt.pre_tokenizer.pre_tokenize_str(bt.normalizer.normalize_str(text))]


def is_candidate_word(word):
    """Words the reference augments: ASCII letters only, not a stop word."""
    lower = word.lower()
    return lower.isascii() and lower.isalpha() and lower not in STOP_WORDS


class Sentence(NamedTuple):
    words: list            # basic tokens
    piece_ids: np.ndarray  # int64 word-piece ids, no special tokens
    first_piece: np.ndarray  # per word: index of its first piece
    num_pieces: np.ndarray   # per word: how many pieces


def analyse(tokenizer, texts):
    encodings = tokenizer.backend_tokenizer.encode_batch(texts, add_special_tokens=False)
    out = []
    for text, enc in zip(texts, encodings):
        words = basic_tokens(tokenizer, text)
        owner = np.array([-1 if w is None else w for w in enc.word_ids], np.int64)
        if len(owner) and (owner.min() < 0 or owner.max() >= len(words)):
            raise AugmentError(f"word pieces do not map onto the words of {text[:80]!r}")
        counts = np.bincount(owner, minlength=len(words))
        first = np.searchsorted(owner, np.arange(len(words)))
        out.append(Sentence(words, np.array(enc.ids, np.int64), first, counts))
    return out


class MaskedQuery(NamedTuple):
    sentence: int  # index into the sentences of one call
    position: int  # of the masked piece in [CLS] a [SEP] a [SEP]


def pair_input(piece_ids, max_len, cls_id, sep_id):
    """The reference's `[CLS] a [SEP] a [SEP]` ids cut to max_len, and where segment 1 starts."""
    ids = np.concatenate([[cls_id], piece_ids, [sep_id], piece_ids, [sep_id]])[:max_len]
    return ids, min(len(piece_ids) + 2, max_len)


def length_batches(lengths, max_tokens, max_rows=4096):
    """Index batches over `lengths` sorted by length, each at most max_tokens when padded."""
    order = np.argsort(lengths, kind="stable")
    batch = []
    for i in order:
        if batch and (len(batch) + 1) * lengths[i] > max_tokens or len(batch) == max_rows:
            yield batch
            batch = []
        batch.append(int(i))
    if batch:
        yield batch


# ----------------------------------------------------------------------------------------------
# The augmentor
# ----------------------------------------------------------------------------------------------
class Augmentor:
    """Candidate words of sentences (batched, or the reference's way), and the sentences sampled from them."""

    def __init__(self, model, tokenizer, glove, M=15, device="cpu", batch_tokens=CPU_BATCHING[1],
                 reference_mode=False, cache_size=100000, candidates="any"):
        check_vocabulary(model, tokenizer)
        self.model = model.eval()
        self.tokenizer, self.M, self.device = tokenizer, M, device
        self.glove = glove if isinstance(glove, GloveIndex) else GloveIndex(glove, device)
        self.max_len = model.config.max_position_embeddings
        self.batch_tokens, self.reference_mode, self.cache_size = batch_tokens, reference_mode, cache_size
        self.special = dict(cls=tokenizer.cls_token_id, sep=tokenizer.sep_token_id,
                            mask=tokenizer.mask_token_id, pad=tokenizer.pad_token_id)
        # a masked LM whose head saw little text predicts [SEP] or [UNK] for a word; never a replacement
        self._special_tokens = frozenset(tokenizer.all_special_tokens)
        if candidates not in CANDIDATE_KINDS:
            raise AugmentError(f"candidates={candidates!r}: expected one of {', '.join(CANDIDATE_KINDS)}")
        self.only_words = candidates == "words"
        self.top_k = 4 * M if self.only_words else M  # predictions read, so that M words are likely among them
        self.stats = collections.Counter()  # words by kind, truncated sentences
        self.clear_caches()

    def clear_caches(self):
        self._sentences = collections.OrderedDict()  # text -> (words, candidates); least recently used first
        self._glove_words = {}

    # -- the batched procedure -------------------------------------------------------------------
    def candidates(self, texts):
        """[(basic tokens, {word index: candidate words})] for each text, in the reference's word order."""
        if self.reference_mode:
            return [self.reference_candidates(t) for t in texts]
        todo = list(dict.fromkeys(t for t in texts if t not in self._sentences))
        results = self._compute(todo) if todo else []
        for text, result in zip(todo, results):
            self._sentences[text] = result
        out = []
        for text in texts:
            self._sentences.move_to_end(text)
            out.append(self._sentences[text])
        while len(self._sentences) > max(self.cache_size, len(texts)):
            self._sentences.popitem(last=False)
        return out

    def _compute(self, texts):
        sentences = analyse(self.tokenizer, texts)
        plans, queries, glove_words = [], [], []
        for s_no, s in enumerate(sentences):
            plan = {}
            for w, word in enumerate(s.words):
                if not is_candidate_word(word):
                    continue
                if s.num_pieces[w] == 1:
                    plan[w] = ("mlm", len(queries))
                    queries.append(MaskedQuery(s_no, 1 + int(s.first_piece[w])))
                elif s.num_pieces[w] > 1:
                    plan[w] = ("glove", word)
                    glove_words.append(word)
                else:
                    plan[w] = ("kept", None)  # no piece at all: the word stays
            plans.append(plan)
        found = {"mlm": self._masked_lm(sentences, queries), "glove": self._glove_candidates(glove_words),
                 "kept": {None: []}}
        out = []
        for s, plan in zip(sentences, plans):
            cands = {w: found[kind][key] or [s.words[w]] for w, (kind, key) in plan.items()}
            self.stats.update(k for k, _ in plan.values())
            out.append((s.words, cands))
        return out

    def _glove_candidates(self, words):
        new = [w for w in dict.fromkeys(words) if w not in self._glove_words]
        found = self.glove.neighbours(new, self.M)
        for w in new:
            self._glove_words[w] = found.get(w, [])
        return {w: self._glove_words[w] for w in words}

    def _masked_lm(self, sentences, queries):
        """Top-M predictions (minus ## pieces) at each query's masked position; [] past max_len."""
        inputs = [pair_input(s.piece_ids, self.max_len, self.special["cls"], self.special["sep"]) for s in sentences]
        used = {q.sentence for q in queries}
        self.stats["truncated"] += sum(2 * len(sentences[i].piece_ids) + 3 > self.max_len for i in used)
        out = [[] for _ in queries]
        live = [i for i, q in enumerate(queries) if q.position < self.max_len]
        lengths = np.array([len(inputs[queries[i].sentence][0]) for i in live], np.int64)
        for batch in length_batches(lengths, self.batch_tokens):
            picked = [queries[live[b]] for b in batch]
            top = self._predict([inputs[q.sentence] for q in picked], [q.position for q in picked])
            for b, ids in zip(batch, top):
                out[live[b]] = self._tokens(ids)
        return out

    def _predict(self, inputs, positions):
        """Top-M vocabulary ids at `positions` of the masked pair inputs, one padded batch."""
        width = max(len(ids) for ids, _ in inputs)
        ids = np.full((len(inputs), width), self.special["pad"], np.int64)
        segments = np.zeros_like(ids)
        mask = np.zeros_like(ids)
        for r, (row, seg1) in enumerate(inputs):
            ids[r, :len(row)], segments[r, seg1:len(row)], mask[r, :len(row)] = row, 1, 1
        rows = np.arange(len(inputs))
        ids[rows, positions] = self.special["mask"]
        t = lambda a: flow.tensor(a, dtype=flow.int64, device=self.device)
        with flow.no_grad():
            logits = self.model(t(ids), t(segments), t(mask), masked_positions=(t(rows), t(np.array(positions))))
            return flow.topk(logits, min(self.top_k, logits.shape[1]), dim=1)[1].cpu().numpy()

    def _tokens(self, ids):
        special = self._special_tokens
        return [t for t in self.tokenizer.convert_ids_to_tokens([int(i) for i in ids])
                if not t.startswith("##") and t not in special and (not self.only_words or is_candidate_word(t))][:self.M]

    # -- the reference's procedure ------------------------------------------------------------------
    def reference_candidates(self, text):
        """The reference's procedure for one sentence: per word, one forward pass of the pair (batch
        of one, LM head at every position) or a full scan of the GloVe matrix."""
        words = basic_tokens(self.tokenizer, text)
        cands, masked_before = {}, self.stats["mlm"]
        for w, word in enumerate(words):
            if is_candidate_word(word):
                cands[w] = self._reference_word(text, w, word) or [word]
        if self.stats["mlm"] > masked_before and 2 * len(self.tokenizer.tokenize(text)) + 3 > self.max_len:
            self.stats["truncated"] += 1  # bookkeeping only, not part of the procedure
        return words, cands

    def _reference_word(self, text, index, word):
        pieces = ["[CLS]"] + self.tokenizer.tokenize(text)
        mine, seen = [], -1
        for i in range(1, len(pieces)):  # the word's pieces: count the pieces that start a word
            if "##" not in pieces[i]:
                seen += 1
            if seen == index:
                mine.append(i)
            elif seen > index:
                break
        if len(mine) > 1:
            self.stats["glove"] += 1
            return self.glove.reference_neighbours(word, self.M)
        self.stats["mlm"] += 1
        return self._reference_masked_lm(pieces, mine[0]) if mine else []

    def _reference_masked_lm(self, pieces, position):
        if position >= self.max_len:
            return []
        masked = pieces[:position] + ["[MASK]"] + pieces[position + 1:]
        tokens, first_len = masked + ["[SEP]"] + pieces[1:] + ["[SEP]"], len(pieces)
        if len(tokens) > self.max_len:
            tokens, first_len = tokens[:self.max_len], min(first_len, self.max_len - 1)
        segments = [0] * (first_len + 1) + [1] * (len(tokens) - first_len - 1)
        t = lambda a: flow.tensor([a], dtype=flow.int64, device=self.device)
        with flow.no_grad():
            logits = self.model(t(self.tokenizer.convert_tokens_to_ids(tokens)), t(segments))  # [1, L, V]
            scores = logits[0, position].cpu().numpy()
        return self._tokens(np.argsort(-scores, kind="stable")[:self.top_k])


def check_vocabulary(model, tokenizer):
    size = len(tokenizer.get_vocab())
    if model.config.vocab_size != size:
        raise AugmentError(f"the masked LM {model.source_dir or ''} has vocab_size {model.config.vocab_size} but its "
                           f"tokenizer's vocab.txt has {size} entries: the predictions would name other words; "
                           "use the vocab.txt the model was trained with")
    if tokenizer.mask_token_id is None or tokenizer.mask_token_id >= size:
        raise AugmentError("the tokenizer's vocabulary has no [MASK] token")


def load_masked_lm(model_dir, device):
    """BertForMaskedLM from any model directory, refusing one without a masked-LM head."""
    try:
        model = modeling.BertForMaskedLM.from_pretrained(model_dir, verbose=False)
    except ValueError as e:  # e.g. a bare BertModel: the head's tensors are missing
        raise AugmentError(f"data augmentation needs a masked LM with its head (cls.predictions.*), as "
                           f"bert-base-uncased has: {e}") from None
    return model.eval().to(device)


def sample_sentences(text, words, candidates, N, p, rng):
    """The reference's sampling: N tries, each word replaced with probability p by a random candidate
    (a choice drawn for every word, then the coin); the original first, no duplicates."""
    out, seen = [text], {text}
    for _ in range(N):
        new = list(words)
        for index, cands in candidates.items():
            choice = rng.choice(cands)
            if rng.random() < p:
                new[index] = choice
        sentence = " ".join(new)
        if sentence not in seen:
            seen.add(sentence)
            out.append(sentence)
    return out


def augment_rows(augmentor, rows, columns, N, p, seed, first_row):
    """The output lines of consecutive examples (fields lists) starting at row number first_row."""
    texts = [fields[c] for fields in rows for c in columns]
    found = iter(augmentor.candidates(texts))
    lines = []
    for i, fields in enumerate(rows):
        for j, column in enumerate(columns):
            words, cands = next(found)
            rng = random.Random(f"{seed}:{first_row + i}:{column}")
            sentences = sample_sentences(fields[column], words, cands, N, p, rng)
            for sentence in sentences[1:] if j else sentences:  # the original row once
                row = list(fields)
                row[column] = sentence
                lines.append("\t".join(row) + "\n")
    return lines


# ----------------------------------------------------------------------------------------------
# The file: resumable, renamed into place when complete
# ----------------------------------------------------------------------------------------------
def read_train(path, processor):
    """(header line or None, [fields]) of train.tsv, every row as wide as the task's text columns need."""
    header, rows = glue.read_tsv(path, has_header=processor.has_header)
    width = len(header) if header else processor.num_columns
    needed = max(processor.text_columns) + 1
    for line, fields in rows:
        if len(fields) != width or len(fields) < needed:
            raise AugmentError(f"{path}:{line}: {len(fields)} columns, expected {width}: {fields!r:.200}")
    if header is not None:
        with open(path, "rb") as f:
            header = f.readline().decode("utf-8").rstrip("\r\n") + "\n"  # as it is, MRPC's BOM included
    return header, [fields for _, fields in rows]


def file_digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def resume_point(partial, progress, settings, restart):
    """(examples done, bytes of partial that hold them): where an interrupted run stopped, else (0, 0)."""
    if restart or not (os.path.isfile(partial) and os.path.isfile(progress)):
        return 0, 0
    state = checkpoint.read_json(progress)
    if state.get("settings") != settings:
        changed = [k for k in settings if state.get("settings", {}).get(k) != settings[k]]
        raise AugmentError(f"{partial} was written with other settings ({', '.join(changed)} differ); "
                           "rerun with the same ones to continue it, or pass --restart to start over")
    if os.path.getsize(partial) < state["bytes"]:
        raise AugmentError(f"{partial} is shorter than {progress} records ({state['bytes']} bytes); pass --restart")
    return state["examples_done"], state["bytes"]


def shard_rows(count, chunk, shard=0, shards=1):
    """[first, last) rows of `shard` of `shards`: whole chunks of `chunk` rows each, so that every
    chunk is the one a single process would have made (the same batches, the same bytes)."""
    chunks = -(-count // chunk)
    per = -(-chunks // shards)
    return min(count, shard * per * chunk), min(count, (shard + 1) * per * chunk)


def shard_path(out_path, shard, shards):
    return out_path if shards == 1 else f"{out_path}.shard-{shard}-of-{shards}"


def augment_file(augmentor, train_path, out_path, processor, N, p, seed, chunk, settings, restart=False,
                 shard=0, shards=1):
    """Write this shard's rows of out_path from train_path, resumably (shard_path: the whole file for
    one shard); returns (examples, rows written in this run)."""
    header, rows = read_train(train_path, processor)
    first, last = shard_rows(len(rows), chunk, shard, shards)
    path = shard_path(out_path, shard, shards)
    partial, progress = path + ".partial", path + ".partial.progress.json"
    done, offset = resume_point(partial, progress, settings, restart)
    if done:
        print(f"resuming {partial}: {done} of {last - first} examples were done")
    written = 0
    with open(partial, "r+b" if offset else "wb") as f:
        f.truncate(offset)  # drops rows of an example that was cut off
        f.seek(offset)
        if not offset and header and shard == 0:
            f.write(header.encode("utf-8"))
        bar = tqdm(total=last - first, initial=done, desc=f"augment {processor.task}", unit="ex", dynamic_ncols=True)
        for start in range(first + done, last, chunk):
            lines = augment_rows(augmentor, rows[start:start + chunk], processor.text_columns, N, p, seed, start)
            f.write("".join(lines).encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
            done, written = min(start + chunk, last) - first, written + len(lines)
            files.write_json_atomic(progress, {"examples_done": done, "bytes": f.tell(), "settings": settings})
            bar.update(done - bar.n)
        bar.close()
    os.replace(partial, path)
    os.remove(progress)
    return last - first, written


def merge_shards(out_path, shards):
    """Concatenate the shard files into out_path in example order, once all are complete; the process
    that completes the set does it (a lock file keeps two from doing it at once). True if merged."""
    paths = [shard_path(out_path, k, shards) for k in range(shards)]
    if not all(os.path.isfile(path) for path in paths):
        return False
    try:
        lock = os.open(out_path + ".merge-lock", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False  # another process is merging
    try:
        with files.atomic_file(out_path) as out:
            for path in paths:
                with open(path, "rb") as f:
                    shutil.copyfileobj(f, out)
        for path in paths:
            os.remove(path)
    finally:
        os.close(lock)
        os.remove(out_path + ".merge-lock")
    return True


# ----------------------------------------------------------------------------------------------
# The script
# ----------------------------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    # --bert_model as in pregenerate_training_data.py and glue_process.py: the pretrained BERT every stage before
    # fine-tuning reads; --pretrained_bert_model is the reference's spelling here
    p.add_argument("--bert_model", "--pretrained_bert_model", dest="bert_model", required=True,
                   help="BertForMaskedLM model directory (e.g. models/bert-base-uncased)")
    p.add_argument("--glove_embs", required=True, help="GloVe text file (e.g. glove.840B.300d.txt)")
    p.add_argument("--glue_dir", help="GLUE data directory (one folder per task)")
    p.add_argument("--task_name", help="GLUE task: " + ", ".join(glue.PROCESSORS))
    p.add_argument("--show_candidates", metavar="TEXT", action="append",
                   help="print each word's candidates in TEXT and stop (to judge a masked LM); repeatable")
    p.add_argument("--N", type=int, help="sampling tries per sentence (default: the task's, as the reference: "
                   + ", ".join(f"{k} {v}" for k, v in TASK_N.items()) + f", others {DEFAULT_N})")
    p.add_argument("--M", type=int, default=15, help="candidates per word")
    p.add_argument("--candidates", choices=CANDIDATE_KINDS, default="any",
                   help="masked-LM predictions kept: any (the reference's) or words (letters, no stop words)")
    p.add_argument("--p", type=float, default=0.4, help="probability of replacing a word")
    p.add_argument("--estimate", action="store_true",
                   help="augment the first examples in memory and print the rows, disk and time of the whole run "
                        "on this machine; write nothing")
    p.add_argument("--glove_vocab_size", type=int, default=100000, help="GloVe rows to read (0: all)")
    p.add_argument("--output", help="default: train_aug.tsv beside train.tsv")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--chunk_examples", type=int, help="examples per step of work and of progress saved "
                   f"(default {CPU_BATCHING[0]}, {GPU_BATCHING[0]} on a GPU)")
    p.add_argument("--batch_tokens", type=int, help="padded tokens per masked-LM batch "
                   f"(default {CPU_BATCHING[1]}, {GPU_BATCHING[1]} on a GPU)")
    p.add_argument("--reference_mode", action="store_true", help="the reference's one-forward-per-word procedure")
    p.add_argument("--gpu", action=argparse.BooleanOptionalAction, default=True, help="use CUDA when available")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--restart", action="store_true", help="discard an interrupted run's partial output")
    p.add_argument("--shard", help="I/N: augment the I-th of N parts of train.tsv (0-based; several processes or "
                   "machines), merged into one file by the last to finish; default: RANK/WORLD_SIZE under a "
                   "launcher, else 0/1")
    backend.add_argument(p)
    args = p.parse_args(argv)
    args.shard, args.shards = parse_shard(p, args.shard)
    args.backend = backend.check_bound(args.backend, flow)
    if not args.show_candidates and not (args.glue_dir and args.task_name):
        p.error("--glue_dir and --task_name are required (unless --show_candidates)")
    for name in ("N", "M", "glove_vocab_size", "chunk_examples", "batch_tokens"):
        value = getattr(args, name)
        if value is not None and value < (0 if name in ("N", "glove_vocab_size") else 1):
            p.error(f"--{name} must be positive, got {value}")
    if not 0.0 <= args.p <= 1.0:
        p.error(f"--p must be a probability in [0, 1], got {args.p}")
    return args


def parse_shard(parser, text):
    if text is None:  # under a launcher; a lone process may still carry RANK=-1 (importing OneFlow sets it)
        world = int(os.environ.get("WORLD_SIZE", "1"))
        return (int(os.environ["RANK"]), world) if world > 1 else (0, 1)
    try:
        shard, shards = (int(x) for x in text.split("/"))
    except ValueError:
        parser.error(f"--shard {text!r}: expected I/N, e.g. 0/4")
    if not 0 <= shard < shards:
        parser.error(f"--shard {text}: I must be in 0..N-1")
    return shard, shards


def run_settings(args, processor, train_path):
    """What decides the output: a partial file continues only under the same settings."""
    return {"task": processor.task, "train_sha256": file_digest(train_path),
            "model": os.path.abspath(args.bert_model), "glove": os.path.abspath(args.glove_embs),
            "glove_vocab_size": args.glove_vocab_size, "N": args.N, "M": args.M, "p": args.p, "seed": args.seed,
            "reference_mode": args.reference_mode, "candidates": args.candidates}


def show_candidates(args):
    device = backend.device(args.gpu)
    tokenizer = checkpoint.load_tokenizer(args.bert_model)
    augmentor = Augmentor(load_masked_lm(args.bert_model, device), tokenizer,
                          load_glove(args.glove_embs, args.glove_vocab_size), args.M, device,
                          reference_mode=args.reference_mode, candidates=args.candidates)
    for words, cands in augmentor.candidates(args.show_candidates):
        print(" ".join(words))
        for w, found in cands.items():
            print(f"  {words[w]}: {', '.join(found)}")
    return args.show_candidates


def main(argv=None):
    args = parse_args(argv)
    if args.show_candidates:
        return show_candidates(args)
    processor = glue.get_processor(args.task_name)
    task_dir = os.path.join(args.glue_dir, processor.dir_name)
    train_path = processor.split_path(task_dir, "train")
    out_path = args.output or processor.split_path(task_dir, "train_aug")
    if os.path.exists(out_path) and not (args.overwrite or args.estimate):  # an estimate writes nothing
        raise AugmentError(f"{out_path} exists; pass --overwrite to write it again")
    args.N = TASK_N.get(processor.task, DEFAULT_N) if args.N is None else args.N
    device = backend.device(args.gpu)
    if device == "cuda" and "LOCAL_RANK" in os.environ:  # one GPU per process under a launcher
        device = f"cuda:{os.environ['LOCAL_RANK']}"
    default_chunk, default_tokens = CPU_BATCHING if device == "cpu" else GPU_BATCHING
    chunk = args.chunk_examples or default_chunk
    tokenizer = checkpoint.load_tokenizer(args.bert_model)
    model = load_masked_lm(args.bert_model, device)
    glove = load_glove(args.glove_embs, args.glove_vocab_size)
    augmentor = Augmentor(model, tokenizer, glove, args.M, device, args.batch_tokens or default_tokens,
                          reference_mode=args.reference_mode, candidates=args.candidates)
    if args.estimate:
        return estimate(augmentor, train_path, out_path, processor, args.N, args.p, args.seed)
    print(f"augmenting {train_path}: N={args.N} M={args.M} p={args.p} seed={args.seed}, {len(glove.words)} GloVe words, "
          f"backend {backend.name()} on {device}")
    start = time.time()
    settings = dict(run_settings(args, processor, train_path), chunk=chunk, shards=args.shards)
    examples, written = augment_file(augmentor, train_path, out_path, processor, args.N, args.p, args.seed, chunk,
                                     settings, args.restart, args.shard, args.shards)
    report(augmentor, examples, written, time.time() - start, shard_path(out_path, args.shard, args.shards))
    if args.shards > 1:
        print(f"merged the {args.shards} shards into {out_path}" if merge_shards(out_path, args.shards) else
              f"shard {args.shard} of {args.shards} done; the last shard to finish merges them into {out_path}")
    return out_path


# --estimate augments this many training examples in memory: enough for a stable rows-per-example figure,
# seconds to a few minutes whatever the task's size.
ESTIMATE_EXAMPLES = 200


def estimate(augmentor, train_path, out_path, processor, N, p, seed):
    """Augment the first training examples in memory, time it, and scale to the whole file."""
    header, rows = read_train(train_path, processor)
    sample = rows[:ESTIMATE_EXAMPLES]
    started = time.perf_counter()
    lines = augment_rows(augmentor, sample, processor.text_columns, N, p, seed, 0)
    seconds = time.perf_counter() - started
    scale = len(rows) / max(len(sample), 1)
    size = sum(len(line.encode("utf-8")) for line in lines) * scale + len((header or "").encode("utf-8"))
    print(f"estimate: {train_path} holds {len(rows):,} examples; from its first {len(sample):,}, {out_path} will "
          f"hold about {len(lines) * scale:,.0f} rows ({size / 2 ** 20:,.1f} MiB), written in about "
          f"{seconds * scale / 3600:.1f} h ({seconds * scale:,.0f} s) on this machine. Nothing was written.")
    return {"rows": len(lines) * scale, "bytes": size, "seconds": seconds * scale}


def report(augmentor, examples, written, seconds, out_path):
    s = augmentor.stats
    if s["truncated"]:
        print(f"warning: {s['truncated']} sentence(s) made masked-LM inputs longer than the model's "
              f"{augmentor.max_len} positions: truncated (words past position {augmentor.max_len} keep only "
              "themselves as candidates)", file=sys.stderr)
    print(f"wrote {out_path}: {examples} examples, {written} rows in this run, {seconds:.0f} s; "
          f"words: {s['mlm']} by masked LM, {s['glove']} by GloVe (distinct sentences and words computed once)")


if __name__ == "__main__":
    cli.run(main)
