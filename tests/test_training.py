"""training.py: resumable checkpoints give the same model as an uninterrupted run; guards and logs."""
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import backend
from conftest import ROOT, random_batch, tiny_config_dict


def _setup(name, seed=0, dropout=0.1):
    m = backend.import_for("modeling", name)
    t = backend.import_for("training", name)
    t.set_seed(seed)
    model = m.TinyBertForSequenceClassification(m.BertConfig.from_dict(tiny_config_dict(hidden_dropout_prob=dropout)),
                                                num_labels=2, fit_size=32)
    opt = t.make_optimizer(model, lr=1e-3, weight_decay=0.01)
    sched = t.make_schedule(opt, total_steps=6, warmup_proportion=0.5)
    return m, t, model, opt, sched


def _steps(name, model, opt, sched, batches):
    flow = backend.framework(name)
    model.train()
    for ids, types, mask, labels in batches:
        logits = model(*[flow.tensor(a, dtype=flow.int64) for a in (ids, types, mask)])[0]
        loss = flow.nn.functional.cross_entropy(logits, flow.tensor(labels, dtype=flow.int64))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()


# OneFlow 0.9's eager dropout kernels keep a random state of their own that cannot be saved or
# restored (set_rng_state does not reach it), so on OneFlow the resumed run is exact without dropout only.
@pytest.mark.parametrize("name,dropout", [("torch", 0.1), ("oneflow", 0.0)])
def test_resume_from_checkpoint_equals_uninterrupted_run(name, dropout, tmp_path):
    rng = np.random.default_rng(0)
    batches = [(*random_batch(rng, 120, batch=4, length=8), rng.integers(0, 2, size=4)) for _ in range(6)]
    _, _, model, opt, sched = _setup(name, dropout=dropout)
    _steps(name, model, opt, sched, batches)
    want = model.numpy_state_dict()

    _, t, model, opt, sched = _setup(name, dropout=dropout)
    _steps(name, model, opt, sched, batches[:3])
    t.save_checkpoint(str(tmp_path / "ckpt"), model, opt, sched, state={"step": 3})
    _steps(name, model, opt, sched, batches[3:4])  # work after the checkpoint, lost in the "crash"

    _, t, model, opt, sched = _setup(name, seed=123, dropout=dropout)  # as a new process: other RNG and weights
    state = t.load_checkpoint(str(tmp_path / "ckpt"), model, opt, sched)
    assert state == {"step": 3}
    assert sched.get_last_lr() == pytest.approx([1e-3, 1e-3])
    _steps(name, model, opt, sched, batches[3:])
    got = model.numpy_state_dict()
    assert max(float(np.abs(want[k] - got[k]).max()) for k in want) < 1e-6
    assert any(float(np.abs(want[k] - v).max()) > 1e-3 for k, v in _setup(name)[2].numpy_state_dict().items())


def test_schedule_warms_up_then_decays_to_zero():
    _, t, model, opt, _ = _setup("torch")
    sched = t.make_schedule(opt, total_steps=10, warmup_proportion=0.2)
    lrs = []
    for _ in range(10):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert lrs[:3] == pytest.approx([5e-4, 1e-3, 1e-3])
    assert lrs[-1] == pytest.approx(1e-3 / 8)
    assert t.make_schedule(opt, 10, kind="constant").get_last_lr()[0] == pytest.approx(1e-3)


def test_optimizer_groups_exclude_bias_and_layernorm_from_decay():
    _, _, model, opt, _ = _setup("torch")
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in opt.param_groups[0]["params"]}
    plain = {names[id(p)] for p in opt.param_groups[1]["params"]}
    assert "bert.encoder.layer.0.attention.self.query.weight" in decayed
    assert "bert.encoder.layer.0.attention.self.query.bias" in plain
    assert "bert.embeddings.LayerNorm.weight" in plain
    assert opt.param_groups[0]["weight_decay"] == 0.01 and opt.param_groups[1]["weight_decay"] == 0.0


def test_non_finite_loss_names_step_and_terms():
    t = backend.import_for("training", "torch")
    assert t.check_finite(3, {"att_loss": 1.5, "rep_loss": 2.0}) == {"att_loss": 1.5, "rep_loss": 2.0}
    with pytest.raises(t.NonFiniteLoss, match=r"step 7: att_loss=1\.5, rep_loss=nan"):
        t.check_finite(7, {"att_loss": 1.5, "rep_loss": float("nan")})


