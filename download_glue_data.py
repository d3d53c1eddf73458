"""Download GLUE into DATA_DIR/<TASK>/, with the task list of the GLUE baselines' download script.

    python download_glue_data.py --data_dir data/glue_data --tasks all          # or --tasks CoLA,SST,MRPC

Every file is fetched into DATA_DIR/.downloads/<name>.part; an interrupted transfer resumes there with an
HTTP Range request on the next try (or the next run), or starts over when the server ignores the range.
A complete archive is checked (zip CRCs, the files the task needs) before a task directory is written,
and that directory appears in one rename: never half-extracted. Files already in it that the archive
does not hold (e.g. train_aug.tsv from data augmentation) are kept. `--mirror URL` fetches every file
by its name from another server (a local copy, or the tests' server).
"""
import argparse
import http.client
import io
import json
import os
import shutil
import sys
import urllib.error
import urllib.parse
import urllib.request
import zipfile

from tqdm import tqdm

import files
import cli

GLUE_URL = "https://dl.fbaipublicfiles.com/glue/data"
SENTEVAL_URL = "https://dl.fbaipublicfiles.com/senteval/senteval_data"
TASKS = ["CoLA", "SST", "MRPC", "QQP", "STS", "MNLI", "SNLI", "QNLI", "RTE", "WNLI", "diagnostic"]
SPLITS = ["train.tsv", "dev.tsv", "test.tsv"]
# task: (url, folder it fills, files it must hold)
TASK_SOURCES = {
    "CoLA": (f"{GLUE_URL}/CoLA.zip", "CoLA", SPLITS),
    "SST": (f"{GLUE_URL}/SST-2.zip", "SST-2", SPLITS),
    "QQP": (f"{GLUE_URL}/QQP-clean.zip", "QQP", SPLITS),
    "STS": (f"{GLUE_URL}/STS-B.zip", "STS-B", SPLITS),
    "MNLI": (f"{GLUE_URL}/MNLI.zip", "MNLI",
             ["train.tsv", "dev_matched.tsv", "dev_mismatched.tsv", "test_matched.tsv", "test_mismatched.tsv"]),
    "SNLI": (f"{GLUE_URL}/SNLI.zip", "SNLI", SPLITS),
    "QNLI": (f"{GLUE_URL}/QNLIv2.zip", "QNLI", SPLITS),
    "RTE": (f"{GLUE_URL}/RTE.zip", "RTE", SPLITS),
    "WNLI": (f"{GLUE_URL}/WNLI.zip", "WNLI", SPLITS),
    "diagnostic": (f"{GLUE_URL}/AX.tsv", "diagnostic", ["diagnostic.tsv"]),
    "MRPC": (None, "MRPC", SPLITS),  # built from the MSR paraphrase corpus below
}
MRPC_SOURCES = {"train": f"{SENTEVAL_URL}/msr_paraphrase_train.txt", "test": f"{SENTEVAL_URL}/msr_paraphrase_test.txt",
                "dev_ids": f"{GLUE_URL}/mrpc_dev_ids.tsv"}
ALIASES = {"SST-2": "SST", "STS-B": "STS", "MNLI-MM": "MNLI", "AX": "diagnostic"}
CHUNK = 1 << 16


class DownloadError(OSError):  # as urllib's URLError: the network or the file fetched let us down
    pass


# ----------------------------------------------------------------------------------------------
# Fetching with resume
# ----------------------------------------------------------------------------------------------
def _open(url, start, validator, timeout):
    headers = {"User-Agent": "tinybert-download-glue"}
    if start:
        headers["Range"] = f"bytes={start}-"
        if validator:
            headers["If-Range"] = validator  # a changed file comes back whole instead of a wrong tail
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _resumed_from(response, start):
    """Where the body starts in the file: `start` for a matching partial response, else 0."""
    content_range = response.headers.get("Content-Range", "")
    if start and response.status == 206 and content_range.startswith(f"bytes {start}-"):
        return start
    return 0


