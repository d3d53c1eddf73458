"""Pregenerate the training data of general distillation: epoch_N.json, one instance a line.

    python pregenerate_training_data.py --train_corpus CORPUS --bert_model MODEL_DIR \
        --output_dir data/pretrain_data_json/ --epochs_to_generate 3 [--corpus_format wikitext]

Each line is a BERT pretraining instance (Devlin et al.; the layout huawei-noah's TinyBERT reads):
`tokens` ([CLS] A [SEP] B [SEP], some masked), `segment_ids`, `is_random_next`, `masked_lm_positions`,
`masked_lm_labels`; `epoch_N_metrics.json` holds num_training_examples and max_seq_len.

Memory stays bounded as the corpus grows: the corpus is tokenized once into an on-disk index (token
ids, sentence and document boundaries) and each document, including the random one a "next
sentence" is drawn from, is read back from it when needed. Worker processes tokenize and build
instances; every document draws from a generator seeded by (seed, epoch, document), so the output
is the same for any --num_workers. Files appear under their final names only when complete.
"""
import argparse
import collections
import json
import multiprocessing
import os
import random
import re
import tempfile
import time
from array import array

import numpy as np
from tqdm import tqdm

import checkpoint
import files
import cli

# Work sent to a worker at once (whole documents, so a long one makes a larger task): small enough
# for little memory in flight, large enough for little time in passing it.
CHARACTERS_PER_TASK = 500_000   # to tokenize
TOKENS_PER_TASK = 100_000       # to make instances of
CHUNK_CACHE_SIZE = 100_000      # whitespace-separated chunks whose token ids a worker remembers


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train_corpus", nargs="+", required=True,
                   help="text files (or directories of them): one sentence a line, a blank line between documents")
    p.add_argument("--corpus_format", choices=("lines", "wikitext"), default="lines",
                   help="'wikitext': WikiText raw files, where ' = Title = ' starts a document and paragraphs "
                        "are split into sentences")
    p.add_argument("--bert_model", required=True,
                   help=f"model directory whose vocab.txt tokenizes the corpus, or one of: {', '.join(checkpoint.KNOWN_MODELS)}")
    p.add_argument("--do_lower_case", action=argparse.BooleanOptionalAction, default=None,
                   help="lower-case the text (default: as the model directory's tokenizer says)")
    p.add_argument("--output_dir", default="data/pretrain_data_json")
    p.add_argument("--epochs_to_generate", type=int, default=3)
    p.add_argument("--max_seq_len", "--max_seq_length", dest="max_seq_len", type=int, default=128,
                   help="tokens per instance (--max_seq_length: the spelling of the other stages)")
    p.add_argument("--short_seq_prob", type=float, default=0.1,
                   help="probability of a shorter instance (less mismatch with short fine-tuning inputs)")
    p.add_argument("--masked_lm_prob", type=float, default=0.0,
                   help="share of tokens masked; as in BERT at least one token is (general distillation "
                        "needs no masking, hence the reference's default of 0)")
    p.add_argument("--max_predictions_per_seq", type=int, default=20)
    p.add_argument("--do_whole_word_mask", action="store_true",
                   help="mask every WordPiece of a word together")
    p.add_argument("--num_workers", type=int, default=os.cpu_count() or 1,
                   help="worker processes; 1 runs everything in this process")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--estimate", action="store_true",
                   help="from the corpus's first few MiB, print the instances, disk and time the whole run will take "
                        "on this machine, and write nothing")
    args = p.parse_args(argv)
    for flag in ("epochs_to_generate", "num_workers", "max_predictions_per_seq"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag} must be at least 1, got {getattr(args, flag)}")
    if args.max_seq_len < 5:
        p.error(f"--max_seq_len must be at least 5 ([CLS] A [SEP] B [SEP]), got {args.max_seq_len}")
    for flag in ("short_seq_prob", "masked_lm_prob"):
        if not 0.0 <= getattr(args, flag) <= 1.0:
            p.error(f"--{flag} must be in [0, 1], got {getattr(args, flag)}")
    return args


# ----------------------------------------------------------------------------------------------
# Tokenizer
# ----------------------------------------------------------------------------------------------
# ----------------------------------------------------------------------------------------------
# Corpus: documents as lists of sentences
# ----------------------------------------------------------------------------------------------
SENTENCE_END = re.compile(r"(?<= [.!?]) (?=\S)")  # WikiText spaces its punctuation: "larvae . Homarus"


