"""The torch-only install (requirements-torch.txt): every module and every stage runs with --backend
torch without importing OneFlow or TensorFlow; where they are needed (the two TF conversion scripts,
OneFlow itself) the error says what to install. Also what backend.py tells a OneFlow user whose GPU is
newer than OneFlow 0.9's binary, checked against the installed wheel where OneFlow is there.

In the full environment both frameworks are installed, so "not imported" is checked by what lands in
sys.modules after a run; CI also runs this file in a venv that has neither (.ci/run).
"""
import glob
import importlib
import importlib.util
import json
import mmap
import os
import struct
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]
import backend  # noqa: E402  (binds no framework until asked)
import checkpoint  # noqa: E402
import tiny_assets  # noqa: E402

SCRIPTS = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, "*.py")))


# ----------------------------------------------------------------------------------------------
# Every stage, one process, --backend torch (run as `python tests/test_torch_only.py OUT_DIR`)
# ----------------------------------------------------------------------------------------------
def pipeline(out):
    """Imports every top-level module, then runs each stage on tiny models and the demo data; prints
    which of oneflow / tensorflow ended up imported, as JSON on the last line. The modules bind their
    framework at import from the command line, as a stage script run with --backend torch does."""
    sys.argv[1:] = ["--backend", "torch"]
    for name in SCRIPTS:
        importlib.import_module(name)
    import modeling
    torch_flag = ["--backend", "torch"]
    # 2048 entries: inference.export_onnx traces with token ids 1000-1999
    vocab = tiny_assets.write_vocab(os.path.join(out, "vocab"), size=2048)
    teacher = tiny_assets.write_classifier(modeling, os.path.join(out, "teacher"), vocab, layers=2, hidden=32)
    student = tiny_assets.write_classifier(modeling, os.path.join(out, "student"), vocab, layers=1, hidden=16,
                                           fit_size=32, heads=4)
    mlm = tiny_assets.write_masked_lm(modeling, os.path.join(out, "mlm"), vocab)
    glue_dir = os.path.join(out, "glue")
    os.makedirs(os.path.join(glue_dir, "SST-2"))
    for split, rows in (("train", 24), ("dev", 16)):  # a few rows: every stage, not every example
        with open(os.path.join(tiny_assets.DEMO_SST2, f"{split}.tsv"), encoding="utf-8") as f:
            lines = f.read().splitlines()[:rows + 1]
        with open(os.path.join(glue_dir, "SST-2", f"{split}.tsv"), "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
    sst2 = os.path.join(glue_dir, "SST-2")
    run_stages(out, vocab, teacher, student, mlm, glue_dir, sst2, torch_flag)
    print(json.dumps({name: name in sys.modules for name in ("oneflow", "tensorflow")}))


def run_stages(out, vocab, teacher, student, mlm, glue_dir, sst2, torch_flag):
    import data_augmentation
    import general_distill
    import glue_process
    import pregenerate_training_data
    import task_distill
    corpus = tiny_assets.write_corpus(os.path.join(out, "corpus.txt"))
    pregenerate_training_data.main(["--train_corpus", corpus, "--bert_model", os.path.dirname(vocab), "--output_dir",
                                    os.path.join(out, "pregen"), "--max_seq_len", "48", "--epochs_to_generate", "1",
                                    "--num_workers", "1"])
    general_distill.main(["--pregenerated_data", os.path.join(out, "pregen"), "--teacher_model", teacher,
                          "--student_model", student, "--continue_train", "--output_dir", os.path.join(out, "gd"),
                          "--max_steps", "2", "--train_batch_size", "8", "--no_cuda"] + torch_flag)
    glove = tiny_assets.write_glove(os.path.join(out, "glove.txt"))
    data_augmentation.main(["--pretrained_bert_model", mlm, "--glove_embs", glove, "--glue_dir", glue_dir,
                            "--task_name", "SST-2", "--N", "2", "--no-gpu"] + torch_flag)
    glue_process.main(["--glue_dir", glue_dir, "--output_dir", os.path.join(out, "ofrecord"), "--tasks", "SST-2",
                       "--model_dir", teacher, "--max_seq_length", "48"])
    common = ["--task_name", "SST-2", "--max_seq_length", "48", "--train_batch_size", "8", "--num_train_epochs", "1",
              "--overwrite", "--no-gpu"] + torch_flag
    ofrecord = os.path.join(out, "ofrecord", "SST-2")
    task_distill.main(["--finetune", "--data_dir", ofrecord, "--student_model", teacher, "--output_dir",
                       os.path.join(out, "ft")] + common)
    task_distill.main(["--intermediate_distill", "--aug_train", "--data_dir", sst2, "--teacher_model",
                       os.path.join(out, "ft"), "--student_model", os.path.join(out, "gd"), "--output_dir",
                       os.path.join(out, "s1")] + common)
    task_distill.main(["--pred_distill", "--data_dir", sst2, "--teacher_model", os.path.join(out, "ft"),
                       "--student_model", os.path.join(out, "s1"), "--output_dir", os.path.join(out, "s2")] + common)
    task_distill.main(["--do_eval", "--task_name", "SST-2", "--data_dir", sst2, "--student_model",
                       os.path.join(out, "s2"), "--output_dir", os.path.join(out, "eval"), "--no-gpu"] + torch_flag)
    serve(out, sst2, torch_flag)


def serve(out, sst2, torch_flag):
    """predict.py on the student's directory and on its ONNX export."""
    import export_onnx
    import predict
    sentences = os.path.join(out, "sentences.txt")
    with open(sentences, "w", encoding="utf-8") as f:
        f.write("\n".join(tiny_assets.demo_sentences("dev")[:8]) + "\n")
    export_onnx.main(["--model", os.path.join(out, "s2"), "--output", os.path.join(out, "student.onnx")])
    for model, name in ((os.path.join(out, "s2"), "torch"), (os.path.join(out, "student.onnx"), "onnx")):
        predict.main(["--model", model, "--input", sentences, "--output", os.path.join(out, f"pred_{name}.tsv")]
                     + torch_flag)


def test_every_stage_runs_without_importing_oneflow_or_tensorflow(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    env.pop("BACKEND", None)  # the default backend is oneflow: --backend torch alone must keep it away
    done = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "test_torch_only.py"), str(tmp_path)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"oneflow": False, "tensorflow": False}
    with open(tmp_path / "eval" / "results_eval.json") as f:
        results = json.load(f)
    assert results["backend"] == "torch" and results["num_examples"] == 16
    aug = (tmp_path / "glue" / "SST-2" / "train_aug.tsv").read_text().splitlines()
    assert len(aug) > 25  # 24 examples and their variants, under the header
    assert sorted(os.listdir(tmp_path / "ofrecord" / "SST-2")) == ["eval", "train", "train_aug"]
    # the ONNX graph predicts the labels the PyTorch model does
    by_torch, by_onnx = ((tmp_path / f"pred_{engine}.tsv").read_text().splitlines() for engine in ("torch", "onnx"))
    assert len(by_torch) == 8 and [r.split("\t")[0] for r in by_onnx] == [r.split("\t")[0] for r in by_torch]