def test_output_dir_refused_unless_overwrite(tmp_path):
    t = backend.import_for("training", "torch")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.txt").write_text("x")
    with pytest.raises(FileExistsError, match="out is not empty: pass --overwrite"):
        t.prepare_output_dir(str(tmp_path / "out"))
    assert t.prepare_output_dir(str(tmp_path / "out"), overwrite=True) == str(tmp_path / "out")


def test_train_log_csv_and_plot_survive_resume(tmp_path):
    t = backend.import_for("training", "torch")
    log = t.TrainLog(str(tmp_path))
    log.append(step=1, att_loss=2.5)
    log.append(step=2, att_loss=1.25, dev_acc=0.5)
    again = t.TrainLog(str(tmp_path))
    assert again.rows == [{"step": 1, "att_loss": 2.5, "dev_acc": None}, {"step": 2, "att_loss": 1.25, "dev_acc": 0.5}]
    again.truncate_after(1)
    again.append(step=2, att_loss=1.0)
    text = open(tmp_path / "train_log.csv").read().splitlines()
    assert text == ["step,att_loss,dev_acc", "1,2.5,", "2,1,"]
    png = again.plot()
    assert png.endswith("curves.png") and os.path.getsize(png) > 1000


def test_curves_show_what_tells_something_in_a_grid(tmp_path):
    t = backend.import_for("training", "torch")
    finetune = t.TrainLog(str(tmp_path / "a"))
    finetune.rows = [{"step": 1, "epoch": 0.1, "lr": 1e-4, "train_seconds": 3.0, "cls_loss": 0.7, "loss": 0.7,
                      "examples_per_s": 90.0, "dev_acc": 0.8}]
    assert finetune.panels() == ["lr", "cls_loss", "dev_acc"]  # loss is cls_loss again; time and speed rise flat
    stage1 = t.TrainLog(str(tmp_path / "b"))
    stage1.rows = [{"step": 1, "lr": 5e-5, "att_loss": 2.0, "rep_loss": 1.0, "loss": 3.0, "dev_att_loss": 2.1,
                    "dev_rep_loss": 1.1, "dev_loss": 3.2}]
    assert stage1.panels() == ["lr", "att_loss", "rep_loss", "loss", "dev_att_loss", "dev_rep_loss", "dev_loss"]
    png = stage1.plot()
    import matplotlib.image
    height, width = matplotlib.image.imread(png).shape[:2]
    assert width > height  # 3 columns of panels, not one tall column