def corpus_files(paths):
    files = []
    for path in paths:
        if os.path.isdir(path):
            files += sorted(os.path.join(path, f) for f in os.listdir(path)
                            if os.path.isfile(os.path.join(path, f)) and not f.startswith("."))
        elif os.path.isfile(path):
            files.append(path)
        else:
            raise FileNotFoundError(f"--train_corpus {path}: no such file or directory")
    if not files:
        raise FileNotFoundError(f"--train_corpus {' '.join(paths)}: no files")
    return files


def heading_level(line):
    """1 for ' = Title = ', 2 for ' = = Section = = ', ...; 0 for any other line."""
    s = line.strip()
    if not (s.startswith("= ") and s.endswith(" =")):
        return 0
    return len(re.match(r"(?:= )+", s).group(0)) // 2


def read_lines(path, progress=None):
    """The lines of a UTF-8 file; a decoding error names the file and line."""
    with open(path, "rb") as f:
        done = 0
        for number, raw in enumerate(f, 1):
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ValueError(f"{path}:{number}: not UTF-8 text ({e})") from None
            if progress is not None and number % 10000 == 0:
                progress.update(f.tell() - done)
                done = f.tell()
        if progress is not None:
            progress.update(f.tell() - done)


def read_documents(paths, corpus_format, progress=None):
    """Yield documents, each a list of sentences; a file's end also ends a document."""
    for path in paths:
        doc = []
        for line in read_lines(path, progress):
            if corpus_format == "wikitext":
                level = heading_level(line)
                if level == 1 and doc:
                    yield doc
                    doc = []
                if level or not line.strip():
                    continue
                doc += SENTENCE_END.split(line.strip())
            elif line.strip():
                doc.append(line.strip())
            elif doc:
                yield doc
                doc = []
        if doc:
            yield doc


# ----------------------------------------------------------------------------------------------
# The workers' share: tokenizer, vocabulary, chunk cache and corpus index, loaded once per process
# ----------------------------------------------------------------------------------------------
SETUP_NAME = "tokenizer_setup.json"
_worker = {}


def prepare_workspace(model_dir, do_lower_case, workspace):
    """Write what the workers need of the tokenizer into the workspace directory. With worker
    processes this runs in a process of its own: only it needs transformers (~40 MB)."""
    tokenizer = checkpoint.load_tokenizer(model_dir, do_lower_case)
    dot = tokenizer.convert_tokens_to_ids(".")
    setup = {"tokenizer_json": tokenizer.backend_tokenizer.to_str(),
             "vocab": tokenizer.convert_ids_to_tokens(list(range(len(tokenizer)))),
             "cls_id": tokenizer.cls_token_id, "sep_id": tokenizer.sep_token_id,
             "mask_id": tokenizer.mask_token_id,
             "dot_id": dot if dot is not None else tokenizer.unk_token_id}  # stands in for an empty A or B
    files.write_json_atomic(os.path.join(workspace, SETUP_NAME), setup)


def read_setup(workspace):
    # JSON, not pickle: a copied workspace must not be able to run code
    return checkpoint.read_json(os.path.join(workspace, SETUP_NAME))


def worker(workspace):
    """This process's tokenizer, vocabulary, chunk cache and index for the run in `workspace`."""
    if _worker.get("workspace") != workspace:
        import tokenizers
        setup = read_setup(workspace)
        tokenizer = tokenizers.Tokenizer.from_str(setup.pop("tokenizer_json"))
        tokenizer.no_truncation()
        tokenizer.no_padding()
        if _worker.get("index") is not None:
            _worker["index"].close()
        _worker.clear()
        _worker.update(workspace=workspace, tokenizer=tokenizer, cache={}, index=None,
                       quoted=[json.dumps(t) for t in setup["vocab"]],
                       continuation=[t.startswith("##") for t in setup["vocab"]], **setup)
    return _worker


def tokenize_documents(task):
    """(workspace, sentences, document ends) -> (flat token ids, each sentence's length, document ends).

    BERT's normalisation and pre-tokenization treat a space as a boundary they never cross, so a
    sentence's ids are the concatenation of its space-separated chunks' ids. Chunks repeat
    (Zipf), so each is tokenized once and remembered: several times faster than tokenizing text."""
    workspace, sentences, doc_ends = task
    w = worker(workspace)
    cache = w["cache"]
    chunked = [s.split(" ") for s in sentences]
    chunks = set().union(*chunked)
    missing = chunks.difference(cache)
    if len(cache) + len(missing) > CHUNK_CACHE_SIZE:
        cache.clear()  # a crude bound, enough for a Zipfian vocabulary
        missing = chunks
    missing = list(missing)
    for i in range(0, len(missing), 2000):  # in slices: fewer Encoding objects alive at once
        some = missing[i:i + 2000]
        for chunk, encoding in zip(some, w["tokenizer"].encode_batch_fast(some, add_special_tokens=False)):
            cache[chunk] = np.asarray(encoding.ids, dtype=np.uint32).tobytes()  # compact: no int objects
    ids = [b"".join(map(cache.__getitem__, chunks)) for chunks in chunked]
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids)) // 4
    return np.frombuffer(b"".join(ids), dtype=np.uint32), lengths, doc_ends


