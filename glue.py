"""GLUE for every stage: task processors, features, batches, metrics, submission files and OFRecord
files, with no framework in it, so that every backend and every stage reads GLUE the same way.

Conventions the stages rely on: task names are case-insensitive and the GLUE folder names work too
("SST-2", "sts-b"); STS-B is the one regression task (labels `[None]`, float scores); unlabeled rows
(test splits) carry label -1, or NaN for a score; `train_aug.tsv` keeps train.tsv's columns and header;
pairs are encoded in the tokenizer's own layout (`[CLS] a [SEP] b [SEP]` for BERT, RoBERTa's
`<s> a </s></s> b </s>`) and truncated longest-first as BERT's `_truncate_seq_pair`. OFRecord files
follow the original's layout, `OUT/<TASK>/{train,train_aug,eval,test}/<split>.of_record-<i>`; which
features a record holds is decided here, the file format itself is ofrecord.py's.

Bad input raises GlueDataError naming file:line and the row (or, with skip_bad_rows, is counted and
reported once per file); a damaged OFRecord file raises ofrecord.OFRecordError naming the file and byte
(both are ValueErrors); truncation is counted and reported once per call.
"""
import itertools
import logging
import math
import os
from dataclasses import dataclass
from typing import NamedTuple, Optional

import numpy as np
from tqdm import tqdm

import checkpoint
import files
import ofrecord

logger = logging.getLogger("glue")


class GlueDataError(ValueError):
    pass


class InputExample(NamedTuple):
    guid: str
    text_a: str
    text_b: Optional[str]
    label: object  # a label string, a float (regression) or None (test)


# ----------------------------------------------------------------------------------------------
# Processors: one table row per task
# ----------------------------------------------------------------------------------------------
# split -> (tsv file name, OFRecord directory name); "dev" becomes "eval" as in the original layout.
BASE_SPLITS = {"train": ("train.tsv", "train"), "train_aug": ("train_aug.tsv", "train_aug"),
               "dev": ("dev.tsv", "eval"), "test": ("test.tsv", "test")}
MNLI_SPLITS = dict(BASE_SPLITS, dev=("dev_matched.tsv", "eval"), test=("test_matched.tsv", "test"),
                   dev_mismatched=("dev_mismatched.tsv", "eval_mismatched"),
                   test_mismatched=("test_mismatched.tsv", "test_mismatched"))
MNLI_MM_SPLITS = dict(BASE_SPLITS, dev=MNLI_SPLITS["dev_mismatched"], test=MNLI_SPLITS["test_mismatched"])


