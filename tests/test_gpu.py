"""Every stage on a CUDA GPU (PyTorch backend), against the same run on the CPU: teacher fine-tuning,
both task-distillation stages, general distillation, data augmentation and inference, with tiny random
models on the demo's SST-2-style sentences (tests/tiny_assets.py: nothing from outside the repository).

Marked `gpu` and skipped without CUDA; bench/gpu_check.sh runs them. Without pytest (a bare GPU
server), `python tests/test_gpu.py` runs them too. GPU_TESTS_ON_CPU=1 runs them on a machine without a
GPU, where the "GPU" run is a second CPU run: that checks this file's own code, not CUDA.

What "equal" means here: the models have no dropout and every run starts from the same saved weights
with the same batches, so the first step's loss on the GPU is the CPU's up to float32 rounding.
"""
import contextlib
import csv
import functools
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]
os.environ.setdefault("BACKEND", "torch")
import backend  # noqa: E402
import checkpoint  # noqa: E402
import modeling  # noqa: E402
import tiny_assets  # noqa: E402

flow = backend.framework()
ON_CPU = os.environ.get("GPU_TESTS_ON_CPU") == "1"
HAVE_CUDA = flow.__name__ == "torch" and flow.cuda.is_available()
# the launcher's variables come from torchrun alone (importing OneFlow leaves RANK=-1 etc. in a process)
ENV = {k: v for k, v in os.environ.items()
       if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
ENV.update(BACKEND="torch", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
LOSS_RTOL = 1e-4  # float32 on two devices, reductions in another order

try:
    import pytest
except ImportError:  # bench/gpu_check.sh on a machine without pytest runs this file as a script
    pytest = None
else:
    pytestmark = [pytest.mark.gpu,
                  pytest.mark.skipif(not (HAVE_CUDA or ON_CPU), reason="no CUDA GPU (bench/gpu_check.sh runs these)")]


class Skipped(Exception):
    pass


def skip(reason):
    if pytest is not None and __name__ != "__main__":
        pytest.skip(reason)
    raise Skipped(reason)


# ----------------------------------------------------------------------------------------------
# Models, data and runs
# ----------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def assets():
    """Written once per session: vocabulary, teacher (4 layers, 48 wide), student (2 layers, 32 wide),
    a masked LM, GloVe vectors and pregenerated general-distillation data."""
    root = tempfile.mkdtemp(prefix="tinybert-gpu-tests-")
    import atexit
    atexit.register(shutil.rmtree, root, True)
    vocab = tiny_assets.write_vocab(os.path.join(root, "vocab"))
    wide = dict(initializer_range=0.2)  # teachers: attention scores far from 0, worth distilling
    paths = {
        "root": root, "vocab": vocab,
        "teacher": tiny_assets.write_classifier(modeling, os.path.join(root, "teacher"), vocab, layers=4, hidden=48,
                                                **wide),
        "student": tiny_assets.write_classifier(modeling, os.path.join(root, "student"), vocab, fit_size=48, seed=1),
        "dropout": tiny_assets.write_classifier(modeling, os.path.join(root, "dropout"), vocab, seed=3, dropout=0.1),
        "mlm": tiny_assets.write_masked_lm(modeling, os.path.join(root, "mlm"), vocab, positions=128),
        "glove": tiny_assets.write_glove(os.path.join(root, "glove.txt")),
        "corpus": tiny_assets.write_corpus(os.path.join(root, "corpus.txt")),
    }
    flow.manual_seed(2)
    modeling.BertModel(tiny_assets.bert_config(modeling, vocab, layers=4, hidden=48, **wide)).save_pretrained(
        os.path.join(root, "gd_teacher"), vocab_file=vocab)
    import pregenerate_training_data
    with quiet():
        pregenerate_training_data.main(["--train_corpus", paths["corpus"], "--bert_model", os.path.dirname(vocab),
                                        "--output_dir", os.path.join(root, "pregen"), "--max_seq_len", "64",
                                        "--epochs_to_generate", "1", "--num_workers", "1", "--seed", "3"])
    paths.update(gd_teacher=os.path.join(root, "gd_teacher"), pregen=os.path.join(root, "pregen"))
    return paths


@contextlib.contextmanager
def quiet():
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def gpu_flag(on_gpu):
    return "--gpu" if on_gpu else "--no-gpu"


def task_distill(out, mode, on_gpu, *extra, student=None):
    """task_distill.main in this process: `mode` one of finetune, intermediate, pred, eval."""
    import task_distill
    a = assets()
    flag = {"finetune": ["--finetune"], "intermediate": ["--intermediate_distill"], "pred": ["--pred_distill"],
            "eval": ["--do_eval"]}[mode]
    argv = flag + ["--task_name", "SST-2", "--data_dir", tiny_assets.DEMO_SST2, "--output_dir", str(out),
                   "--student_model", student or (a["teacher"] if mode == "finetune" else a["student"]),
                   "--max_seq_length", "64", "--train_batch_size", "16", "--max_train_examples", "96",
                   "--num_train_epochs", "1", "--eval_step", "1", "--learning_rate", "1e-3", "--seed", "5",
                   "--overwrite", gpu_flag(on_gpu), *extra]
    if mode in ("intermediate", "pred"):
        argv += ["--teacher_model", a["teacher"]]
    with quiet():
        task_distill.main(argv)
    return str(out)


def log_rows(out):
    with open(os.path.join(out, "train_log.csv")) as f:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]


def assert_first_step_equal(cpu_out, gpu_out, terms):
    cpu, gpu = log_rows(cpu_out)[0], log_rows(gpu_out)[0]
    assert cpu["step"] == gpu["step"] == 1
    for term in terms:
        assert np.isclose(gpu[term], cpu[term], rtol=LOSS_RTOL, atol=1e-6), (term, gpu[term], cpu[term])


# The attention key bias adds the same q . b_k to every score of a query, which softmax cancels: its
# gradient is zero but for rounding, noise that AdamW (dividing by its tiny second moment) turns into
# ~1e-5 steps. Two runs that agree everywhere else differ there, so comparisons of trained weights leave it out.
ROUNDING_NOISE = ("attention.self.key.bias",)


def max_diff(a, b, leave_out=ROUNDING_NOISE):
    assert a.keys() == b.keys()
    return max(float(np.abs(a[k] - b[k]).max()) for k in a if not k.endswith(leave_out))


def dev_logits(model_dir, device):
    import task_distill
    import glue
    dev = glue.load_features(tiny_assets.DEMO_SST2, "SST-2", "dev", checkpoint.load_tokenizer(model_dir), 64)
    model = modeling.TinyBertForSequenceClassification.from_pretrained(model_dir, num_labels=2, fit_size=None,
                                                                       verbose=False).to(device)
    return task_distill.predict(model, dev, 32, device)[0]


def run_script(args, timeout=600):
    done = subprocess.run([sys.executable, *args], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout)
    return done


# ----------------------------------------------------------------------------------------------
# The stages
# ----------------------------------------------------------------------------------------------
def test_teacher_finetuning_on_gpu_matches_cpu_and_its_checkpoint_loads_on_cpu(tmp_path):
    cpu = task_distill(tmp_path / "cpu", "finetune", False)
    gpu = task_distill(tmp_path / "gpu", "finetune", True)
    assert_first_step_equal(cpu, gpu, ["cls_loss"])
    assert max_diff(checkpoint.load_state_dict(gpu), checkpoint.load_state_dict(assets()["teacher"])) > 1e-4
    # the GPU's best checkpoint, read on the CPU, predicts what it predicted on the GPU
    on_gpu, on_cpu = dev_logits(gpu, backend.device(True)), dev_logits(gpu, "cpu")
    assert np.allclose(on_gpu, on_cpu, rtol=1e-4, atol=1e-5)
    with open(os.path.join(gpu, "results_eval.json")) as f:
        written = json.load(f)
    with open(os.path.join(tiny_assets.DEMO_SST2, "dev.tsv"), encoding="utf-8") as f:
        labels = [int(row.split("\t")[1]) for row in f.read().splitlines()[1:]]
    assert abs(written["accuracy"] - np.mean(on_cpu.argmax(-1) == labels)) <= 1 / len(labels)  # one near tie at most


def test_stage1_intermediate_distillation_first_step_equals_cpu(tmp_path):
    cpu = task_distill(tmp_path / "cpu", "intermediate", False)
    gpu = task_distill(tmp_path / "gpu", "intermediate", True)
    assert_first_step_equal(cpu, gpu, ["att_loss", "rep_loss", "loss"])
    assert len(log_rows(gpu)) == len(log_rows(cpu))


def test_stage2_prediction_distillation_first_step_equals_cpu(tmp_path):
    cpu = task_distill(tmp_path / "cpu", "pred", False)
    gpu = task_distill(tmp_path / "gpu", "pred", True)
    assert_first_step_equal(cpu, gpu, ["cls_loss"])


def test_bf16_teacher_on_gpu_stays_close_to_fp32(tmp_path):
    fp32 = task_distill(tmp_path / "fp32", "intermediate", True)
    bf16 = task_distill(tmp_path / "bf16", "intermediate", True, "--teacher_dtype", "bf16")
    a, b = log_rows(fp32)[0], log_rows(bf16)[0]
    for term in ("att_loss", "rep_loss"):  # bfloat16 keeps 8 bits of mantissa: ~1% on a loss
        assert np.isclose(b[term], a[term], rtol=3e-2), (term, b[term], a[term])
    assert b["att_loss"] != a["att_loss"]  # the teacher did run in bfloat16
    assert len(log_rows(bf16)) == len(log_rows(fp32))


def test_general_distillation_first_step_equals_cpu(tmp_path):
    a = assets()
    outs = {}
    for name, flags in (("cpu", ["--no_cuda"]), ("gpu", [] if HAVE_CUDA else ["--no_cuda"])):
        import general_distill
        outs[name] = str(tmp_path / name)
        with quiet():
            general_distill.main(["--pregenerated_data", a["pregen"], "--teacher_model", a["gd_teacher"],
                                  "--student_model", a["student"], "--continue_train", "--output_dir", outs[name],
                                  "--num_train_epochs", "1", "--train_batch_size", "16", "--max_steps", "4",
                                  "--learning_rate", "1e-3", "--logging_steps", "1", "--save_steps", "4", *flags])
    assert_first_step_equal(outs["cpu"], outs["gpu"], ["att_loss", "rep_loss"])


def augmentor(device, double):
    import data_augmentation as da
    import word_vectors as wv
    a = assets()
    model = da.load_masked_lm(a["mlm"], device)
    return da.Augmentor(model.double() if double else model, checkpoint.load_tokenizer(a["mlm"]),
                        wv.load_glove(a["glove"], 0), 15, device)


def test_augmentation_candidates_on_gpu_equal_cpu():
    """In float64 the lists are the same on both devices (float32 may swap two nearly tied words)."""
    texts = tiny_assets.demo_sentences()[:160]
    cpu = augmentor("cpu", True)
    gpu = augmentor(backend.device(True), True)
    ours, theirs = gpu.candidates(texts), cpu.candidates(texts)
    assert ours == theirs
    assert gpu.stats["mlm"] > 100 and gpu.stats["glove"] > 10  # both kinds of candidate were compared
    reference = augmentor(backend.device(True), True)
    reference.reference_mode = True
    assert reference.candidates(texts[:20]) == theirs[:20]  # the reference's procedure on the GPU too


def test_augmentation_script_on_gpu_writes_the_cpu_rows(tmp_path):
    """The whole script in float32: the GPU's rows are the CPU's but for rare near ties."""
    import data_augmentation as da
    a = assets()
    outs = {}
    for name, on_gpu in (("cpu", False), ("gpu", True)):
        outs[name] = str(tmp_path / f"train_aug_{name}.tsv")
        with quiet():
            da.main(["--pretrained_bert_model", a["mlm"], "--glove_embs", a["glove"], "--glue_dir",
                     os.path.dirname(tiny_assets.DEMO_SST2), "--task_name", "SST-2", "--N", "4", "--output",
                     outs[name], "--glove_vocab_size", "0", gpu_flag(on_gpu)])
    cpu, gpu = (open(outs[n], encoding="utf-8").read().splitlines() for n in ("cpu", "gpu"))
    originals = open(os.path.join(tiny_assets.DEMO_SST2, "train.tsv")).read().splitlines()
    assert gpu[0] == originals[0] and set(originals) <= set(gpu)  # the header, then every example and variants
    assert len(gpu) > 2 * len(originals)
    same = len(set(cpu) & set(gpu)) / len(set(cpu) | set(gpu))
    assert same > 0.9, same


def test_inference_on_gpu_gives_the_cpu_results(tmp_path):
    a = assets()
    cpu = task_distill(tmp_path / "cpu", "eval", False, student=a["teacher"])
    gpu = task_distill(tmp_path / "gpu", "eval", True, student=a["teacher"])
    results = [json.load(open(os.path.join(d, "results_eval.json"))) for d in (cpu, gpu)]
    for key in ("accuracy", "MCC", "f_1", "num_examples", "parameters"):
        assert results[0][key] == results[1][key], key
    assert np.allclose(dev_logits(a["teacher"], "cpu"), dev_logits(a["teacher"], backend.device(True)),
                       rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------------------------
# Mixed precision, resume, launchers
# ----------------------------------------------------------------------------------------------
def needs_cuda():
    if not HAVE_CUDA:
        skip("needs a CUDA GPU (--fp16 refuses to run on a CPU)")


def script_argv(out, mode="--finetune", model=None, epochs=2, batch=16, eval_step=2):
    """task_distill.py's command line for the subprocess runs below (the teacher's weights by default)."""
    a = assets()
    argv = ["task_distill.py", mode, "--task_name", "SST-2", "--data_dir", tiny_assets.DEMO_SST2, "--student_model",
            model or a["teacher"], "--output_dir", str(out), "--max_seq_length", "64", "--train_batch_size",
            str(batch), "--max_train_examples", "96", "--num_train_epochs", str(epochs), "--eval_step", str(eval_step),
            "--learning_rate", "1e-3", "--seed", "5"]
    return argv + (["--teacher_model", a["teacher"]] if mode != "--finetune" else [])


def uninterrupted(out, flags, model=None):
    done = run_script(script_argv(out, model=model) + flags)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def killed_then_resumed(out, kill_after, first_flags, resume_flags, model=None):
    """task_distill.py killed by SIGKILL after `kill_after` steps, then resumed; returns the resumed run."""
    killed = run_script(["tests/kill_after.py", str(kill_after)] + script_argv(out, model=model) + first_flags)
    assert killed.returncode != 0, "the run was meant to be killed"
    resumed = run_script(script_argv(out, model=model) + resume_flags + ["--resume"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return resumed


def resume_weights(out):
    return checkpoint.load_state_dict(os.path.join(str(out), "resume"))


def test_fp16_trains_and_resumes(tmp_path):
    """task_distill.py --fp16, killed after 5 steps and resumed: the script's whole path in fp16."""
    needs_cuda()
    resumed = killed_then_resumed(tmp_path / "run", 5, ["--fp16"], ["--fp16"])
    assert "resuming at epoch 0, batch 4, step 4" in resumed.stdout
    rows = log_rows(tmp_path / "run")
    assert [r["step"] for r in rows] == [2, 4, 6, 8, 10, 12]  # 96 examples / 16 = 6 steps an epoch, 2 epochs
    assert all(np.isfinite(r["cls_loss"]) for r in rows)
    assert max_diff(resume_weights(tmp_path / "run"), checkpoint.load_state_dict(assets()["teacher"])) > 1e-4


FP16_STEPS, FP16_BATCH = 10, 16
FP16_INIT_SCALE = 2.0 ** 22  # overflows fp16 gradients at first: the scaler must back off, skipping those steps


def fp16_fit(out, crash_at=None, resume=False, drop_scaler_state=False):
    """training.fit in fp16 on the GPU, in this process, from a loss scale too large to last; returns
    (weights, final state, dtypes of the logits seen inside the loss). `crash_at`: the micro-batch
    at which it dies; `drop_scaler_state`: resume as a fit that forgot the scaler's state would."""
    import training
    training.set_seed(0)
    model = modeling.TinyBertForSequenceClassification.from_pretrained(assets()["teacher"], num_labels=2,
                                                                       fit_size=None, verbose=False).to("cuda")
    rng = np.random.default_rng(0)
    ids = flow.tensor(rng.integers(5, model.config.vocab_size, size=(4 * FP16_BATCH, 24)), device="cuda")
    labels = flow.tensor(rng.integers(0, 2, size=4 * FP16_BATCH), device="cuda")

    def epochs(epoch):
        order = np.random.default_rng([1, epoch]).permutation(len(labels))
        rows = [order[i:i + FP16_BATCH] for i in range(0, len(order), FP16_BATCH)]
        return training.Epoch(len(rows), lambda i: {"ids": ids[rows[i]], "labels": labels[rows[i]]})
    seen = []

    def loss_fn(batch):
        if crash_at is not None and len(seen) + 1 == crash_at:
            raise KeyboardInterrupt("crash")
        logits = model(batch["ids"])[0]
        seen.append(logits.dtype)
        return {"loss": flow.nn.functional.cross_entropy(logits.float(), batch["labels"])}
    if drop_scaler_state:
        path = os.path.join(out, "resume", training.STATE_NAME)
        state = json.load(open(path))
        del state["scaler"]
        json.dump(state, open(path, "w"))
    optimizer = training.make_optimizer(model, 1e-3)
    state = training.fit(model, epochs, loss_fn, optimizer, training.make_schedule(optimizer, FP16_STEPS),
                         training.Plan(total_steps=FP16_STEPS, log_every=1, save_every=1), training.Saving(out),
                         precision=training.MixedPrecision(True, "cuda", init_scale=FP16_INIT_SCALE), resume=resume,
                         run_info={"test": "fp16"})
    return model.numpy_state_dict(), state, seen


def test_fp16_autocast_runs_and_a_resumed_run_keeps_the_loss_scale(tmp_path):
    """Autocast was on (the logits came out in float16); the scaler backed off before the kill, and the
    resumed run goes on from that scale, ending with the uninterrupted run's weights. A resume that
    starts the scaler afresh skips steps again: another scale, other weights."""
    needs_cuda()
    whole, whole_state, seen = fp16_fit(str(tmp_path / "whole"))
    assert set(seen) == {flow.float16}, seen
    assert whole_state.scaler["scale"] < FP16_INIT_SCALE  # the backoff this test is about did happen
    for name in ("run", "forgot"):
        try:
            fp16_fit(str(tmp_path / name), crash_at=7)  # six steps done and saved
        except KeyboardInterrupt:
            pass
        else:
            raise AssertionError("the run was meant to crash")
    at_kill = json.load(open(tmp_path / "run" / "resume" / "state.json"))
    assert at_kill["step"] == 6 and at_kill["scaler"]["scale"] < FP16_INIT_SCALE
    resumed, resumed_state, _ = fp16_fit(str(tmp_path / "run"), resume=True)
    assert resumed_state.scaler["scale"] == whole_state.scaler["scale"]
    assert max_diff(whole, resumed) < 1e-6
    forgot, forgot_state, _ = fp16_fit(str(tmp_path / "forgot"), resume=True, drop_scaler_state=True)
    assert forgot_state.scaler["scale"] != whole_state.scaler["scale"] or max_diff(whole, forgot) > 1e-6


def test_resume_with_dropout_on_the_gpu_equals_an_uninterrupted_run(tmp_path):
    """Dropout on a GPU draws from the CUDA generator: resume/ must restore it as well as the CPU's.
    Equal up to what two uninterrupted GPU runs differ by: fine-tuning trains through PyTorch's fused
    attention, whose backward on CUDA (memory-efficient kernel, float mask) adds with atomics, in no
    fixed order (docs/gpu.md). Dropout masks drawn afresh would differ by far more."""
    model = assets()["dropout"]
    uninterrupted(tmp_path / "whole", ["--gpu"], model)
    uninterrupted(tmp_path / "again", ["--gpu"], model)
    killed_then_resumed(tmp_path / "run", 5, ["--gpu"], ["--gpu"], model)
    noise = max_diff(resume_weights(tmp_path / "whole"), resume_weights(tmp_path / "again"))
    assert max_diff(resume_weights(tmp_path / "whole"), resume_weights(tmp_path / "run")) <= max(10 * noise, 1e-5)


def test_a_run_killed_on_the_gpu_resumes_on_the_cpu(tmp_path):
    """resume/ written from CUDA tensors (weights, AdamW moments) continues on a CPU."""
    uninterrupted(tmp_path / "cpu", ["--no-gpu"])
    resumed = killed_then_resumed(tmp_path / "run", 5, ["--gpu"], ["--no-gpu"])
    assert "on cpu" in resumed.stdout
    assert max_diff(resume_weights(tmp_path / "cpu"), resume_weights(tmp_path / "run")) < 1e-4


def torchrun(nproc, *argv):
    port = str(29400 + os.getpid() % 500)
    return run_script(["-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port", port,
                       *argv, "--gpu"])


def test_task_distill_under_torchrun(tmp_path):
    """torchrun --nproc_per_node 1 gives the plain run's student (stage 1): the launcher's environment
    is read and the run's outputs are where a plain run puts them. A world of one makes no process
    group (backend.distributed): NCCL is the next test's."""
    plain = run_script(script_argv(tmp_path / "plain", "--intermediate_distill", model=assets()["student"],
                                   epochs=1, eval_step=3) + ["--gpu"])
    assert plain.returncode == 0, plain.stderr[-3000:]
    one = torchrun(1, *script_argv(tmp_path / "one", "--intermediate_distill",
                                                     model=assets()["student"], epochs=1, eval_step=3))
    assert one.returncode == 0, one.stderr[-3000:]
    assert "x 1 processes" in one.stdout
    assert max_diff(resume_weights(tmp_path / "plain"), resume_weights(tmp_path / "one")) < 1e-5


def test_two_processes_over_nccl_give_the_one_process_model(tmp_path):
    """Two processes with half the batch each, gradients averaged over NCCL, give the one-process
    student (fine-tuning, whose sentence-averaged loss splits exactly)."""
    gpus = flow.cuda.device_count() if HAVE_CUDA else 0
    if gpus < 2 and not ON_CPU:
        skip(f"needs two GPUs, this machine has {gpus}: NCCL is reached only with two processes")
    whole = uninterrupted(tmp_path / "whole", ["--gpu"])
    two = torchrun(2, *script_argv(tmp_path / "two", batch=8))
    assert two.returncode == 0, two.stderr[-3000:]
    assert "batch 8 x 2 processes" in two.stdout
    if HAVE_CUDA:
        assert "on cuda" in whole.stdout and "on cuda:0" in two.stdout
    assert max_diff(resume_weights(tmp_path / "whole"), resume_weights(tmp_path / "two")) < 1e-5


# ----------------------------------------------------------------------------------------------
# Without pytest: `python tests/test_gpu.py`
# ----------------------------------------------------------------------------------------------
def run_all(pattern=""):
    """Every test whose name contains `pattern`; prints PASS/SKIP/FAIL lines, returns the exit status."""
    import inspect
    import pathlib
    import time
    import traceback
    if not (HAVE_CUDA or ON_CPU):
        print("tests/test_gpu.py: no CUDA GPU; skipped (GPU_TESTS_ON_CPU=1 runs them on the CPU)")
        return 0
    failed = 0
    for name, test in [(n, f) for n, f in globals().items() if n.startswith("test_") and pattern in n]:
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            args = [pathlib.Path(tmp)] if inspect.signature(test).parameters else []
            try:
                test(*args)
                outcome = "PASS"
            except Skipped as e:
                outcome = f"SKIP ({e})"
            except Exception:  # noqa: BLE001  (report every test, then fail)
                outcome, failed = "FAIL", failed + 1
                traceback.print_exc()
        print(f"{outcome:5s} {name} ({time.perf_counter() - start:.1f} s)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run_all(*sys.argv[1:2]))