# ----------------------------------------------------------------------------------------------
# The on-disk corpus index
# ----------------------------------------------------------------------------------------------
class CorpusIndex:
    """Token ids and boundaries on disk: tokens.bin (ids), sentences.bin (token offset of each
    sentence start, plus the end) and documents.npy (sentence and token offsets of each document
    start, plus the end). Only the document offsets live in memory; documents are read with pread."""

    def __init__(self, directory):
        self.directory = directory
        with open(os.path.join(directory, "meta.json")) as f:
            self.dtype = np.dtype(json.load(f)["dtype"])
        starts = np.load(os.path.join(directory, "documents.npy"))
        self.doc_starts, self.doc_token_starts = starts[:, 0].copy(), starts[:, 1].copy()
        self._tokens = os.open(os.path.join(directory, "tokens.bin"), os.O_RDONLY)
        self._sentences = os.open(os.path.join(directory, "sentences.bin"), os.O_RDONLY)

    def __len__(self):
        return len(self.doc_starts) - 1

    @property
    def num_sentences(self):
        return int(self.doc_starts[-1])

    def _read(self, fd, dtype, start, stop):
        dtype = np.dtype(dtype)
        data = os.pread(fd, (stop - start) * dtype.itemsize, start * dtype.itemsize)
        return np.frombuffer(data, dtype=dtype)

    def close(self):
        os.close(self._tokens)
        os.close(self._sentences)

    def document(self, d):
        """Document d as a list of sentences, each a list of token ids."""
        # where sentences first..stop start: the last one is where the document ends
        bounds = self._read(self._sentences, np.int64, int(self.doc_starts[d]), int(self.doc_starts[d + 1]) + 1)
        ids = self._read(self._tokens, self.dtype, int(bounds[0]), int(bounds[-1])).tolist()
        cuts = (bounds - bounds[0]).tolist()
        return [ids[cuts[k]:cuts[k + 1]] for k in range(len(cuts) - 1)]

    def passage(self, first, stop, min_length):
        """The tokens of sentences first.. (before stop) up to the first that reaches min_length
        tokens in all; only those are read."""
        bounds = self._read(self._sentences, np.int64, first, stop + 1)
        end = min(int(np.searchsorted(bounds, bounds[0] + min_length)), len(bounds) - 1)
        end = max(end, 1)  # at least one sentence
        return self._read(self._tokens, self.dtype, int(bounds[0]), int(bounds[end])).tolist()

    def sample_other_document(self, rng, d):
        """A document other than d, drawn with probability proportional to its number of sentences,
        so that every sentence outside d is equally likely to start a random "next sentence"."""
        first, last = int(self.doc_starts[d]), int(self.doc_starts[d + 1])
        k = rng.randrange(self.num_sentences - (last - first))
        k += (last - first) if k >= first else 0  # skip document d's own sentences
        return int(np.searchsorted(self.doc_starts, k, side="right")) - 1


def build_index(documents, directory, workers):
    """Tokenize the documents (in the workers) into a CorpusIndex in the workspace `directory`."""
    dtype = np.uint16 if len(read_setup(directory)["vocab"]) <= 2 ** 16 else np.uint32
    doc_starts, doc_tokens = array("q", [0]), array("q", [0])
    sentence_count = token_count = 0
    with open(os.path.join(directory, "tokens.bin"), "wb") as tokens, \
            open(os.path.join(directory, "sentences.bin"), "wb") as sentences:
        sentences.write(np.zeros(1, dtype=np.int64).tobytes())
        for ids, lengths, doc_ends in workers.imap(tokenize_documents, _document_batches(documents, directory)):
            # Empty sentences (a line of control characters) carry nothing: drop them, and then
            # the documents left without a sentence.
            keep = lengths > 0
            kept_before = np.concatenate([[0], np.cumsum(keep)])
            tokens_before = np.concatenate([[0], np.cumsum(lengths)])
            tokens.write(ids.astype(dtype).tobytes())
            sentences.write((token_count + tokens_before[1:][keep]).tobytes())
            for end in doc_ends:
                if sentence_count + kept_before[end] > doc_starts[-1]:
                    doc_starts.append(int(sentence_count + kept_before[end]))
                    doc_tokens.append(int(token_count + tokens_before[end]))
            sentence_count += int(kept_before[-1])
            token_count += len(ids)
    starts = np.stack([np.frombuffer(doc_starts, dtype=np.int64), np.frombuffer(doc_tokens, dtype=np.int64)], 1)
    np.save(os.path.join(directory, "documents.npy"), starts)
    files.write_text_atomic(os.path.join(directory, "meta.json"), json.dumps({"dtype": np.dtype(dtype).name}))
    return CorpusIndex(directory)


