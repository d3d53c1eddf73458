"""download_glue_data.py against an HTTP server on 127.0.0.1 serving archives made here: resume,
restart, verification, atomic extraction, MRPC's construction."""
import http.server
import io
import os
import threading
import zipfile

import pytest

import download_glue_data as dl
import glue

RTE_FILES = {
    "RTE/train.tsv": "index\tsentence1\tsentence2\tlabel\n" + "".join(
        f"{i}\tPremise number {i} is here.\tHypothesis {i}.\t{'entailment' if i % 2 else 'not_entailment'}\n"
        for i in range(40)),
    "RTE/dev.tsv": "index\tsentence1\tsentence2\tlabel\n0\tA dev premise.\tA dev hypothesis.\tentailment\n",
    "RTE/test.tsv": "index\tsentence1\tsentence2\n0\tA test premise.\tA test hypothesis.\n",
}
SST_FILES = {"SST-2/train.tsv": "sentence\tlabel\ngood film \t1\nbad film \t0\n",
             "SST-2/dev.tsv": "sentence\tlabel\nfine \t1\n", "SST-2/test.tsv": "index\tsentence\n0\tok .\n"}


def make_zip(files, compression=zipfile.ZIP_DEFLATED):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        for name, text in files.items():
            z.writestr(name, text)
    return buf.getvalue()


class Server:
    """Serves `files` by name; honours Range unless told not to; can break a response after N bytes."""

    def __init__(self, files):
        self.files, self.requests, self.cut_after, self.ignore_range = dict(files), [], {}, False
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                name = self.path.lstrip("/")
                owner.requests.append((name, self.headers.get("Range")))
                if name not in owner.files:
                    self.send_error(404)
                    return
                data, start = owner.files[name], 0
                if self.headers.get("Range") and not owner.ignore_range:
                    start = int(self.headers["Range"].split("=")[1].split("-")[0])
                    if start >= len(data):
                        self.send_error(416)
                        return
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(data) - start))
                self.send_header("ETag", '"v1"')
                self.end_headers()
                body = data[start:]
                cut = owner.cut_after.pop(name, None)
                self.wfile.write(body if cut is None else body[:cut])  # HTTP/1.0: the connection then closes

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server({"RTE.zip": make_zip(RTE_FILES), "SST-2.zip": make_zip(SST_FILES)})
    yield s
    s.close()


def run(data_dir, server, *args):
    return dl.main(["--data_dir", str(data_dir), "--mirror", server.url, *args])


def run_failing(data_dir, server, *args):
    """A run whose one task fails: it goes on to the end, then raises naming the task."""
    task = args[args.index("--tasks") + 1]
    with pytest.raises(dl.DownloadError, match=rf"^could not download {task} \(see above\); run again to resume$"):
        run(data_dir, server, *args)


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def test_downloads_verifies_and_extracts(tmp_path, server, capsys):
    assert run(tmp_path, server, "--tasks", "RTE,sst-2") == 0
    for name, text in {**RTE_FILES, **SST_FILES}.items():
        assert read(tmp_path / name) == text
    assert os.listdir(tmp_path / ".downloads") == []  # archives removed once extracted
    assert len(glue.get_processor("rte").read_examples(str(tmp_path / "RTE"), "train")) == 40
    server.requests.clear()
    assert run(tmp_path, server, "--tasks", "RTE") == 0
    assert server.requests == [] and "RTE: already in" in capsys.readouterr().out


def test_interrupted_download_resumes_with_a_range_request(tmp_path, server, capsys):
    size = len(server.files["RTE.zip"])
    server.cut_after["RTE.zip"] = size // 2
    run_failing(tmp_path, server, "--tasks", "RTE", "--retries", "0")
    assert f"connection closed after {size // 2} of {size} bytes" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "RTE")
    assert os.path.getsize(tmp_path / ".downloads" / "RTE.zip.part") == size // 2

    assert run(tmp_path, server, "--tasks", "RTE", "--retries", "0") == 0
    assert server.requests[-1] == ("RTE.zip", f"bytes={size // 2}-")
    assert read(tmp_path / "RTE" / "train.tsv") == RTE_FILES["RTE/train.tsv"]

    # within one run, a retry resumes where the broken response stopped
    server.cut_after["SST-2.zip"] = 100
    server.requests.clear()
    assert run(tmp_path, server, "--tasks", "SST") == 0
    assert server.requests == [("SST-2.zip", None), ("SST-2.zip", "bytes=100-")]
    assert read(tmp_path / "SST-2" / "dev.tsv") == SST_FILES["SST-2/dev.tsv"]