# ----------------------------------------------------------------------------------------------
# What the user is told when a framework is missing
# ----------------------------------------------------------------------------------------------
@pytest.fixture
def without(monkeypatch):
    """without('tensorflow'): importing that package fails in this process, as where it is not installed."""
    def block(name):
        for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            monkeypatch.delitem(sys.modules, loaded)
        monkeypatch.setitem(sys.modules, name, None)  # `import name` now raises ModuleNotFoundError
    return block


def test_tf_conversion_without_tensorflow_says_what_to_install(tmp_path, without):
    import convert_bert_pytorch_checkpoint_to_original_tf as convert
    import modeling
    vocab = tiny_assets.write_vocab(tmp_path / "vocab")
    model = tiny_assets.write_classifier(modeling, tmp_path / "model", vocab)
    without("tensorflow")
    with pytest.raises(ImportError, match=r"TensorFlow is needed .*`bash setup_env.sh`.*pip install tensorflow-cpu"):
        convert.main(["--model_name", model, "--tf_cache_dir", str(tmp_path / "tf")])
    assert not (tmp_path / "tf").exists()  # nothing half-written


def test_oneflow_save_without_oneflow_says_what_to_install(tmp_path, without, monkeypatch):
    without("oneflow")
    monkeypatch.setattr(backend, "_frameworks", {k: v for k, v in backend._frameworks.items() if k != "oneflow"})
    monkeypatch.setattr(backend, "_preload_oneflow_libraries", lambda: None)
    with pytest.raises(ImportError, match=r"needs OneFlow.*`bash setup_env.sh`.*reads a PyTorch model directory"):
        checkpoint.save_oneflow({"bert.pooler.dense.bias": [0.0]}, str(tmp_path / "of"))
    with pytest.raises(ImportError, match=r"could not import oneflow.*pass --backend torch"):
        backend.framework("oneflow")