def _document_batches(documents, workspace):
    """(workspace, sentences, [number of sentences in the batch at each document's end]): whole documents."""
    batch, ends, characters = [], [], 0
    for doc in documents:
        batch += doc
        ends.append(len(batch))
        characters += sum(map(len, doc))
        if characters >= CHARACTERS_PER_TASK:
            yield workspace, batch, ends
            batch, ends, characters = [], [], 0
    if batch:
        yield workspace, batch, ends


# ----------------------------------------------------------------------------------------------
# Instances (BERT's create_pretraining_data procedure, on token ids)
# ----------------------------------------------------------------------------------------------
def create_instances(index, d, rng, args):
    """The instances of document d: [CLS] A [SEP] B [SEP], B the true continuation of A or, half
    the time (always when A is the whole chunk), the start of a random passage of another document."""
    doc = index.document(d)
    max_tokens = args.max_seq_len - 3  # [CLS], [SEP], [SEP]
    # Mostly fill the sequence; sometimes go shorter, as fine-tuning inputs are.
    target = rng.randint(2, max_tokens) if rng.random() < args.short_seq_prob else max_tokens
    instances, chunk, length, i = [], [], 0, 0
    while i < len(doc):
        chunk.append(doc[i])
        length += len(doc[i])
        if i == len(doc) - 1 or length >= target:
            a_end = rng.randrange(1, len(chunk)) if len(chunk) >= 2 else 1
            a = [t for sentence in chunk[:a_end] for t in sentence]
            is_random_next = len(chunk) == 1 or rng.random() < 0.5
            if is_random_next:
                b = random_passage(index, d, rng, target - len(a))
                i -= len(chunk) - a_end  # the unused sentences start the next chunk
            else:
                b = [t for sentence in chunk[a_end:] for t in sentence]
            instances.append(make_instance(a or [_worker["dot_id"]], b or [_worker["dot_id"]],
                                           is_random_next, rng, args))
            chunk, length = [], 0
        i += 1
    return instances


def random_passage(index, d, rng, min_length):
    """Sentences of another document from a random one on, until min_length tokens."""
    other = index.sample_other_document(rng, d)
    first = rng.randrange(int(index.doc_starts[other]), int(index.doc_starts[other + 1]))
    return index.passage(first, int(index.doc_starts[other + 1]), min_length)


def truncate_pair(a, b, max_tokens, rng):
    """Trim the longer of a and b (b on a tie) one token at a time, from a random end, until both
    fit: computed at once, as the number of tokens each loses and how many of those from the front."""
    excess = len(a) + len(b) - max_tokens
    if excess <= 0:
        return a, b
    gap = abs(len(a) - len(b))
    if excess <= gap:
        cut_a, cut_b = (excess, 0) if len(a) > len(b) else (0, excess)
    else:  # the longer one down to the other's length, then b and a in turn
        rest = excess - gap
        cut_a = (gap if len(a) > len(b) else 0) + rest // 2
        cut_b = (gap if len(b) > len(a) else 0) + rest - rest // 2
    return _trim(a, cut_a, rng), _trim(b, cut_b, rng)


def _trim(tokens, cut, rng):
    front = bin(rng.getrandbits(cut)).count("1") if cut else 0  # each token from the front with p=1/2
    return tokens[front:len(tokens) - (cut - front)]


