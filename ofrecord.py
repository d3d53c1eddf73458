"""OFRecord files, the on-disk format of OneFlow's data readers, written and read with numpy alone.

A split directory holds part files `<prefix>.of_record-0 ... -<n-1>` (OneFlow's `nn.OFRecordReader`
reads parts 0..n-1 under one prefix). A part file is a sequence of records; each record is an int64
little-endian byte count followed by a serialized `oneflow.OFRecord` protobuf:

    OFRecord{map<string, Feature> feature = 1}
    Feature{oneof kind: bytes_list = 1, float_list = 2, double_list = 3, int32_list = 4, int64_list = 5}
    <kind>_list{repeated value = 1 [packed = true]}

(oneflow/core/record/record.proto). Both directions are done here from the protobuf wire format, so
neither OneFlow nor protobuf is needed, and a column of N records is encoded or decoded at once.

This module knows nothing of GLUE (glue.py decides what a record holds): a split is a list of columns `(name, kind, [N, K] array)`, one
record per row. Damaged files raise OFRecordError naming the file and, where it applies, the byte.
"""
import functools
import itertools
import os
import re

import numpy as np
from tqdm import tqdm

import files  # atomic_dir; framework-free like this module

FLOAT_LIST, DOUBLE_LIST, INT32_LIST, INT64_LIST = 2, 3, 4, 5  # Feature's field numbers
FIXED_WIDTH = {FLOAT_LIST: "<f4", DOUBLE_LIST: "<f8"}
VARINT_DTYPE = {INT32_LIST: np.int32, INT64_LIST: np.int64}
PART_RE = re.compile(r"^(?P<prefix>.+)\.of_record-(?P<index>\d+)$")
SERIALIZE_CHUNK = 4096  # records encoded at once; bounds the [rows, values, bytes] scratch array


class OFRecordError(ValueError):
    pass


# ----------------------------------------------------------------------------------------------
# Varints
# ----------------------------------------------------------------------------------------------
def varint(n):
    """The protobuf varint of one non-negative int."""
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def encode_varints(values):
    """Protobuf varints of an integer array [N, K]: (bytes of each row concatenated as uint8, row byte counts).

    Negative numbers take ten bytes, as protobuf writes int32/int64 (two's complement on 64 bits).
    """
    v = np.ascontiguousarray(values, dtype=np.int64).view(np.uint64)
    nbytes = np.ones(v.shape, np.int64)
    rest = v >> np.uint64(7)
    while rest.any():
        nbytes += rest > 0
        rest >>= np.uint64(7)
    k = np.arange(int(nbytes.max(initial=1)), dtype=np.uint64)
    groups = ((v[..., None] >> (np.uint64(7) * k)) & np.uint64(0x7F)).astype(np.uint8)
    groups |= (k[None, None, :] < (nbytes[..., None] - 1).astype(np.uint64)).astype(np.uint8) << 7
    return groups[k[None, None, :] < nbytes[..., None].astype(np.uint64)], nbytes.sum(axis=1)


def decode_varints(data, what="varints"):
    """All varints of a uint8 array, as uint64 (reinterpret as int64 / int32 as the field's type says)."""
    if len(data) == 0:
        return np.zeros(0, np.uint64)
    last = data < 0x80
    if not last[-1]:
        raise OFRecordError(f"{what}: truncated varint")
    ends = np.flatnonzero(last)
    starts = np.concatenate([[0], ends[:-1] + 1])
    position = np.arange(len(data)) - np.repeat(starts, ends - starts + 1)  # byte i's place in its varint
    if position.max() >= 10:
        raise OFRecordError(f"{what}: varint longer than 10 bytes")
    parts = (data & 0x7F).astype(np.uint64) << (np.uint64(7) * position.astype(np.uint64))
    return np.bitwise_or.reduceat(parts, starts)


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=4096)
def entry_prefix(key, kind, payload_len):
    """The bytes of one map entry of OFRecord.feature up to its packed values (which follow)."""
    values = b"\x0a" + varint(payload_len)                          # XList.value, packed
    feature = bytes([kind << 3 | 2]) + varint(len(values) + payload_len)  # Feature.<kind>_list
    entry = b"\x0a" + varint(len(key)) + key + b"\x12" + varint(len(feature) + len(values) + payload_len)
    return b"\x0a" + varint(len(entry) + len(feature) + len(values) + payload_len) + entry + feature + values


def serialize_records(columns, start, stop):
    """Each record of rows [start, stop) of `columns` [(name, kind, [N, K] values)], its length in front."""
    encoded = []
    for name, kind, values in columns:
        block = values[start:stop]
        if kind in FIXED_WIDTH:
            flat = np.ascontiguousarray(block, FIXED_WIDTH[kind]).view(np.uint8).reshape(-1)
            counts = np.full(len(block), block.shape[1] * np.dtype(FIXED_WIDTH[kind]).itemsize)
        elif kind in VARINT_DTYPE:
            flat, counts = encode_varints(block)
        else:
            raise OFRecordError(f"feature {name!r}: list kind {kind} is not float, double, int32 or int64")
        offsets = np.concatenate([[0], np.cumsum(counts)]).tolist()
        encoded.append((name.encode(), kind, flat.tobytes(), offsets))
    out = []
    for i in range(stop - start):
        record = b"".join(entry_prefix(key, kind, offsets[i + 1] - offsets[i]) + data[offsets[i]:offsets[i + 1]]
                          for key, kind, data, offsets in encoded)
        out.append(len(record).to_bytes(8, "little") + record)
    return out


