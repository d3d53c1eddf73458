"""What every training stage shares: seeding, AdamW with BERT's weight-decay rule, schedules,
resumable checkpoints, a non-finite-loss guard, and the train_log.csv / curves.png a person reads.

Backend-neutral like modeling.py. A resumable checkpoint is one directory, written all-or-nothing
(checkpoint.atomic_dir): the model as a model directory (config.json, vocab.txt, model.safetensors),
plus `optimizer`, `scheduler` (framework save, read back without running code), `state.json` (step, epoch,
position in the epoch, best metric) and `rng.npz` (Python, numpy and framework generators, no pickle).
"""
import contextlib
import csv
import json
import math
import os
import random

import numpy as np

import backend
import checkpoint

flow = backend.framework()

NO_DECAY = ("bias", "LayerNorm.weight")
STATE_NAME = "state.json"


def set_seed(seed):
    random.seed(seed)
    np.random.seed(seed)
    flow.manual_seed(seed)


def make_optimizer(model, lr, weight_decay=0.01, eps=1e-6):
    """AdamW; like BERT, no weight decay on biases and LayerNorm weights."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if name.endswith(NO_DECAY) else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return flow.optim.AdamW(groups, lr=lr, eps=eps)


def make_schedule(optimizer, total_steps, warmup_proportion=0.1, kind="linear"):
    """'linear': warm up over warmup_proportion of the steps, then decay to 0; 'constant': no schedule."""
    warmup = int(total_steps * warmup_proportion)

    def factor(step):
        if kind == "constant":
            return 1.0
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))
    return flow.optim.lr_scheduler.LambdaLR(optimizer, factor)


class MixedPrecision:
    """fp16 autocast with a gradient scaler on CUDA (--fp16); plain fp32 steps otherwise.
    Gradients are clipped to norm 1, as BERT's optimizer did."""

    def __init__(self, enabled, device, max_grad_norm=1.0):
        if enabled and not str(device).startswith("cuda"):
            raise ValueError("--fp16 needs a CUDA GPU; on a CPU train in fp32 (and see --teacher_dtype bf16)")
        self.enabled, self.device, self.max_grad_norm = enabled, str(device), max_grad_norm
        self.scaler = flow.amp.GradScaler() if enabled else None

    def autocast(self):
        if not self.enabled:
            return contextlib.nullcontext()
        return flow.autocast("cuda", dtype=flow.float16)

    def backward_and_step(self, loss, model, optimizer):
        if not self.enabled:
            loss.backward()
            flow.nn.utils.clip_grad_norm_(model.parameters(), self.max_grad_norm)
            optimizer.step()
            return
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(optimizer)
        flow.nn.utils.clip_grad_norm_(model.parameters(), self.max_grad_norm)
        self.scaler.step(optimizer)
        self.scaler.update()


class NonFiniteLoss(RuntimeError):
    pass


def check_finite(step, terms):
    """Stop on a NaN/inf loss, naming the step and every loss term (the last good checkpoint stays)."""
    values = {k: float(v.detach()) if hasattr(v, "detach") else float(v) for k, v in terms.items()}
    if not all(math.isfinite(v) for v in values.values()):
        shown = ", ".join(f"{k}={v:.6g}" for k, v in values.items())
        raise NonFiniteLoss(f"non-finite loss at step {step}: {shown}; training stopped, "
                            "the last checkpoint written is intact")
    return values


# ----------------------------------------------------------------------------------------------
# Resumable checkpoints
# ----------------------------------------------------------------------------------------------
def rng_state():
    """Python's, numpy's legacy and the framework's generator states, as plain numpy arrays (stored
    without pickle: a copied run directory must not be able to run code on --resume)."""
    version, python_mt, gauss = random.getstate()
    kind, numpy_mt, pos, has_gauss, cached = np.random.get_state()
    assert kind == "MT19937", kind  # the legacy RandomState has no other generator
    return {"python_version": np.array(version), "python_mt": np.array(python_mt, dtype=np.uint32),
            "python_gauss": np.array([] if gauss is None else [gauss], dtype=np.float64),
            "numpy_mt": np.asarray(numpy_mt, dtype=np.uint32), "numpy_pos": np.array(pos),
            "numpy_has_gauss": np.array(has_gauss), "numpy_gauss": np.array(cached, dtype=np.float64),
            "framework": flow.get_rng_state().numpy()}


def set_rng_state(state):
    gauss = state["python_gauss"]
    random.setstate((int(state["python_version"]), tuple(int(x) for x in state["python_mt"]),
                     float(gauss[0]) if gauss.size else None))
    np.random.set_state(("MT19937", state["numpy_mt"], int(state["numpy_pos"]), int(state["numpy_has_gauss"]),
                         float(state["numpy_gauss"])))
    flow.set_rng_state(flow.from_numpy(np.array(state["framework"])))