def fetch(url, dest, timeout=60):
    """Download `url` to `dest` through `dest`.part, resuming a part left by an interrupted try.

    Returns True when the download resumed an earlier part. A connection that breaks leaves the part
    (and the server's validator, in `dest`.part.json) for the next try.
    """
    part, meta = dest + ".part", dest + ".part.json"
    start = os.path.getsize(part) if os.path.isfile(part) else 0
    validator = None
    if start and os.path.isfile(meta):
        with open(meta, encoding="utf-8") as f:
            validator = json.load(f).get("validator")
    try:
        response = _open(url, start, validator, timeout)
    except urllib.error.HTTPError as e:
        if e.code != 416 or not start:
            raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from None
        os.remove(part)  # the part is not a prefix of the file (e.g. longer): start over
        return fetch(url, dest, timeout)
    with response:
        offset = _resumed_from(response, start)
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        validator = response.headers.get("ETag") or response.headers.get("Last-Modified")
        if offset == 0:
            files.write_text_atomic(meta, json.dumps({"url": url, "validator": validator}))
        with open(part, "ab" if offset else "wb") as f, \
                tqdm(total=total, initial=offset, unit="B", unit_scale=True, desc=os.path.basename(dest),
                     disable=None, leave=False) as bar:
            while True:
                chunk = response.read(CHUNK)
                if not chunk:
                    break
                f.write(chunk)
                bar.update(len(chunk))
    size = os.path.getsize(part)
    if total is not None and size != total:
        raise DownloadError(f"{url}: connection closed after {size} of {total} bytes")
    os.replace(part, dest)
    os.remove(meta)
    return offset > 0


def fetch_with_retries(url, dest, retries, timeout, check=None):
    """fetch() until the file is complete and `check(dest)` passes; a failed check after a resumed
    download starts over once, since the resumed part may belong to an older version of the file."""
    for attempt in range(retries + 1):
        try:
            resumed = fetch(url, dest, timeout)
            break
        except (OSError, DownloadError, http.client.HTTPException) as e:
            if attempt == retries:
                raise DownloadError(f"{url}: {e}; the partial file {dest}.part is kept, run again to resume") from None
            print(f"{os.path.basename(dest)}: {e}; resuming ({attempt + 1}/{retries})", file=sys.stderr)
    if check is not None:
        try:
            check(dest)
        except DownloadError:
            os.remove(dest)
            if not resumed:
                raise
            print(f"{os.path.basename(dest)}: the resumed file fails its check; downloading it again", file=sys.stderr)
            fetch(url, dest, timeout)
            check(dest)
    return dest


# ----------------------------------------------------------------------------------------------
# Checking and unpacking
# ----------------------------------------------------------------------------------------------
def check_zip(path, folder, files):
    """The archive is a readable zip whose CRCs match and which holds folder/<each file>."""
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
            names = set(z.namelist())
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise DownloadError(f"{path}: not a readable zip archive ({e})") from None
    if bad is not None:
        raise DownloadError(f"{path}: {bad} fails its CRC check (corrupt download)")
    missing = [f"{folder}/{name}" for name in files if f"{folder}/{name}" not in names]
    if missing:
        raise DownloadError(f"{path}: archive lacks {', '.join(missing)}")


def extract_folder(path, folder, target):
    """Write the members under `folder`/ of the zip at `path` into `target` (a fresh directory)."""
    prefix = folder + "/"
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            if not info.filename.startswith(prefix) or info.is_dir():
                continue
            relative = os.path.normpath(info.filename[len(prefix):])
            if relative.startswith("..") or os.path.isabs(relative):
                raise DownloadError(f"{path}: member {info.filename} points outside its folder")
            out = os.path.join(target, relative)
            os.makedirs(os.path.dirname(out), exist_ok=True)
            with z.open(info) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst)


def task_present(data_dir, task):
    _, folder, files = TASK_SOURCES[task]
    return all(os.path.isfile(os.path.join(data_dir, folder, name)) for name in files)


# ----------------------------------------------------------------------------------------------
# Tasks
# ----------------------------------------------------------------------------------------------
def source_url(url, mirror):
    if not mirror:
        return url
    return mirror.rstrip("/") + "/" + os.path.basename(urllib.parse.urlparse(url).path)


def download_task(task, data_dir, args):
    url, folder, members = TASK_SOURCES[task]
    downloads = os.path.join(data_dir, ".downloads")
    os.makedirs(downloads, exist_ok=True)
    archive = os.path.join(downloads, os.path.basename(urllib.parse.urlparse(url).path))
    url = source_url(url, args.mirror)
    if task == "diagnostic":
        fetch_with_retries(url, archive, args.retries, args.timeout, check=_check_utf8_tsv)
        with files.atomic_dir(os.path.join(data_dir, folder)) as tmp:
            shutil.copyfile(archive, os.path.join(tmp, members[0]))
    else:
        fetch_with_retries(url, archive, args.retries, args.timeout, check=lambda p: check_zip(p, folder, members))
        with files.atomic_dir(os.path.join(data_dir, folder)) as tmp:
            extract_folder(archive, folder, tmp)
    if not args.keep_archives:
        os.remove(archive)


def _check_utf8_tsv(path):
    with open(path, "rb") as f:
        data = f.read()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DownloadError(f"{path}: not UTF-8 text at byte {e.start}") from None
    if not data.strip():
        raise DownloadError(f"{path}: empty file")