def write_split(columns, split_dir, num_parts=1):
    """`split_dir`/<name>.of_record-0 ... (name = the directory's name: train, eval, ...), one record per
    row of `columns` [(name, kind, [N, K] values)], rows split evenly over the parts; returns the paths."""
    if num_parts < 1:
        raise OFRecordError(f"num_parts={num_parts}: must be at least 1")
    rows = {len(values) for _, _, values in columns}
    if len(rows) != 1:
        raise OFRecordError(f"columns of different lengths: {sorted(rows)}")
    n = rows.pop()
    prefix = os.path.basename(os.path.normpath(split_dir))
    bounds = np.linspace(0, n, num_parts + 1).astype(int)
    names = [f"{prefix}.of_record-{p}" for p in range(num_parts)]
    with files.atomic_dir(split_dir, carry_over=False) as tmp, \
            tqdm(total=n, unit="rows", desc=f"write {prefix}", disable=None, leave=False) as bar:
        for name, start, stop in zip(names, bounds[:-1], bounds[1:]):
            with open(os.path.join(tmp, name), "wb") as f:
                for chunk in range(start, stop, SERIALIZE_CHUNK):
                    end = min(chunk + SERIALIZE_CHUNK, stop)
                    f.writelines(serialize_records(columns, chunk, end))
                    bar.update(end - chunk)
    return [os.path.join(split_dir, name) for name in names]


# ----------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------
def is_split_dir(path):
    return os.path.isdir(path) and any(PART_RE.match(n) for n in os.listdir(path))


def part_files(split_dir):
    """The part files of a split directory, in part order; an error if there are none or gaps."""
    if not os.path.isdir(split_dir):
        raise OFRecordError(f"{split_dir}: OFRecord directory not found")
    parts = {}
    for name in os.listdir(split_dir):
        m = PART_RE.match(name)
        if m:
            parts.setdefault(m["prefix"], {})[int(m["index"])] = os.path.join(split_dir, name)
    if not parts:
        raise OFRecordError(f"{split_dir}: no OFRecord part files (<split>.of_record-<i>)")
    if len(parts) > 1:
        raise OFRecordError(f"{split_dir}: part files of several splits ({', '.join(sorted(parts))})")
    (prefix, by_index), = parts.items()
    missing = sorted(set(range(max(by_index) + 1)) - set(by_index))
    if missing:
        raise OFRecordError(f"{split_dir}: {prefix}.of_record-{missing[0]} is missing (OneFlow reads parts 0..n-1)")
    return [by_index[i] for i in range(len(by_index))]


def split_prefix(split_dir):
    """The <prefix> of a split directory's part files (the split they were written as)."""
    return PART_RE.match(os.path.basename(part_files(split_dir)[0]))["prefix"]


def _read_varint(buf, pos, path):
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise OFRecordError(f"{path}: truncated protobuf (varint at byte {pos})")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def _fields(buf, pos, end, path):
    """(field number, start, stop) of each length-delimited field in buf[pos:end]."""
    while pos < end:
        tag, pos = _read_varint(buf, pos, path)
        if tag & 7 != 2:
            raise OFRecordError(f"{path}: byte {pos}: field {tag >> 3} has wire type {tag & 7}; "
                                "OFRecord holds only length-delimited fields (packed lists)")
        size, pos = _read_varint(buf, pos, path)
        if pos + size > end:
            raise OFRecordError(f"{path}: byte {pos}: field of {size} bytes runs past its message")
        yield tag >> 3, pos, pos + size
        pos += size


def _parse_entry(buf, entry_start, entry_end, path):
    """(name, kind, start, stop) of one OFRecord.feature map entry; start:stop holds its packed values."""
    key = kind = None
    for field, start, stop in _fields(buf, entry_start, entry_end, path):
        if field == 1:
            key = buf[start:stop].decode()
        elif field == 2:
            lists = list(_fields(buf, start, stop, path))  # Feature: one <kind>_list
            if len(lists) != 1:
                raise OFRecordError(f"{path}: byte {start}: a feature with {len(lists)} value lists")
            kind, vstart, vend = lists[0]
            values = list(_fields(buf, vstart, vend, path))  # <kind>_list: packed values, absent if empty
            span = (values[0][1], values[0][2]) if values else (vstart, vstart)
    if key is None or kind is None:
        raise OFRecordError(f"{path}: byte {entry_start}: a feature without a name or a value")
    return key, kind, *span