@dataclass
class Processor:
    task: str                # canonical lower-case name
    dir_name: str            # folder under the GLUE data directory
    labels: list             # [None]: regression
    text_columns: list       # text_a (, text_b) columns of train/dev/train_aug
    label_column: int
    has_header: bool         # of train/dev/train_aug; test.tsv always has one
    num_columns: int = 0     # files without a header: their width (with a header, the header's width)
    test_text_columns: Optional[list] = None  # when test.tsv lays its text out differently
    split_files: dict = None

    def __post_init__(self):
        self.split_files = self.split_files or BASE_SPLITS
        self.test_text_columns = self.test_text_columns or self.text_columns

    @property
    def is_regression(self):
        return self.labels == [None]

    @property
    def num_labels(self):
        return len(self.labels)

    @property
    def default_max_seq_length(self):
        """The reference's length: 64 tokens for a single sentence, 128 for a pair."""
        return 128 if len(self.text_columns) > 1 else 64

    @property
    def splits(self):
        return list(self.split_files)

    def _split(self, split):
        if split not in self.split_files:
            raise GlueDataError(f"{self.task}: unknown split {split!r}; valid: {', '.join(self.split_files)}")
        return self.split_files[split]

    def split_path(self, data_dir, split):
        return os.path.join(data_dir, self._split(split)[0])

    def record_dir_name(self, split):
        return self._split(split)[1]

    def parse_label(self, cell):
        """The label of one tsv cell; ValueError saying why it is not one."""
        if self.is_regression:
            value = float(cell)  # ValueError for a non-number
            if not math.isfinite(value):
                raise ValueError(f"score {cell!r} is not a finite number")
            return value
        if cell not in self.labels:
            raise ValueError(f"unknown label {cell!r} (expected one of {', '.join(self.labels)})")
        return cell

    def read_examples(self, data_dir, split, skip_bad_rows=False):
        path = self.split_path(data_dir, split)
        labeled = not split.startswith("test")
        header, rows = read_tsv(path, has_header=self.has_header or not labeled)
        cols = self.text_columns if labeled else self.test_text_columns
        width = self._check_header(path, header, cols, labeled)
        examples, bad = [], []
        for i, (line, fields) in enumerate(rows):
            try:
                if len(fields) != width:
                    raise ValueError(f"{len(fields)} columns, expected {width}")
                label = self.parse_label(fields[self.label_column]) if labeled else None
            except ValueError as e:
                if not skip_bad_rows:
                    raise GlueDataError(f"{path}:{line}: {e}: {_show_row(fields)}") from None
                bad.append(f"line {line}: {e}")
                continue
            text_b = fields[cols[1]] if len(cols) > 1 else None
            examples.append(InputExample(f"{split}-{i}", fields[cols[0]], text_b, label))
        if bad:
            logger.warning("%s: skipped %d bad rows (first: %s)", path, len(bad), bad[0])
        if not examples:
            raise GlueDataError(f"{path}: no usable examples in split {split!r}")
        return examples

    def _check_header(self, path, header, cols, labeled):
        """The row width this file must have, after checking that its header fits this task."""
        if header is None:
            return self.num_columns
        needed = max(cols + ([self.label_column] if labeled else []))
        if needed >= len(header):
            raise GlueDataError(f"{path}:1: header has {len(header)} columns but {self.task} reads column "
                                f"{needed}: {_show_row(header)}")
        if labeled:
            # A header cell that parses as a label means the file has no header (e.g. a train_aug.tsv
            # written without train.tsv's header line): reading on would silently drop a row.
            try:
                self.parse_label(header[self.label_column])
            except ValueError:
                pass  # a column name, as expected
            else:
                raise GlueDataError(f"{path}:1: expected a header line ({self.task} files have one), "
                                    f"got a data row: {_show_row(header)}")
        return len(header)


_BIN = ["0", "1"]
_NLI = ["entailment", "not_entailment"]
PROCESSORS = {p.task: p for p in [
    Processor("cola", "CoLA", _BIN, [3], 1, has_header=False, num_columns=4, test_text_columns=[1]),
    Processor("sst-2", "SST-2", _BIN, [0], 1, has_header=True, test_text_columns=[1]),
    Processor("mrpc", "MRPC", _BIN, [3, 4], 0, has_header=True),
    Processor("sts-b", "STS-B", [None], [7, 8], 9, has_header=True),
    Processor("qqp", "QQP", _BIN, [3, 4], 5, has_header=True, test_text_columns=[1, 2]),
    Processor("mnli", "MNLI", ["contradiction", "entailment", "neutral"], [8, 9], -1, has_header=True,
              split_files=MNLI_SPLITS),
    Processor("mnli-mm", "MNLI", ["contradiction", "entailment", "neutral"], [8, 9], -1, has_header=True,
              split_files=MNLI_MM_SPLITS),
    Processor("qnli", "QNLI", _NLI, [1, 2], 3, has_header=True),
    Processor("rte", "RTE", _NLI, [1, 2], 3, has_header=True),
    Processor("wnli", "WNLI", _BIN, [1, 2], 3, has_header=True),
]}


def task_texts(data_dir, task):
    """(every text of the task's split files present in `data_dir`: each text_a and text_b, the splits
    read): what a vocabulary trimmed to the task must cover, test sentences included, since the
    student will be asked about them."""
    processor = get_processor(task)
    texts, read = [], []
    for split in processor.splits:
        if os.path.isfile(processor.split_path(data_dir, split)):
            examples = processor.read_examples(data_dir, split)
            texts += [t for e in examples for t in (e.text_a, e.text_b) if t]
            read.append(split)
    if not read:
        names = ", ".join(name for name, _ in processor.split_files.values())
        raise GlueDataError(f"{data_dir}: none of {processor.task}'s files ({names})")
    return texts, read


def get_processor(task):
    key = task.lower()
    if key not in PROCESSORS:
        raise GlueDataError(f"unknown GLUE task {task!r}; valid tasks: {', '.join(PROCESSORS)}")
    return PROCESSORS[key]


def _show_row(fields, limit=200):
    text = "\t".join(fields)
    return repr(text if len(text) <= limit else text[:limit] + "...")