# ----------------------------------------------------------------------------------------------
# OneFlow 0.9 on GPUs newer than its binary
# ----------------------------------------------------------------------------------------------
class FakeOneFlow:
    """The few oneflow.cuda calls warn_oneflow_gpu makes, for a GPU of a given compute capability."""
    __name__ = "oneflow"
    __version__ = "0.9.0"

    def __init__(self, capability, name):
        self.cuda = type("cuda", (), {"is_available": staticmethod(lambda: True),
                                      "get_device_capability": staticmethod(lambda i: capability),
                                      "get_device_name": staticmethod(lambda i: name)})


@pytest.mark.parametrize("capability,name", [((9, 0), "NVIDIA H200"), ((10, 0), "NVIDIA B200"),
                                             ((12, 0), "RTX PRO 6000 Blackwell"), ((5, 2), "Tesla M60")])
def test_oneflow_on_a_gpu_its_wheel_has_no_code_for_is_told_what_to_expect(capability, name, monkeypatch, capsys):
    monkeypatch.setattr(backend, "_warned_gpus", set())
    advice = backend.warn_oneflow_gpu(FakeOneFlow(capability, name))
    assert f"{name} ({capability[0]}.{capability[1]})" in advice
    assert "no kernel image is available" in advice and "--backend torch" in advice
    for setting in ("CUDA_CACHE_MAXSIZE=4294967296", "CUDA_CACHE_PATH=", "CUDA_MODULE_LOADING=LAZY"):
        assert setting in advice
    assert capsys.readouterr().err == f"warning: {advice}\n"
    assert backend.warn_oneflow_gpu(FakeOneFlow(capability, name)) is None  # once per GPU and process
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("capability", [(6, 0), (7, 5), (8, 0), (8, 6), (8, 9), (8, 7)])
def test_oneflow_on_a_gpu_its_wheel_runs_on_is_not_warned(capability, monkeypatch, capsys):
    monkeypatch.setattr(backend, "_warned_gpus", set())
    assert backend.warn_oneflow_gpu(FakeOneFlow(capability, "GPU")) is None
    assert capsys.readouterr().err == ""
    assert backend.oneflow_gpu_advice(capability, oneflow_version="1.0.0") is not None  # another build: unknown


def test_torch_is_never_warned(capsys):
    torch = backend.framework("torch")
    assert backend.warn_oneflow_gpu(torch) is None and capsys.readouterr().err == ""


def fatbin_entries(path):
    """(kind, sm) of every entry of the CUDA fat binaries in a shared library's .nv_fatbin section."""
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        shoff, = struct.unpack_from("<Q", m, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", m, 0x3A)
        section = lambda i: struct.unpack_from("<IIQQQQIIQQ", m, shoff + i * shentsize)
        names = section(shstrndx)[4]
        found = []
        for i in range(shnum):
            name_at, *_, offset, size = section(i)[:6]
            if m[names + name_at:m.find(b"\0", names + name_at)] != b".nv_fatbin":
                continue
            pos = offset
            while pos < offset + size:
                magic, _, header, body = struct.unpack_from("<IHHQ", m, pos)
                if magic != 0xBA55ED50:  # padding between fat binaries
                    pos += 8
                    continue
                entry = pos + header
                while entry < pos + header + body:
                    kind, _, entry_header, entry_size = struct.unpack_from("<HHIQ", m, entry)
                    found.append(({1: "ptx", 2: "cubin"}.get(kind, kind), struct.unpack_from("<I", m, entry + 28)[0]))
                    entry += entry_header + entry_size
                pos += header + body
        return found


def test_the_oneflow_wheel_holds_machine_code_for_exactly_these_gpus():
    """ONEFLOW_09_ARCHS against the installed OneFlow 0.9.0: cubins for those architectures in every
    library of its own kernels, and no PTX a driver could compile for a newer GPU."""
    spec = importlib.util.find_spec("oneflow")  # its files are read; it is not imported
    if spec is None:
        pytest.skip("OneFlow is not installed (torch-only environment)")
    libs = os.path.join(os.path.dirname(os.path.dirname(spec.origin)), "oneflow.libs")
    wanted = {10 * m + n for m, n in backend.ONEFLOW_09_ARCHS}
    for pattern, expected in (("liboneflow-*.so", wanted), ("libcutlass-*.so", {a for a in wanted if a >= 70}),
                              ("libnccl-*.so*", {60, 61, 70, 80})):  # NCCL drops the minor versions
        [path] = glob.glob(os.path.join(libs, pattern))
        entries = fatbin_entries(path)
        assert {sm for kind, sm in entries if kind == "cubin"} == expected, path
        assert not [e for e in entries if e[0] == "ptx"], path


if __name__ == "__main__":
    pipeline(sys.argv[1])