class _EntryHeaders:
    """Entry headers already parsed: the bytes before an entry's values decide its name, kind and size.

    Records of one file repeat a few headers (they differ only in the byte count of the values), so a
    dictionary lookup replaces most of the byte-by-byte parsing; only canonical headers, the ones
    protobuf and write_split produce, are remembered.
    """
    LIMIT = 100_000

    def __init__(self):
        self.known, self.sizes = {}, []

    def lookup(self, buf, pos):
        for size in self.sizes:
            hit = self.known.get(buf[pos:pos + size])
            if hit:
                return hit
        return None

    def add(self, buf, pos, key, kind, start, stop):
        header = entry_prefix(key.encode(), kind, stop - start)
        if len(self.known) < self.LIMIT and start - pos == len(header) and buf[pos:start] == header:
            self.known[header] = (key, kind, len(header), stop - start)
            if len(header) not in self.sizes:
                self.sizes.append(len(header))


def _parse_record(buf, pos, end, path, out, headers):
    """Append (kind, start, stop) of each feature's packed values to out[name]."""
    while pos < end:
        hit = headers.lookup(buf, pos)
        if hit:
            key, kind, header_size, size = hit
            start, stop = pos + header_size, pos + header_size + size
            if stop > end:
                raise OFRecordError(f"{path}: byte {pos}: feature {key!r} runs past its record")
            next_pos = stop
        else:
            (_, entry_start, next_pos), = itertools.islice(_fields(buf, pos, end, path), 1)
            key, kind, start, stop = _parse_entry(buf, entry_start, next_pos, path)
            headers.add(buf, pos, key, kind, start, stop)
        out.setdefault(key, []).append((kind, start, stop))
        pos = next_pos


def _decode_feature(name, spans, buf, path):
    """[N, K] array of one feature from the (kind, start, stop) of its values in every record."""
    kinds = {kind for kind, _, _ in spans}
    if len(kinds) != 1 or not kinds <= {*FIXED_WIDTH, *VARINT_DTYPE}:
        raise OFRecordError(f"{path}: feature {name!r} has list kinds {sorted(kinds)}; "
                            "expected one of float, double, int32, int64")
    kind = kinds.pop()
    data = np.frombuffer(b"".join(buf[s:e] for _, s, e in spans), np.uint8)
    sizes = np.array([e - s for _, s, e in spans])
    if kind in FIXED_WIDTH:
        values = data.view(FIXED_WIDTH[kind])
        counts = sizes // np.dtype(FIXED_WIDTH[kind]).itemsize
    else:
        values = decode_varints(data, f"{path}: feature {name!r}").view(np.int64).astype(VARINT_DTYPE[kind])
        ends = np.cumsum(sizes)
        if len(data) and not (data[ends[sizes > 0] - 1] < 0x80).all():
            raise OFRecordError(f"{path}: feature {name!r}: a record's values end inside a varint")
        terminators = np.concatenate([[0], np.cumsum(data < 0x80)])
        counts = terminators[ends] - terminators[ends - sizes]
    if len(set(counts.tolist())) > 1:
        raise OFRecordError(f"{path}: feature {name!r} has {counts.min()} to {counts.max()} values per record; "
                            "expected a fixed length")
    return values.reshape(len(spans), -1)


def read_file(path):
    """{feature name: [N, K] numpy array} of one part file."""
    with open(path, "rb") as f:
        buf = f.read()
    pos, spans, count, headers = 0, {}, 0, _EntryHeaders()
    while pos < len(buf):
        if pos + 8 > len(buf):
            raise OFRecordError(f"{path}: truncated record length at byte {pos}")
        size = int.from_bytes(buf[pos:pos + 8], "little")
        if pos + 8 + size > len(buf):
            raise OFRecordError(f"{path}: record {count} at byte {pos} needs {size} bytes, the file ends first")
        _parse_record(buf, pos + 8, pos + 8 + size, path, spans, headers)
        pos, count = pos + 8 + size, count + 1
        missing = [name for name, s in spans.items() if len(s) != count]
        if missing:
            raise OFRecordError(f"{path}: record {count - 1} lacks feature(s) {', '.join(missing)}")
    return {name: _decode_feature(name, s, buf, path) for name, s in spans.items()}


def read_split(split_dir, required=()):
    """{feature name: [N, K] array} over all part files of a split directory, in part order.

    Every non-empty part must hold each feature of `required`; an error if no part holds a record.
    """
    columns = {}
    for path in tqdm(part_files(split_dir), unit="parts", desc="read OFRecord", disable=None, leave=False):
        part = read_file(path)
        missing = [name for name in required if name not in part]
        if part and missing:
            raise OFRecordError(f"{path}: records without feature(s) {', '.join(missing)}")
        for name, values in part.items():
            columns.setdefault(name, []).append(values)
    if not columns:
        raise OFRecordError(f"{split_dir}: no records in its part files")
    most = max(map(len, columns.values()))
    uneven = [name for name, parts in columns.items() if len(parts) != most]
    if uneven:  # concatenated, their rows would no longer line up with the other features'
        raise OFRecordError(f"{split_dir}: feature(s) {', '.join(uneven)} are missing from some part files")
    return {name: np.concatenate(parts) for name, parts in columns.items()}
