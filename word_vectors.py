"""GloVe word vectors: a text file ('word v1 ... vD' per line) read once into words and a float32
matrix, then cached beside it as a binary array, so that a rerun of data augmentation does not parse
a multi-gigabyte text file again. Numpy only: the neighbour search lives with its user.

Lines whose word holds spaces (glove.840B) are read, where the reference fails on them; a
word2vec-style "count dim" header line is skipped. A damaged line is named by file and line number.
"""
import collections
import itertools
import os
import sys
import warnings
from typing import NamedTuple

import numpy as np
from tqdm import tqdm

import files


class GloveError(ValueError):
    """A GloVe file that cannot be read: the message names the file and line."""


class Glove(NamedTuple):
    words: list          # one per row; may contain spaces (glove.840B has e.g. "at name@domain.com")
    vectors: np.ndarray  # float32 [rows, dim]


GLOVE_CACHE_VERSION = 1


def glove_cache_path(path, max_words):
    return f"{path}.{max_words or 'all'}.npz"


def load_glove(path, max_words=100000):
    """The first `max_words` rows (0: all) of a GloVe text file, from the cache beside it when current."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"GloVe file {path} does not exist")
    stat = os.stat(path)
    stamp = np.array([GLOVE_CACHE_VERSION, stat.st_size, stat.st_mtime_ns, max_words], np.int64)
    cache = glove_cache_path(path, max_words)
    glove = _read_glove_cache(cache, stamp)
    if glove is None:
        glove = parse_glove(path, max_words)
        _write_glove_cache(cache, glove, stamp)
    return glove


def _read_glove_cache(cache, stamp):
    if not os.path.isfile(cache):
        return None
    if os.path.islink(cache):  # written by load_glove as a plain file: a link is someone else's
        print(f"warning: ignoring the GloVe cache {cache}: it is a symlink; parsing the text file", file=sys.stderr)
        return None
    try:
        with np.load(cache, allow_pickle=False) as z:
            if not np.array_equal(z["stamp"], stamp):
                return None  # the text file changed since: parse it again
            words = z["words"].tobytes().decode("utf-8").split("\n")
            return Glove(words, z["vectors"])
    except (OSError, ValueError, KeyError) as e:
        print(f"warning: ignoring unreadable GloVe cache {cache} ({e}); parsing the text file", file=sys.stderr)
        return None


def _write_glove_cache(cache, glove, stamp):
    words = np.frombuffer("\n".join(glove.words).encode("utf-8"), np.uint8)
    try:
        with files.atomic_file(cache) as f:
            np.savez(f, stamp=stamp, words=words, vectors=glove.vectors)
    except OSError as e:
        print(f"warning: could not write the GloVe cache {cache} ({e}); the next run parses the text again",
              file=sys.stderr)


def _is_number(text):
    try:
        float(text)
        return True
    except ValueError:
        return False


def _glove_dim(path, head):
    """The vector size: the most common number of values on the first lines (a word may hold spaces,
    a line may be damaged)."""
    counts = collections.Counter(line.rstrip(b"\r\n ").count(b" ") for line in head if line.strip())
    dim = counts.most_common(1)[0][0] if counts else 0
    if dim < 1:
        raise GloveError(f"{path}: not a GloVe text file (expected 'word v1 v2 ...' lines)")
    return dim


def _split_glove_line(path, number, raw, dim):
    """(word, the text of its `dim` values) of one line; the word is all that precedes the values."""
    try:
        text = raw.decode("utf-8").rstrip("\r\n").rstrip(" ")
    except UnicodeDecodeError as e:
        raise GloveError(f"{path}:{number}: bytes that are not UTF-8 ({e.reason})") from None
    spaces = text.count(" ")
    inner = spaces - dim  # spaces inside the word
    parts = text.split(" ", max(inner, 0) + 1)
    if inner < 0 or (inner > 0 and _is_number(parts[inner])):
        raise GloveError(f"{path}:{number}: {spaces} values, expected {dim} (as most of the first lines): "
                           f"{text[:80]!r}")
    return " ".join(parts[:inner + 1]), parts[inner + 1]


def _parse_glove_values(path, first_line, texts, dim):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # numpy's notice of a bad value: we name the line
        values = np.fromstring(" ".join(texts), dtype=np.float32, sep=" ")
    if values.size == len(texts) * dim and np.isfinite(values).all():
        return values.reshape(len(texts), dim)
    for number, text in enumerate(texts, start=first_line):  # find the line to blame
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            row = np.fromstring(text, dtype=np.float32, sep=" ")
        if row.size != dim or not np.isfinite(row).all():
            bad = next((v for v in text.split(" ") if not (_is_number(v) and np.isfinite(float(v)))), text[:40])
            raise GloveError(f"{path}:{number}: value {bad!r} is not a finite number")
    raise GloveError(f"{path}:{first_line}: values could not be read")


def parse_glove(path, max_words=100000, chunk=20000):
    """Read a GloVe text file ('word v1 ... vD' per line) into words and a float32 matrix."""
    words, blocks = [], []
    with open(path, "rb") as f:
        first = 1
        head = list(itertools.islice(f, 100))
        if head and len(head[0].split()) == 2 and all(x.isdigit() for x in head[0].split()):
            head, first = head[1:], 2  # a word2vec-style "count dim" header line
        dim = _glove_dim(path, head)
        pending = itertools.islice(itertools.chain(head, f), max_words or None)
        bar = tqdm(desc=f"parse {os.path.basename(path)}", unit="word", total=max_words or None, leave=False)
        for start in itertools.count(first, chunk):
            block = list(itertools.islice(pending, chunk))
            if not block:
                break
            split = [_split_glove_line(path, start + i, raw, dim) for i, raw in enumerate(block)]
            words.extend(w for w, _ in split)
            blocks.append(_parse_glove_values(path, start, [v for _, v in split], dim))
            bar.update(len(block))
        bar.close()
    if not words:
        raise GloveError(f"{path}: no vectors")
    return Glove(words, np.concatenate(blocks))