def make_instance(a, b, is_random_next, rng, args):
    """The instance as a JSON line, as json.dumps writes it, from tokens quoted once (each token is
    JSON-quoted a single time for the whole corpus, not per instance)."""
    a, b = truncate_pair(a, b, args.max_seq_len - 3, rng)
    w = _worker
    ids = [w["cls_id"]] + a + [w["sep_id"]] + b + [w["sep_id"]]
    positions, labels = mask_tokens(ids, len(a) + 1, rng, args)
    quoted = w["quoted"].__getitem__
    return ('{"tokens": [' + ", ".join(map(quoted, ids))
            + '], "segment_ids": [' + ", ".join(["0"] * (len(a) + 2) + ["1"] * (len(b) + 1))
            + '], "is_random_next": ' + ("true" if is_random_next else "false")
            + ', "masked_lm_positions": [' + ", ".join(map(str, positions))
            + '], "masked_lm_labels": [' + ", ".join(map(quoted, labels)) + "]}")


def mask_tokens(ids, middle_sep, rng, args):
    """BERT's masking, in place: of the chosen positions 80% become [MASK], 10% a random token,
    10% stay. Returns the positions (ascending) and their original ids."""
    w = _worker
    num_to_mask = min(args.max_predictions_per_seq, max(1, int(round(len(ids) * args.masked_lm_prob))))
    if args.do_whole_word_mask:
        candidates = []
        for i in range(1, len(ids) - 1):
            if i == middle_sep:
                continue
            if candidates and candidates[-1][-1] == i - 1 and w["continuation"][ids[i]]:
                candidates[-1].append(i)  # not across [SEP]: a piece after it starts B's first word
            else:
                candidates.append([i])
        rng.shuffle(candidates)
    else:  # single positions never overlap: a random subset is a shuffled list's prefix
        picked = rng.sample(range(1, len(ids) - 2), min(num_to_mask, len(ids) - 3))
        candidates = [[i + (i >= middle_sep)] for i in picked]  # skip the middle [SEP]
    masked = {}
    for word in candidates:
        if len(masked) >= num_to_mask:
            break
        if len(masked) + len(word) > num_to_mask:  # a whole word that does not fit: try another
            continue
        for i in word:
            masked[i] = ids[i]
            r = rng.random()
            if r < 0.8:
                ids[i] = w["mask_id"]
            elif rng.random() < 0.5:
                ids[i] = rng.randrange(len(w["vocab"]))
    positions = sorted(masked)
    return positions, [masked[i] for i in positions]


def instances_json(task):
    """JSON lines of documents first..stop-1 for one epoch; each document seeds its own generator."""
    workspace, first, stop, epoch, args = task
    w = worker(workspace)
    if w["index"] is None:
        w["index"] = CorpusIndex(workspace)
    index = w["index"]
    lines = []
    for d in range(first, stop):
        lines += create_instances(index, d, random.Random(f"{args.seed}:{epoch}:{d}"), args)
    return stop - first, len(lines), "".join(line + "\n" for line in lines)


# ----------------------------------------------------------------------------------------------
# Workers and epochs
# ----------------------------------------------------------------------------------------------
class Workers:
    """An ordered map over worker processes (or this process when n == 1), with at most a few
    tasks in flight, so that a long input is never read ahead into memory."""

    def __init__(self, n):
        self.n = n
        # spawn, not fork: a worker needs none of this process's memory
        self.context = multiprocessing.get_context("spawn")
        self.pool = self.context.Pool(n, _one_thread) if n > 1 else None

    def run_alone(self, function, *args):
        """function(*args) in a process of its own that exits after it (in this one when n == 1)."""
        if self.pool is None:
            return function(*args)
        process = self.context.Process(target=function, args=args)
        process.start()
        process.join()
        if process.exitcode:
            raise RuntimeError(f"{function.__name__}{args} failed (its error is printed above)")

    def imap(self, function, tasks):
        if self.pool is None:
            yield from map(function, tasks)
            return
        pending = collections.deque()
        for task in tasks:
            pending.append(self.pool.apply_async(function, (task,)))
            if len(pending) > 2 * self.n:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()


def _one_thread():
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # the workers already fill the cores


def epoch_tasks(index, epoch, args):
    """Runs of whole documents of about TOKENS_PER_TASK tokens."""
    first = 0
    for d in range(1, len(index) + 1):
        if d == len(index) or index.doc_token_starts[d] - index.doc_token_starts[first] >= TOKENS_PER_TASK:
            yield index.directory, first, d, epoch, args
            first = d