def test_train_log_rows_reach_tensorboard_and_a_resume_replaces_the_steps_it_repeats(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    t = backend.import_for("training", "torch")
    log = t.TrainLog(str(tmp_path))
    log.append(step=1, epoch=0.5, att_loss=2.5)
    log.append(step=2, epoch=1.0, att_loss=1.25, dev_acc=0.5)
    again = t.TrainLog(str(tmp_path))  # a resumed run at step 1 repeats step 2
    again.truncate_after(1)
    again.append(step=2, epoch=1.0, att_loss=1.0, dev_acc=0.75)
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert sorted(events.Tags()["scalars"]) == ["dev/acc", "train/att_loss"]  # step and epoch are axes
    assert [(e.step, e.value) for e in events.Scalars("train/att_loss")] == [(1, 2.5), (2, 1.0)]
    assert [(e.step, e.value) for e in events.Scalars("dev/acc")] == [(2, 0.75)]


def test_curves_are_redrawn_at_most_every_plot_every_s_and_at_the_end(tmp_path):
    t = backend.import_for("training", "torch")
    log = t.TrainLog(str(tmp_path))
    png = tmp_path / "curves.png"
    log.append(step=1, loss=2.0)
    assert log.refresh_plot() == str(png)  # the first drawing is always due
    first = png.read_bytes()
    log.append(step=2, loss=1.0)
    assert log.refresh_plot() is None and png.read_bytes() == first  # seconds later: not due
    assert log.refresh_plot(final=True) == str(png) and png.read_bytes() != first  # the end: drawn
    last = png.read_bytes()
    log.append(step=3, loss=0.5)
    log.PLOT_EVERY_S = 0.0  # as if the interval had passed
    assert log.refresh_plot() == str(png) and png.read_bytes() != last
    _, state, _ = _fit_run(tmp_path, "run", steps=4)  # saves at every step, a fraction of a second apart
    assert state.step == 4
    rows = list(csv.DictReader(open(tmp_path / "run" / "train_log.csv")))
    assert len(rows) == 4 and os.path.getsize(tmp_path / "run" / "curves.png") > 1000
    # drawn at the last step, after its log row: not left as the step-1 drawing
    assert os.stat(tmp_path / "run" / "curves.png").st_mtime_ns > os.stat(tmp_path / "run" / "train_log.csv").st_mtime_ns


def test_atomic_save_keeps_previous_checkpoint_on_crash(tmp_path, monkeypatch):
    m, t, model, opt, sched = _setup("torch")
    target = str(tmp_path / "best")
    t.save_checkpoint(target, model, state={"step": 1})
    before = open(os.path.join(target, "model.safetensors"), "rb").read()

    def crash(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(model.__class__, "save_pretrained", lambda self, d, vocab_file=None, exclude=(): crash())
    with pytest.raises(OSError, match="disk full"):
        t.save_checkpoint(target, model, state={"step": 2})
    assert open(os.path.join(target, "model.safetensors"), "rb").read() == before
    assert t.load_checkpoint(target, model) == {"step": 1}
    assert sorted(os.listdir(tmp_path)) == ["best"]


def test_saving_into_a_run_directory_keeps_its_other_files(tmp_path):
    _, t, model, _, _ = _setup("torch")
    run = tmp_path / "run"
    run.mkdir()
    (run / "train_log.csv").write_text("step\n1\n")
    (run / "resume").mkdir()
    (run / "resume" / "state.json").write_text("{}")
    t.save_checkpoint(str(run), model, state={"step": 5}, exclude=("fit_dense.",))
    assert (run / "train_log.csv").read_text() == "step\n1\n"
    assert (run / "resume" / "state.json").read_text() == "{}"
    assert t.load_checkpoint(str(run), model) == {"step": 5}
    import checkpoint
    saved = checkpoint.load_state_dict(str(run))
    assert "classifier.weight" in saved and not any(k.startswith("fit_dense.") for k in saved)
    assert sorted(os.listdir(tmp_path)) == ["run"]


# -- fit(): the one loop every stage trains with ---------------------------------------------------
def _fit_run(tmp_path, name, *, batch=8, grad_accum=1, steps=4, crash_at=None, resume=False, run_info=None,
             eval_metrics=None, dropout=0.0, estimate_after=20):
    """A tiny classifier fitted on 32 fixed random examples through training.fit."""
    m, t, model, opt, _ = _setup("torch", dropout=dropout)
    torch = backend.framework("torch")
    rng = np.random.default_rng(1)
    ids, types, mask = random_batch(rng, 120, batch=32, length=8)
    labels = rng.integers(0, 2, size=32)
    tensors = [torch.tensor(a) for a in (ids, types, mask, labels)]

    def epochs(e):
        order = np.random.default_rng([7, e]).permutation(32)
        rows = [order[i:i + batch] for i in range(0, 32, batch)]
        return t.Epoch(len(rows), lambda i: {k: v[rows[i]] for k, v in zip(("ids", "types", "mask", "labels"),
                                                                             tensors)})
    calls = []

    def loss_fn(b):
        calls.append(len(b["ids"]))
        if crash_at is not None and len(calls) == crash_at:
            raise KeyboardInterrupt("crash")
        logits = model(b["ids"], b["types"], b["mask"])[0]
        return {"loss": torch.nn.functional.cross_entropy(logits, b["labels"])}
    scores = iter(eval_metrics or [])
    eval_fn = (lambda: {"acc": next(scores)}) if eval_metrics else None
    sched = t.make_schedule(opt, steps, warmup_proportion=0.25)
    plan = t.Plan(total_steps=steps, eval_every=1 if eval_metrics else 0, log_every=1, save_every=1,
                  grad_accum=grad_accum, estimate_after=estimate_after)
    evaluation = t.Evaluation(eval_fn, best_metric="acc") if eval_metrics else None
    state = t.fit(model, epochs, loss_fn, opt, sched, plan, t.Saving(str(tmp_path / name)),
                  precision=t.MixedPrecision(False, "cpu"), evaluation=evaluation, resume=resume,
                  run_info=run_info or {"mode": "test"})
    return model.numpy_state_dict(), state, calls


def _max_diff(a, b):
    return max(float(np.abs(a[k] - b[k]).max()) for k in a)


def test_fit_accumulated_micro_batches_equal_one_large_batch(tmp_path):
    whole, state, calls = _fit_run(tmp_path, "a", batch=8, steps=6)
    assert state.step == 6 and calls == [8] * 6
    halves, state, calls = _fit_run(tmp_path, "b", batch=4, grad_accum=2, steps=6)
    assert state.step == 6 and calls == [4] * 12
    assert _max_diff(whole, halves) < 1e-6
    single, _, _ = _fit_run(tmp_path, "c", batch=4, steps=6)  # without accumulation: another path
    assert _max_diff(whole, single) > 1e-4


def test_fit_resumes_at_the_exact_batch_after_a_crash(tmp_path):
    whole, _, _ = _fit_run(tmp_path, "whole", batch=8, steps=6, dropout=0.1)
    crashed = tmp_path / "crashed"
    with pytest.raises(KeyboardInterrupt, match=rf"^at step 5 of 6 \({crashed}/resume holds step 5\); "
                                                r"continue with: \S*python\S* .*--resume$"):
        _fit_run(tmp_path, "crashed", batch=8, steps=6, crash_at=6, dropout=0.1)  # mid epoch 2, batch 2
    assert json.load(open(crashed / "run.json"))["finished"] is False
    resumed, state, calls = _fit_run(tmp_path, "crashed", batch=8, steps=6, resume=True, dropout=0.1)
    assert calls == [8]  # only the step that crashed is redone
    assert state.step == 6 and _max_diff(whole, resumed) < 1e-6
    rows = list(csv.DictReader(open(tmp_path / "crashed" / "train_log.csv")))
    assert [r["step"] for r in rows] == ["1", "2", "3", "4", "5", "6"]
    want = list(csv.DictReader(open(tmp_path / "whole" / "train_log.csv")))
    assert [r["loss"] for r in rows] == [r["loss"] for r in want]
    with pytest.raises(ValueError, match=r"crashed holds a run made otherwise \(mode 'test' -> 'other'\): .*--overwrite"):
        _fit_run(tmp_path, "crashed", resume=True, run_info={"mode": "other"})
    # resumed once more, the finished run says so and trains nothing
    again, state, calls = _fit_run(tmp_path, "crashed", batch=8, steps=6, resume=True, dropout=0.1)
    assert calls == [] and state.step == 6 and state.finished_before
    assert json.load(open(crashed / "run.json"))["finished"] is True
    # a longer run of the same settings (general distillation's --max_steps raised) continues it
    _, state, calls = _fit_run(tmp_path, "crashed", batch=8, steps=7, resume=True, dropout=0.1)
    assert calls == [8] and state.step == 7 and not state.finished_before


# state.json as earlier versions wrote it: json.dumps of the dict they kept the run state in, the first
# of them (training.fit's first version) without pause_seconds
OLD_STATE_KEYS = ["step", "epoch", "batch", "train_seconds", "pause_seconds", "examples", "best", "interval", "run"]


@pytest.mark.parametrize("form", ["with pause_seconds", "first"])
def test_a_resume_state_written_as_the_old_dict_still_resumes(tmp_path, form):
    whole, _, _ = _fit_run(tmp_path, "whole", batch=8, steps=6, dropout=0.1)
    with pytest.raises(KeyboardInterrupt):
        _fit_run(tmp_path, "old", batch=8, steps=6, crash_at=6, dropout=0.1)  # step 5 saved: epoch 1, batch 1
    path = tmp_path / "old" / "resume" / "state.json"
    assert list(json.load(open(path))) == OLD_STATE_KEYS  # this version writes the same object
    old = {"step": 5, "epoch": 1, "batch": 1, "train_seconds": 0.5, "pause_seconds": 0.25, "examples": 40,
           "best": None, "interval": {"steps": 0}, "run": {"mode": "test"}}
    if form == "first":
        del old["pause_seconds"]
    path.write_text(json.dumps(old, indent=2) + "\n")
    resumed, state, calls = _fit_run(tmp_path, "old", batch=8, steps=6, resume=True, dropout=0.1)
    assert calls == [8] and state.step == 6 and state.epoch == 1 and state.batch == 2 and state.examples == 48
    assert _max_diff(whole, resumed) < 1e-6
    assert list(json.load(open(path))) == OLD_STATE_KEYS


def test_run_state_reads_and_writes_the_old_dict():
    t = backend.import_for("training", "torch")
    old = {"step": 3, "epoch": 0, "batch": 3, "train_seconds": 1.5, "pause_seconds": 0.5, "examples": 24,
           "best": 0.75, "interval": {"steps": 1, "loss": 0.5}, "run": {"mode": "test"}}
    assert t.RunState.from_dict(old).to_dict() == old
    fp16 = dict(old, scaler={"scale": 1024.0})
    assert t.RunState.from_dict(fp16).scaler == {"scale": 1024.0} and t.RunState.from_dict(fp16).to_dict() == fp16
    first = {k: v for k, v in old.items() if k != "pause_seconds"}
    assert t.RunState.from_dict(first).pause_seconds == 0.0
    # the kept model's state.json adds its metrics; a newer version's key is left out, not refused
    assert t.RunState.from_dict(dict(old, metrics={"acc": 0.75}, newer=1)).to_dict() == old
    assert "finished_before" not in t.RunState(step=2, finished_before=True).to_dict()


def test_fit_fresh_run_forgets_the_old_one(tmp_path):
    _fit_run(tmp_path, "out", steps=4)
    assert os.path.isdir(tmp_path / "out" / "resume")
    with pytest.raises(KeyboardInterrupt):
        _fit_run(tmp_path, "out", steps=4, crash_at=2)  # a fresh run (no --resume) that dies at step 2
    assert json.load(open(tmp_path / "out" / "resume" / "state.json"))["step"] == 1  # not the old run's step 4
    rows = open(tmp_path / "out" / "train_log.csv").read().splitlines()
    assert len(rows) == 2  # header + step 1 of the new run, not the old run's 4 rows before it


def test_fit_keeps_the_best_model_and_the_last_resume_state(tmp_path):
    _, state, _ = _fit_run(tmp_path, "best", steps=4, eval_metrics=[0.5, 0.9, 0.7, 0.8])
    assert state.best == 0.9
    kept = json.load(open(tmp_path / "best" / "state.json"))
    assert kept["step"] == 2 and kept["metrics"] == {"acc": 0.9}
    assert json.load(open(tmp_path / "best" / "resume" / "state.json"))["step"] == 4
    rows = list(csv.DictReader(open(tmp_path / "best" / "train_log.csv")))
    assert [float(r["dev_acc"]) for r in rows] == [0.5, 0.9, 0.7, 0.8]


class _FakeGpuGenerator:
    """Stands in for backend.cuda_rng on this CPU-only machine: a GPU generator whose state is bytes."""

    def __init__(self, state):
        self.state, self.restored = np.array(state, dtype=np.uint8), []

    def __call__(self, flow):
        return (lambda: self.state.copy()), self.restored.append


def test_gpu_generator_state_is_saved_restored_and_optional(monkeypatch, tmp_path):
    """resume/rng.npz holds the GPU generator's state where there is a GPU (dropout there draws from it),
    restores it on resume; a checkpoint from a CPU machine resumes on a GPU and one from a GPU on a CPU."""
    _, t, model, opt, sched = _setup("torch")
    gpu = _FakeGpuGenerator([7, 1, 255, 0, 42])
    monkeypatch.setattr(backend, "cuda_rng", gpu)
    t.save_checkpoint(str(tmp_path / "gpu"), model, opt, sched, state={"step": 1})
    assert np.array_equal(np.load(str(tmp_path / "gpu" / "rng.npz"))["framework_cuda"], gpu.state)
    gpu.state = np.zeros(5, dtype=np.uint8)  # the generator moved on after the checkpoint
    assert t.load_checkpoint(str(tmp_path / "gpu"), model, opt, sched) == {"step": 1}
    assert [r.tolist() for r in gpu.restored] == [[7, 1, 255, 0, 42]]

    monkeypatch.setattr(backend, "cuda_rng", lambda flow: None)  # the same checkpoint on a CPU machine
    assert t.load_checkpoint(str(tmp_path / "gpu"), model, opt, sched) == {"step": 1}
    t.save_checkpoint(str(tmp_path / "cpu"), model, opt, sched, state={"step": 2})
    assert "framework_cuda" not in np.load(str(tmp_path / "cpu" / "rng.npz")).files
    monkeypatch.setattr(backend, "cuda_rng", gpu)  # a CPU machine's checkpoint resumed on a GPU
    assert t.load_checkpoint(str(tmp_path / "cpu"), model, opt, sched) == {"step": 2}
    assert len(gpu.restored) == 1  # nothing to restore: the GPU generator stays as it is


def test_the_run_states_its_cost_once_after_timing_a_few_steps(tmp_path, capsys):
    t = backend.import_for("training", "torch")
    _fit_run(tmp_path, "run", steps=8, estimate_after=3)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("estimate:")]
    # timing starts after step 1 (warm-up), so the estimate comes after step 4 with 4 steps left
    assert len(lines) == 1 and lines[0].startswith("estimate: 4 more steps at ") and "8 steps in all" in lines[0]
    assert [t._duration(s) for s in (7, 95, 3725)] == ["7 s", "1 min 35 s", "1 h 02 min"]


def test_writing_tensorboard_events_imports_no_tensorflow(tmp_path):
    code = ("import sys, training; log = training.TrainLog(sys.argv[1]); log.append(step=1, loss=0.5); "
            "print(sorted(m for m in ('tensorflow', 'torch', 'oneflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                         env=dict(os.environ, BACKEND="torch"), check=True).stdout
    assert out.strip().splitlines()[-1] == "['torch']"
    assert len(os.listdir(tmp_path / "tensorboard")) == 1