def read_tsv(path, has_header):
    """(header fields or None, [(line number, fields)]) of a GLUE tsv: tab-separated, no quoting.

    GLUE text holds unbalanced quotes (STS-B), so quote characters are data, as the GLUE readers treat
    them (csv with quoting off); only '\\n' ends a line (str.splitlines would also split on \\x0b etc.).
    """
    if not os.path.isfile(path):
        raise GlueDataError(f"{path}: file not found")
    with open(path, "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise GlueDataError(f"{path}:{line}: bytes that are not UTF-8 ({e.reason}: "
                            f"{data[e.start:e.end]!r})") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline after the last row (CoLA's dev.tsv has none)
    rows = [(n, line.rstrip("\r").split("\t")) for n, line in enumerate(lines, start=1)]
    header = None
    if has_header and rows:
        header = rows.pop(0)[1]
        header[0] = header[0].lstrip("\ufeff")  # MRPC's header starts with a BOM
    return header, rows


# ----------------------------------------------------------------------------------------------
# Tokenizer and features
# ----------------------------------------------------------------------------------------------
@dataclass
class Features:
    """A split's examples as arrays, under the names of the OFRecord columns (the reference's, which
    earlier files hold on disk); a batch made from them takes the models' argument names (iter_batches)."""
    input_ids: np.ndarray    # int32 [N, max_seq_length]
    input_mask: np.ndarray   # int32 [N, max_seq_length], 1 on real tokens
    segment_ids: np.ndarray  # int32 [N, max_seq_length]
    label_ids: np.ndarray    # int64 [N] (-1: unlabeled) or float32 [N] for regression (NaN: unlabeled)
    num_truncated: int = 0

    def __post_init__(self):
        shape = self.input_ids.shape
        for name in ("input_ids", "input_mask", "segment_ids"):
            a = getattr(self, name)
            if a.ndim != 2 or a.shape != shape:
                raise GlueDataError(f"features: {name} has shape {a.shape}, expected {shape} (2-D, as input_ids)")
        if self.label_ids.shape != shape[:1]:
            raise GlueDataError(f"features: label_ids has shape {self.label_ids.shape}, expected ({shape[0]},)")

    def __len__(self):
        return len(self.input_ids)

    @property
    def max_seq_length(self):
        return self.input_ids.shape[1]

    @property
    def lengths(self):
        return self.input_mask.sum(axis=1, dtype=np.int32)

    @property
    def is_regression(self):
        return self.label_ids.dtype.kind == "f"

    def select(self, index):
        return Features(self.input_ids[index], self.input_mask[index], self.segment_ids[index],
                        self.label_ids[index])


def truncated_lengths(len_a, len_b, budget):
    """How many tokens of a and of b survive BERT's `_truncate_seq_pair` (pop from the longer, b on
    ties) with `budget` tokens in all, for whole arrays at once."""
    half_lo, half_hi = budget // 2, (budget + 1) // 2
    fits = len_a + len_b <= budget
    a_short = len_a <= half_lo  # then only b is cut
    b_short = len_b <= half_lo
    keep_a = np.where(fits | a_short, len_a, np.where(b_short, budget - len_b, half_hi))
    keep_b = np.where(fits | b_short, len_b, np.where(a_short, budget - len_a, half_lo))
    return keep_a, keep_b


def token_ids(tokenizer, texts):
    """Word-piece ids of every text, without special tokens: (flat int32 ids, lengths)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise GlueDataError(f"{type(tokenizer).__name__} is not a fast tokenizer; "
                            "build one with checkpoint.load_tokenizer")
    encode = getattr(backend, "encode_batch_fast", backend.encode_batch)  # _fast skips character offsets
    ids = [e.ids for e in encode(texts, add_special_tokens=False)]
    lengths = np.fromiter(map(len, ids), np.int64, len(ids))
    return np.fromiter(itertools.chain.from_iterable(ids), np.int32, int(lengths.sum())), lengths


def _scatter(out, flat, lengths, keep, first_col):
    """out[r, first_col[r] + j] = r's j-th token for j < keep[r]: the first keep[r] of lengths[r] tokens."""
    rows = np.repeat(np.arange(len(keep)), keep)
    within = np.arange(int(keep.sum())) - np.repeat(np.cumsum(keep) - keep, keep)
    starts = np.cumsum(lengths) - lengths
    out[rows, np.repeat(np.broadcast_to(first_col, keep.shape), keep) + within] = flat[np.repeat(starts, keep) + within]


class Template(NamedTuple):
    """Where a tokenizer puts its special tokens around one text or a pair, and the token type of
    each part: BERT's [CLS] a [SEP] / [CLS] a [SEP] b [SEP] (types 0.. then 1..), RoBERTa's
    <s> a </s></s> b </s> (no types). Each special part is a list of (id, type)."""
    single: tuple   # (before a, after a)
    pair: tuple     # (before a, between, after b)
    type_a: int
    type_b: int


def template_of(tokenizer):
    """The Template that the tokenizer's own post-processor applies (read off one encoded pair), so
    features follow the model's pair format; token types only where the tokenizer returns them."""
    post = getattr(tokenizer.backend_tokenizer, "post_processor", None)
    with_types = "token_type_ids" in getattr(tokenizer, "model_input_names", ["token_type_ids"])
    if post is None:  # no special tokens of its own: BERT's layout with its ids
        cls_, sep = (tokenizer.cls_token_id, 0), (tokenizer.sep_token_id, 0)
        return Template(([cls_], [sep]), ([cls_], [sep], [(tokenizer.sep_token_id, int(with_types))]), 0, int(with_types))

    def parts(encoding, pieces):
        """The special tokens before, between and after the texts' runs, and each text's type."""
        groups, seq_type, in_text = [[]], {}, False
        for token, token_type, seq in zip(encoding.ids, encoding.type_ids, encoding.sequence_ids):
            token_type = token_type if with_types else 0
            if seq is None:
                if in_text:
                    groups.append([])
                groups[-1].append((token, token_type))
            else:
                seq_type[seq] = token_type
            in_text = seq is not None
        if in_text:
            groups.append([])
        if len(groups) != pieces:
            raise GlueDataError(f"{type(tokenizer).__name__}: cannot read its special-token layout")
        return groups, seq_type

    backend = tokenizer.backend_tokenizer
    # two ordinary words: neither is a special token, so every special id comes from the template
    single, _ = parts(backend.encode("a", add_special_tokens=True), 2)
    pair, seq_type = parts(backend.encode("a", "b", add_special_tokens=True), 3)
    return Template(tuple(single), tuple(pair), seq_type.get(0, 0), seq_type.get(1, 0))


def _put_specials(ids, segments, rows, start, specials):
    for j, (token, token_type) in enumerate(specials):
        ids[rows, start + j] = token
        segments[rows, start + j] = token_type


def _encode_chunk(tokenizer, examples, max_seq_length, template=None):
    """input_ids, input_mask, segment_ids and the number truncated for one chunk of examples."""
    t = template or template_of(tokenizer)
    n = len(examples)
    flat_a, len_a = token_ids(tokenizer, [e.text_a for e in examples])
    texts_b = [e.text_b or "" for e in examples]
    flat_b, len_b = token_ids(tokenizer, texts_b) if any(texts_b) else (np.zeros(0, np.int32), np.zeros(n, np.int64))
    has_b = len_b > 0  # as BERT's run_classifier: a text_b without tokens makes no pair
    (s_pre, s_post), (p_pre, p_mid, p_post) = t.single, t.pair
    budget = np.where(has_b, max_seq_length - len(p_pre) - len(p_mid) - len(p_post),
                      max_seq_length - len(s_pre) - len(s_post))
    keep_a, keep_b = truncated_lengths(len_a, len_b, budget)
    rows = np.arange(n)
    ids = np.full((n, max_seq_length), tokenizer.pad_token_id, np.int32)
    segments = np.zeros((n, max_seq_length), np.int32)
    ones, pairs = rows[~has_b], rows[has_b]
    _put_specials(ids, segments, ones, 0, s_pre)
    _put_specials(ids, segments, pairs, 0, p_pre)
    start_a = np.where(has_b, len(p_pre), len(s_pre))
    _scatter(ids, flat_a, len_a, keep_a, start_a)
    end_a = start_a + keep_a
    _put_specials(ids, segments, ones, end_a[~has_b], s_post)
    _put_specials(ids, segments, pairs, end_a[has_b], p_mid)
    start_b = end_a + len(p_mid)
    _scatter(ids, flat_b, len_b, keep_b, start_b)
    _put_specials(ids, segments, pairs, (start_b + keep_b)[has_b], p_post)
    length = np.where(has_b, start_b + keep_b + len(p_post), end_a + len(s_post))
    cols = np.arange(max_seq_length)[None, :]
    mask = cols < length[:, None]
    in_a = (cols >= start_a[:, None]) & (cols < end_a[:, None])
    in_b = (cols >= start_b[:, None]) & (cols < (start_b + keep_b)[:, None]) & has_b[:, None]
    segments[in_a], segments[in_b] = t.type_a, t.type_b
    return ids, mask.astype(np.int32), segments, int((len_a + len_b > budget).sum())


def label_array(examples, label_list):
    """label_ids of `examples`: indices into label_list (int64, -1 if None), or floats for regression."""
    if list(label_list) in ([None], []):
        return np.array([np.nan if e.label is None else float(e.label) for e in examples], np.float32)
    index = {label: i for i, label in enumerate(label_list)}
    out = np.empty(len(examples), np.int64)
    for i, e in enumerate(examples):
        if e.label is not None and e.label not in index:
            raise GlueDataError(f"example {e.guid}: unknown label {e.label!r} (expected one of {label_list})")
        out[i] = -1 if e.label is None else index[e.label]
    return out


def convert_examples_to_features(examples, tokenizer, max_seq_length, label_list, chunk_size=8192):
    """Features of `examples`; `label_list` is a list of labels or a Processor."""
    if isinstance(label_list, Processor):
        label_list = label_list.labels
    if max_seq_length < 3:
        raise GlueDataError(f"max_seq_length={max_seq_length}: needs room for [CLS] and two [SEP] (at least 3)")
    n = len(examples)
    arrays = [np.empty((n, max_seq_length), np.int32) for _ in range(3)]
    truncated, template = 0, template_of(tokenizer)
    with tqdm(total=n, unit="rows", desc="features", disable=None, leave=False) as bar:
        for start in range(0, n, chunk_size):
            chunk = _encode_chunk(tokenizer, examples[start:start + chunk_size], max_seq_length, template)
            for out, part in zip(arrays, chunk):
                out[start:start + chunk_size] = part
            truncated += chunk[3]
            bar.update(min(chunk_size, n - start))
    if truncated:
        logger.warning("%d of %d examples were longer than max_seq_length=%d and were truncated",
                       truncated, n, max_seq_length)
    return Features(*arrays, label_array(examples, label_list), num_truncated=truncated)


# ----------------------------------------------------------------------------------------------
# Batches with dynamic padding
# ----------------------------------------------------------------------------------------------
def batch_order(lengths, batch_size, shuffle=False, seed=0, epoch=0, group_by_length=False,
                drop_last=False, group_size=50):
    """Lists of row indices, one per batch.

    With group_by_length, rows of similar length share a batch so that padding to the batch's longest
    row costs little: when shuffling, rows are shuffled, cut into groups of `group_size` batches, each
    group sorted by length, and the batches shuffled again; without shuffling, all rows are sorted
    (longest first). The RNG depends only on (seed, epoch), so a resumed run sees the same batches.
    """
    if batch_size < 1:
        raise GlueDataError(f"batch_size={batch_size}: must be at least 1")
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths)) if shuffle else np.arange(len(lengths))
    if group_by_length:
        span = batch_size * group_size if shuffle else max(len(order), 1)
        order = np.concatenate([g[np.argsort(-lengths[g], kind="stable")]
                                for g in np.split(order, range(span, len(order), span))])
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if drop_last and batches and len(batches[-1]) < batch_size:
        batches.pop()
    if shuffle and group_by_length:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def iter_batches(features, batch_size, shuffle=False, seed=0, epoch=0, group_by_length=False, drop_last=False,
                 group_size=50):
    """Dicts of numpy arrays (input_ids, token_type_ids, attention_mask [B, longest in batch], labels, index)
    under the keys every stage's batches use; the order is batch_order's."""
    lengths = features.lengths
    for index in batch_order(lengths, batch_size, shuffle, seed, epoch, group_by_length, drop_last, group_size):
        width = int(lengths[index].max())
        yield {"input_ids": features.input_ids[index, :width], "token_type_ids": features.segment_ids[index, :width],
               "attention_mask": features.input_mask[index, :width], "labels": features.label_ids[index],
               "index": index}