def test_server_without_ranges_or_a_stale_part_restarts_cleanly(tmp_path, server):
    downloads = tmp_path / ".downloads"
    downloads.mkdir()
    (downloads / "RTE.zip.part").write_bytes(server.files["RTE.zip"][:50])
    server.ignore_range = True  # answers 200 with the whole file: the part must be replaced, not appended to
    assert run(tmp_path, server, "--tasks", "RTE") == 0
    assert read(tmp_path / "RTE" / "dev.tsv") == RTE_FILES["RTE/dev.tsv"]

    # a part from another version of the archive: the resumed file fails its CRC check and is fetched afresh
    old = make_zip({name: text.replace("Premise", "Old premise") for name, text in RTE_FILES.items()})
    (downloads / "RTE.zip.part").write_bytes(old[:len(old) // 2])
    server.ignore_range = False
    server.requests.clear()
    assert run(tmp_path, server, "--tasks", "RTE", "--force") == 0
    assert server.requests == [("RTE.zip", f"bytes={len(old) // 2}-"), ("RTE.zip", None)]
    assert read(tmp_path / "RTE" / "train.tsv") == RTE_FILES["RTE/train.tsv"]


def test_corrupt_or_incomplete_archives_are_not_extracted(tmp_path, server, capsys):
    good = make_zip(RTE_FILES, zipfile.ZIP_STORED)
    at = good.index(b"Premise number 7")
    server.files["RTE.zip"] = good[:at] + b"p" + good[at + 1:]
    run_failing(tmp_path, server, "--tasks", "RTE")
    assert "RTE/train.tsv fails its CRC check" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "RTE") and os.listdir(tmp_path / ".downloads") == []

    server.files["RTE.zip"] = make_zip({"RTE/train.tsv": "x"})
    run_failing(tmp_path, server, "--tasks", "RTE")
    assert "archive lacks RTE/dev.tsv, RTE/test.tsv" in capsys.readouterr().err
    run_failing(tmp_path, server, "--tasks", "WNLI", "--retries", "0")
    assert "WNLI.zip: HTTP 404" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == [".downloads"]


def test_extraction_is_atomic_and_keeps_files_the_archive_lacks(tmp_path, server, monkeypatch):
    rte = tmp_path / "RTE"
    rte.mkdir()
    for name in ("train.tsv", "dev.tsv", "test.tsv"):
        (rte / name).write_text("old\n")
    (rte / "train_aug.tsv").write_text("augmented\n")
    calls = []
    real_copy = dl.shutil.copyfileobj

    def crash_on_second_file(src, dst, *args):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full")
        return real_copy(src, dst, *args)
    monkeypatch.setattr(dl.shutil, "copyfileobj", crash_on_second_file)
    with pytest.raises(OSError, match="disk full"):
        run(tmp_path, server, "--tasks", "RTE", "--force")
    assert sorted(os.listdir(tmp_path)) == [".downloads", "RTE"]  # no half-written directory beside it
    assert {n: read(rte / n) for n in os.listdir(rte)} == {"train.tsv": "old\n", "dev.tsv": "old\n",
                                                           "test.tsv": "old\n", "train_aug.tsv": "augmented\n"}
    monkeypatch.setattr(dl.shutil, "copyfileobj", real_copy)
    assert run(tmp_path, server, "--tasks", "RTE", "--force") == 0
    assert read(rte / "train.tsv") == RTE_FILES["RTE/train.tsv"] and read(rte / "train_aug.tsv") == "augmented\n"


def test_mrpc_and_diagnostic(tmp_path, server):
    header = "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
    train_rows = ["1\t10\t11\tA one .\tA 1 .", "0\t20\t21\tB two .\tB 2 .", "1\t30\t31\tC three .\tC 3 ."]
    server.files.update({
        "msr_paraphrase_train.txt": (header + "\n".join(train_rows) + "\n").encode(),
        "msr_paraphrase_test.txt": (header + "1\t40\t41\tD four .\tD 4 .\n").encode(),
        "mrpc_dev_ids.tsv": b"20\t21\n",
        "AX.tsv": b"index\tsentence1\tsentence2\n0\ta\tb\n",
    })
    assert run(tmp_path, server, "--tasks", "MRPC,diagnostic") == 0
    assert read(tmp_path / "MRPC" / "train.tsv") == header + train_rows[0] + "\n" + train_rows[2] + "\n"
    assert read(tmp_path / "MRPC" / "dev.tsv") == header + train_rows[1] + "\n"
    assert read(tmp_path / "MRPC" / "test.tsv") == \
        "index\t#1 ID\t#2 ID\t#1 String\t#2 String\n0\t40\t41\tD four .\tD 4 .\n"
    mrpc = glue.get_processor("mrpc")
    assert [e.label for e in mrpc.read_examples(str(tmp_path / "MRPC"), "train")] == ["1", "1"]
    assert mrpc.read_examples(str(tmp_path / "MRPC"), "test")[0].text_b == "D 4 ."
    assert read(tmp_path / "diagnostic" / "diagnostic.tsv") == "index\tsentence1\tsentence2\n0\ta\tb\n"


def test_task_names():
    assert dl.parse_tasks("all") == dl.TASKS and "SNLI" in dl.TASKS
    assert dl.parse_tasks("sst-2, STS-B,cola") == ["SST", "STS", "CoLA"]
    with pytest.raises(SystemExit):
        dl.main(["--tasks", "Foo"])