def write_epoch(index, epoch, args, workers):
    """epoch_N.json and epoch_N_metrics.json; neither exists under its name until both are complete."""
    path = os.path.join(args.output_dir, f"epoch_{epoch}.json")
    metrics_path = os.path.join(args.output_dir, f"epoch_{epoch}_metrics.json")
    if os.path.exists(metrics_path):
        os.remove(metrics_path)  # a metrics file stands for a complete epoch file: not the old one's
    count = 0
    with files.atomic_file(path, "w", encoding="utf-8") as f, \
            tqdm(total=len(index), desc=f"epoch {epoch}", unit=" documents") as bar:
        for docs, n, text in workers.imap(instances_json, epoch_tasks(index, epoch, args)):
            f.write(text)
            count += n
            bar.update(docs)
            bar.set_postfix(instances=count)
    files.write_text_atomic(metrics_path, json.dumps({"num_training_examples": count,
                                                           "max_seq_len": args.max_seq_len}) + "\n")
    return count


# --estimate reads this much of the corpus: enough documents for a stable instances-per-byte figure,
# seconds of work whatever the corpus's size.
ESTIMATE_BYTES = 4 << 20


def corpus_sample(paths, directory, limit):
    """The first `limit` bytes of the corpus (whole lines) as one file in `directory`; its path and size."""
    path, size = os.path.join(directory, "sample.txt"), 0
    with open(path, "wb") as out:
        for source in paths:
            with open(source, "rb") as f:
                for line in f:
                    if size >= limit:
                        break
                    out.write(line)
                    size += len(line)
            out.write(b"\n")  # a file's end also ends a document (not the corpus's bytes: not counted)
    return path, size


def estimate(corpus, args, workers, workspace):
    """Generate the first epoch of a sample of the corpus in memory, time it, and scale to the whole."""
    total = sum(os.path.getsize(f) for f in corpus)
    sample, size = corpus_sample(corpus, workspace, ESTIMATE_BYTES)
    started = time.perf_counter()
    index = build_index(read_documents([sample], args.corpus_format), workspace, workers)
    tokenize = time.perf_counter() - started
    started, count, written = time.perf_counter(), 0, 0
    for _, n, text in workers.imap(instances_json, epoch_tasks(index, 0, args)):
        count, written = count + n, written + len(text.encode("utf-8"))
    generate = time.perf_counter() - started
    index.close()
    scale, epochs = total / max(size, 1), args.epochs_to_generate
    seconds = (tokenize + generate * epochs) * scale
    print(f"estimate: {' '.join(corpus)} hold {total / 2 ** 20:,.1f} MiB; from its first {size / 2 ** 20:,.1f} MiB, "
          f"about {count * scale:,.0f} instances ({written * scale / 2 ** 20:,.0f} MiB) per epoch; {epochs} epoch(s): "
          f"{count * scale * epochs:,.0f} instances, {written * scale * epochs / 2 ** 20:,.0f} MiB in {args.output_dir}, "
          f"about {seconds / 3600:.1f} h ({seconds:,.0f} s) with {args.num_workers} worker(s) on this machine. Nothing was written.")
    return {"instances_per_epoch": count * scale, "bytes_per_epoch": written * scale, "seconds": seconds}


def main(argv=None):
    args = parse_args(argv)
    model_dir = checkpoint.resolve_model_dir(args.bert_model)
    corpus = corpus_files(args.train_corpus)
    os.makedirs(args.output_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".workspace-", dir=args.output_dir) as workspace, \
            Workers(args.num_workers) as workers:
        workers.run_alone(prepare_workspace, model_dir, args.do_lower_case, workspace)
        if args.estimate:
            return estimate(corpus, args, workers, workspace)
        with tqdm(total=sum(os.path.getsize(f) for f in corpus), desc="tokenize", unit="B", unit_scale=True) as bar:
            index = build_index(read_documents(corpus, args.corpus_format, bar), workspace, workers)
        print(f"{' '.join(corpus)}: {len(index)} documents, {index.num_sentences} sentences, "
              f"{int(index.doc_token_starts[-1])} tokens")
        if len(index) < 2:
            other = ("--corpus_format lines (CORPUS_FORMAT=lines) if it is not WikiText"
                     if args.corpus_format == "wikitext" else
                     "--corpus_format wikitext (CORPUS_FORMAT=wikitext) for WikiText files")
            raise ValueError(f"{' '.join(corpus)}: {len(index)} document(s) read as {args.corpus_format}; random next "
                             f"sentences need at least two. Separate documents with blank lines, or pass {other}")
        for epoch in range(args.epochs_to_generate):
            count = write_epoch(index, epoch, args, workers)
            print(f"{args.output_dir}/epoch_{epoch}.json: {count} instances")
        index.close()


if __name__ == "__main__":
    cli.run(main)