# ----------------------------------------------------------------------------------------------
# Metrics: task -> metrics -> the one that picks the best checkpoint
# ----------------------------------------------------------------------------------------------
def _sklearn(name, averaged=False):
    def metric(preds, labels):
        import sklearn.metrics  # imported on first use: every stage imports glue, few compute metrics
        score = getattr(sklearn.metrics, name)
        if not averaged:
            return float(score(labels, preds))
        # Binary tasks score the positive class; with more classes, the mean over classes.
        binary = max(preds.max(initial=0), labels.max(initial=0)) <= 1
        return float(score(labels, preds, average="binary" if binary else "macro", zero_division=0))
    return metric


def _correlation(name):
    def metric(preds, labels):
        import scipy.stats
        if np.ptp(preds) == 0 or np.ptp(labels) == 0:
            return 0.0  # undefined for constant input; 0 like sklearn's MCC, so comparisons stay valid
        return float(getattr(scipy.stats, name)(preds, labels)[0])
    return metric


METRIC_FUNCTIONS = {
    "acc": _sklearn("accuracy_score"),
    "mcc": _sklearn("matthews_corrcoef"),
    "f1": _sklearn("f1_score", averaged=True),
    "precision": _sklearn("precision_score", averaged=True),
    "recall": _sklearn("recall_score", averaged=True),
    "pearson": _correlation("pearsonr"),
    "spearman": _correlation("spearmanr"),
}
# Averages of other metrics, reported as the GLUE leaderboard and TinyBERT do.
COMBINED = {"acc_and_f1": ("acc", "f1"), "corr": ("pearson", "spearman")}