def save_checkpoint(directory, model, optimizer=None, scheduler=None, state=None, vocab_file=None, exclude=()):
    """Everything needed to continue training, or (optimizer=None) only what inference needs."""
    with checkpoint.atomic_dir(directory) as tmp:
        model.save_pretrained(tmp, vocab_file=vocab_file, exclude=exclude)
        if optimizer is not None:
            flow.save(optimizer.state_dict(), os.path.join(tmp, "optimizer"))
            flow.save(scheduler.state_dict(), os.path.join(tmp, "scheduler"))
            checkpoint.save_arrays(os.path.join(tmp, "rng.npz"), rng_state())
        checkpoint.write_text_atomic(os.path.join(tmp, STATE_NAME), json.dumps(state or {}, indent=2) + "\n")


def load_checkpoint(directory, model, optimizer=None, scheduler=None):
    """Restore model (and optimizer, scheduler, RNG) from save_checkpoint's directory; returns its state.
    Every file is read, without running code from any of them, before anything is restored."""
    weights = checkpoint.load_state_dict(directory)
    if optimizer is not None:
        optimizer_state = checkpoint.read_framework_save(os.path.join(directory, "optimizer"), flow)
        scheduler_state = checkpoint.read_framework_save(os.path.join(directory, "scheduler"), flow)
        rng_path = os.path.join(directory, "rng.npz")
        if not os.path.isfile(rng_path) and os.path.isfile(os.path.join(directory, "rng.pkl")):
            raise checkpoint.CheckpointError(
                f"{os.path.join(directory, 'rng.pkl')}: random state saved as a pickle by an older version; "
                "it is not loaded, since unpickling can run code: start this run afresh (without --resume)")
        rng = checkpoint.load_arrays(rng_path)
        missing = sorted(set(rng_state()) - set(rng))
        if missing:
            raise checkpoint.CheckpointError(f"{rng_path}: no {', '.join(missing)}")
    model.load_numpy_state_dict(weights, source=directory)
    if optimizer is not None:
        optimizer.load_state_dict(optimizer_state)
        scheduler.load_state_dict(scheduler_state)
        set_rng_state(rng)
    with open(os.path.join(directory, STATE_NAME)) as f:
        return json.load(f)


def prepare_output_dir(directory, overwrite=False, resume=False):
    """Refuse a non-empty output directory unless the user said --overwrite (or is resuming into it)."""
    if os.path.isdir(directory) and os.listdir(directory) and not (overwrite or resume):
        raise FileExistsError(f"output directory {directory} is not empty: pass --overwrite to replace "
                              "its contents, or --resume to continue the run it holds")
    os.makedirs(directory, exist_ok=True)
    return directory


# ----------------------------------------------------------------------------------------------
# What a person reads
# ----------------------------------------------------------------------------------------------
class TrainLog:
    """Rows of loss terms and metrics, appended to `train_log.csv`, plotted to `curves.png`."""

    def __init__(self, directory, name="train_log.csv"):
        self.path = os.path.join(directory, name)
        self.rows = []
        if os.path.isfile(self.path):  # a resumed run continues its log
            with open(self.path, newline="") as f:
                self.rows = [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(f)]

    def append(self, **row):
        self.rows.append(row)
        columns = []
        for r in self.rows:
            columns += [k for k in r if k not in columns]
        lines = [",".join(columns)] + [",".join(_fmt(r.get(c)) for c in columns) for r in self.rows]
        checkpoint.write_text_atomic(self.path, "\n".join(lines) + "\n")

    def truncate_after(self, step):
        """Drop rows past `step` (a resumed run repeats them)."""
        self.rows = [r for r in self.rows if r.get("step", 0) <= step]

    def plot(self, path=None, x="step"):
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        path = path or os.path.join(os.path.dirname(self.path), "curves.png")
        columns = [c for r in self.rows for c in r if c not in (x, "epoch")]
        columns = list(dict.fromkeys(columns))
        if not columns:
            return None
        fig, axes = plt.subplots(len(columns), 1, figsize=(7, 2.2 * len(columns)), sharex=True, squeeze=False)
        for ax, col in zip(axes[:, 0], columns):
            pts = [(r[x], r[col]) for r in self.rows if isinstance(r.get(col), (int, float)) and x in r]
            if pts:
                ax.plot(*zip(*pts), marker="." if len(pts) < 50 else None)
            ax.set_ylabel(col, fontsize=8)
            ax.grid(alpha=0.3)
        axes[-1, 0].set_xlabel(x)
        fig.tight_layout()
        tmp = path + ".tmp.png"
        fig.savefig(tmp, dpi=90)
        plt.close(fig)
        os.replace(tmp, path)
        return path


def _fmt(v):
    if v is None:
        return ""
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def _number(text):
    if text == "":
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text