def _mrpc_rows(path):
    """(header line, [(label, id1, id2, s1, s2)]) of an MSR paraphrase corpus file."""
    with io.open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    header, rows = lines[0], []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.strip().split("\t")
        if len(fields) != 5:
            raise DownloadError(f"{path}:{number}: {len(fields)} columns, expected 5: {line[:200]!r}")
        rows.append(fields)
    return header, rows


def download_mrpc(data_dir, args):
    """MRPC's train/dev/test.tsv from the MSR paraphrase corpus, split by GLUE's list of dev ids."""
    sources = {}
    downloads = os.path.join(data_dir, ".downloads")
    os.makedirs(downloads, exist_ok=True)
    for name, url in MRPC_SOURCES.items():
        if args.path_to_mrpc and name != "dev_ids":
            sources[name] = os.path.join(args.path_to_mrpc, os.path.basename(url))
            if not os.path.isfile(sources[name]):
                raise DownloadError(f"--path_to_mrpc {args.path_to_mrpc}: no {os.path.basename(url)} there")
            continue
        sources[name] = os.path.join(downloads, os.path.basename(url))
        fetch_with_retries(source_url(url, args.mirror), sources[name], args.retries, args.timeout,
                           check=_check_utf8_tsv)
    with io.open(sources["dev_ids"], encoding="utf-8") as f:
        dev_ids = {tuple(line.strip().split("\t")) for line in f if line.strip()}
    header, train_rows = _mrpc_rows(sources["train"])
    _, test_rows = _mrpc_rows(sources["test"])
    with files.atomic_dir(os.path.join(data_dir, "MRPC")) as tmp:
        with open(os.path.join(tmp, "train.tsv"), "w", encoding="utf-8", newline="\n") as train, \
                open(os.path.join(tmp, "dev.tsv"), "w", encoding="utf-8", newline="\n") as dev:
            train.write(header + "\n")  # as read: with the corpus's BOM, as GLUE's copy has it
            dev.write(header + "\n")
            for row in train_rows:
                (dev if (row[1], row[2]) in dev_ids else train).write("\t".join(row) + "\n")
        with open(os.path.join(tmp, "test.tsv"), "w", encoding="utf-8", newline="\n") as test:
            test.write("index\t#1 ID\t#2 ID\t#1 String\t#2 String\n")
            for index, row in enumerate(test_rows):
                test.write("\t".join([str(index), *row[1:]]) + "\n")
    if not args.keep_archives:
        for name, path in sources.items():
            if path.startswith(downloads):
                os.remove(path)


def parse_tasks(text):
    if text.strip().lower() == "all":
        return list(TASKS)
    by_name = {t.lower(): t for t in TASKS}
    by_name.update({alias.lower(): t for alias, t in ALIASES.items()})
    tasks = []
    for name in filter(None, (n.strip() for n in text.split(","))):
        if name.lower() not in by_name:
            raise argparse.ArgumentTypeError(f"unknown task {name!r}; valid: all or {', '.join(TASKS)}")
        tasks.append(by_name[name.lower()])
    return tasks


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_dir", default="data/glue_data", help="where the task folders go")
    p.add_argument("--tasks", type=parse_tasks, default="all", help=f"all, or a comma list of {', '.join(TASKS)}")
    p.add_argument("--path_to_mrpc", default=None,
                   help="a folder with msr_paraphrase_train.txt / msr_paraphrase_test.txt, instead of downloading them")
    p.add_argument("--mirror", default=None, help="fetch every file by its name from this base URL instead")
    p.add_argument("--retries", type=int, default=3, help="resumed tries per file after a broken connection")
    p.add_argument("--timeout", type=float, default=60, help="seconds without data before a try fails")
    p.add_argument("--force", action="store_true", help="download tasks whose files are already there")
    p.add_argument("--keep_archives", action="store_true", help="keep the downloaded archives in DATA_DIR/.downloads")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    os.makedirs(args.data_dir, exist_ok=True)
    failed = []
    for task in args.tasks:
        if task_present(args.data_dir, task) and not args.force:
            print(f"{task}: already in {os.path.join(args.data_dir, TASK_SOURCES[task][1])} "
                  "(--force to download again)")
            continue
        print(f"{task}: downloading")
        try:
            if task == "MRPC":
                download_mrpc(args.data_dir, args)
            else:
                download_task(task, args.data_dir, args)
        except DownloadError as e:
            print(f"{task}: {e}", file=sys.stderr)
            failed.append(task)
            continue
        print(f"{task}: done, in {os.path.join(args.data_dir, TASK_SOURCES[task][1])}")
    if failed:
        raise DownloadError(f"could not download {', '.join(failed)} (see above); run again to resume")
    return 0


if __name__ == "__main__":
    cli.run(main)