# task: (metrics reported, metric that picks the best checkpoint) -- TinyBERT's choice of the latter.
TASK_METRICS = {
    "cola": (("mcc",), "mcc"),
    "sst-2": (("acc",), "acc"),
    "mrpc": (("acc", "f1", "acc_and_f1"), "acc"),
    "sts-b": (("pearson", "spearman", "corr"), "corr"),
    "qqp": (("acc", "f1", "acc_and_f1"), "acc"),
    "mnli": (("acc",), "acc"),
    "mnli-mm": (("acc",), "acc"),
    "qnli": (("acc",), "acc"),
    "rte": (("acc",), "acc"),
    "wnli": (("acc",), "acc"),
}


def best_metric_name(task):
    return TASK_METRICS[get_processor(task).task][1]


def compute_metrics(task, preds, labels, names=None):
    """{metric: value} of `preds` (label indices, logits [N, C], or regression scores) against `labels`.

    `names` overrides the task's list from TASK_METRICS (e.g. a results file that wants precision too).
    """
    processor = get_processor(task)
    preds, labels = np.asarray(preds), np.asarray(labels)
    if processor.is_regression:
        preds, labels = preds.reshape(len(preds), -1)[:, 0].astype(np.float64), labels.astype(np.float64)
        unlabeled = np.isnan(labels)
    else:
        preds = preds.argmax(axis=-1) if preds.ndim == 2 else preds
        unlabeled = labels < 0
    if preds.shape != labels.shape:
        raise GlueDataError(f"{task}: {preds.shape[0]} predictions for {labels.shape[0]} labels")
    if len(labels) == 0 or unlabeled.any():
        raise GlueDataError(f"{task}: labels are missing ({int(unlabeled.sum())} of {len(labels)} unlabeled; "
                            "a test split?)")
    out = {}
    for name in names or TASK_METRICS[processor.task][0]:
        if name in COMBINED:
            parts = [out.get(p, METRIC_FUNCTIONS[p](preds, labels)) for p in COMBINED[name]]
            out[name] = float(np.mean(parts))
        elif name in METRIC_FUNCTIONS:
            out[name] = METRIC_FUNCTIONS[name](preds, labels)
        else:
            raise GlueDataError(f"unknown metric {name!r}; valid: {', '.join([*METRIC_FUNCTIONS, *COMBINED])}")
    return out


# ----------------------------------------------------------------------------------------------
# OFRecord: which features a GLUE record holds (the wire format is ofrecord.py's)
# ----------------------------------------------------------------------------------------------
# The feature names on disk: the reference's, which every earlier version wrote too. They stay, so that
# those files load and OneFlow's own OFRecordReader reads ours; only batches take the models' names.
RECORD_FEATURES = ("input_ids", "input_mask", "segment_ids", "label_ids", "is_real_example")


def record_columns(features):
    """(name, list kind, [N, K] values) of each record feature, as the original writes them: int32 ids,
    masks and segments, label_ids int32 (float for regression), is_real_example 1."""
    n = len(features)
    if features.is_regression:
        label = (ofrecord.FLOAT_LIST, features.label_ids.astype(np.float32).reshape(n, 1))
    else:
        label = (ofrecord.INT32_LIST, features.label_ids.astype(np.int32).reshape(n, 1))
    int32 = ofrecord.INT32_LIST
    return [("input_ids", int32, features.input_ids), ("input_mask", int32, features.input_mask),
            ("segment_ids", int32, features.segment_ids), ("label_ids", *label),
            ("is_real_example", int32, np.ones((n, 1), np.int32))]


def features_of_columns(arrays):
    """Features of read columns; records marked is_real_example=0 are padding and are dropped."""
    labels = arrays["label_ids"][:, 0]
    labels = labels.astype(np.float32) if labels.dtype.kind == "f" else labels.astype(np.int64)
    real = arrays["is_real_example"][:, 0] != 0
    return Features(arrays["input_ids"][real].astype(np.int32), arrays["input_mask"][real].astype(np.int32),
                    arrays["segment_ids"][real].astype(np.int32), labels[real])


def write_ofrecord(features, split_dir, num_parts=1):
    """`split_dir`/<name>.of_record-0 ... (name = the directory's name: train, eval, ...); returns the paths."""
    return ofrecord.write_split(record_columns(features), split_dir, num_parts)


def read_ofrecord(split_dir):
    """Features of an OFRecord split directory."""
    return features_of_columns(ofrecord.read_split(split_dir, required=RECORD_FEATURES))


# ----------------------------------------------------------------------------------------------
# One entry point for training stages: tsv or OFRecord
# ----------------------------------------------------------------------------------------------
def _read_checked(split_dir, processor, split, max_seq_length):
    """read_ofrecord, refusing records of another split, another length or another kind of task."""
    want = processor.record_dir_name(split)
    prefix = ofrecord.split_prefix(split_dir)
    if prefix != want:
        raise GlueDataError(f"{split_dir}: holds {prefix} records; split {split!r} is {want}.of_record-<i>")
    features = read_ofrecord(split_dir)
    if max_seq_length is not None and features.max_seq_length != max_seq_length:
        raise GlueDataError(f"{split_dir}: records hold {features.max_seq_length} tokens, "
                            f"max_seq_length={max_seq_length} was asked for")
    if features.is_regression != processor.is_regression:
        kind = "a regression" if processor.is_regression else "a classification"
        raise GlueDataError(f"{split_dir}: {'float' if features.is_regression else 'integer'} labels, "
                            f"but {processor.task} is {kind} task")
    return features


def load_features(path, task, split="train", tokenizer=None, max_seq_length=None, skip_bad_rows=False):
    """Features of `split` from a tsv task directory, an OFRecord task directory or an OFRecord split directory.

    `tokenizer` (a tokenizer or a model directory) is needed for tsv input, cut to `max_seq_length` tokens
    (None: the task's default); OFRecord files keep the length they were written with, which a given
    max_seq_length must match.
    """
    processor = get_processor(task)
    record_dir = os.path.join(path, processor.record_dir_name(split))
    for candidate in (path, record_dir):
        if ofrecord.is_split_dir(candidate):
            return _read_checked(candidate, processor, split, max_seq_length)
    if not os.path.isfile(processor.split_path(path, split)):
        raise GlueDataError(f"{path}: neither {processor.split_files[split][0]} nor OFRecord part files "
                            f"(in {path} or {record_dir})")
    if tokenizer is None:
        raise GlueDataError(f"{processor.split_path(path, split)}: tsv input needs a tokenizer")
    max_seq_length = max_seq_length or processor.default_max_seq_length
    if isinstance(tokenizer, str):
        tokenizer = checkpoint.load_tokenizer(tokenizer)
    examples = processor.read_examples(path, split, skip_bad_rows=skip_bad_rows)
    return convert_examples_to_features(examples, tokenizer, max_seq_length, processor)


# ----------------------------------------------------------------------------------------------
# GLUE benchmark submissions: test-set predictions in the files gluebenchmark.com takes
# ----------------------------------------------------------------------------------------------
# Test files (as the standard download writes them) start with an id column (`index`, QQP's `id`);
# the processors above know where their text is. The diagnostic set AX (`index sentence1 sentence2`,
# saved by download_glue_data.py as diagnostic/diagnostic.tsv beside the task folders) is judged by
# the MNLI model, with MNLI's labels.
DIAGNOSTIC = Processor("ax", "diagnostic", PROCESSORS["mnli"].labels, [1, 2], -1, has_header=True,
                       split_files={"test": ("diagnostic.tsv", "test")})
STS_B_RANGE = (0.0, 5.0)  # the benchmark's similarity scale; a regressor may overshoot it


class SubmissionSet(NamedTuple):
    file_name: str    # SST-2.tsv, MNLI-m.tsv, AX.tsv, ...
    source: str       # the test tsv it was read from
    ids: list         # the file's id column, in file order
    examples: list    # InputExample, label None


# task -> [(submission file, processor, split)]; MNLI's model answers both test sets and AX.
_MNLI_FILES = [("MNLI-m.tsv", "mnli", "test"), ("MNLI-mm.tsv", "mnli", "test_mismatched"), ("AX.tsv", "ax", "test")]
SUBMISSION_FILES = {
    "cola": [("CoLA.tsv", "cola", "test")], "sst-2": [("SST-2.tsv", "sst-2", "test")],
    "mrpc": [("MRPC.tsv", "mrpc", "test")], "sts-b": [("STS-B.tsv", "sts-b", "test")],
    "qqp": [("QQP.tsv", "qqp", "test")], "mnli": _MNLI_FILES, "mnli-mm": _MNLI_FILES,
    "qnli": [("QNLI.tsv", "qnli", "test")], "rte": [("RTE.tsv", "rte", "test")], "wnli": [("WNLI.tsv", "wnli", "test")],
}


def read_test_split(processor, data_dir, split="test"):
    """(ids, examples) of a test tsv: the id column and the processor's examples, row for row."""
    examples = processor.read_examples(data_dir, split)  # checks every row's width; raises on a bad one
    path = processor.split_path(data_dir, split)
    _, rows = read_tsv(path, has_header=True)
    ids = [fields[0] for _, fields in rows]
    for (line, fields), i in zip(rows, ids):
        if not i.strip():
            raise GlueDataError(f"{path}:{line}: empty id in the first column: {_show_row(fields)}")
    return ids, examples


def _diagnostic_dir(data_dir):
    """Where AX's diagnostic.tsv is: the task folder itself, or its sibling `diagnostic/`; else None."""
    for candidate in (data_dir, os.path.join(os.path.dirname(os.path.abspath(data_dir)), DIAGNOSTIC.dir_name)):
        if os.path.isfile(DIAGNOSTIC.split_path(candidate, "test")):
            return candidate
    return None


def submission_sets(task, data_dir):
    """Every test set the benchmark wants for `task`, read from the task's GLUE folder.

    AX is read when its file is present (logged when not); every other test file must exist."""
    sets = []
    for file_name, name, split in SUBMISSION_FILES[get_processor(task).task]:
        processor, directory = (DIAGNOSTIC, _diagnostic_dir(data_dir)) if name == "ax" else (PROCESSORS[name], data_dir)
        if directory is None:
            logger.warning("%s: no diagnostic.tsv here or in ../%s: %s not written", data_dir, DIAGNOSTIC.dir_name,
                           file_name)
            continue
        ids, examples = read_test_split(processor, directory, split)
        sets.append(SubmissionSet(file_name, processor.split_path(directory, split), ids, examples))
    return sets


def submission_text(task, ids, logits):
    """`index<TAB>prediction` lines with the benchmark's label names; STS-B scores clipped to [0, 5]."""
    processor = get_processor(task)
    logits = np.asarray(logits)
    if logits.ndim != 2 or logits.shape != (len(ids), processor.num_labels):
        raise GlueDataError(f"{task}: predictions of shape {logits.shape} for {len(ids)} examples; "
                            f"expected ({len(ids)}, {processor.num_labels})")
    if processor.is_regression:
        values = [f"{v:.3f}" for v in np.clip(logits[:, 0], *STS_B_RANGE)]
    else:
        values = [processor.labels[k] for k in logits.argmax(axis=1)]
    return "index\tprediction\n" + "".join(f"{i}\t{v}\n" for i, v in zip(ids, values))


def write_submissions(task, data_dir, output_dir, logits_of):
    """Write each of the task's submission files into `output_dir` (each atomically); returns their paths.

    `logits_of(examples)` -> [N, num_labels] array: the model's scores for a list of InputExamples
    (for instance `inference.predict_examples`); glue.py itself runs no model.
    """
    os.makedirs(output_dir, exist_ok=True)
    paths = []
    for s in submission_sets(task, data_dir):
        text = submission_text(task, s.ids, logits_of(s.examples))
        path = os.path.join(output_dir, s.file_name)
        files.write_text_atomic(path, text)
        logger.info("%s: %d predictions for %s", path, len(s.ids), s.source)
        paths.append(path)
    return paths
