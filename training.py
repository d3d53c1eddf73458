"""What every training stage shares: seeding, AdamW with BERT's weight-decay rule, schedules,
resumable checkpoints, a non-finite-loss guard, and the train_log.csv / curves.png a person reads.

Backend-neutral like modeling.py. A resumable checkpoint is one directory, written all-or-nothing
(files.atomic_dir): the model as a model directory (config.json, vocab.txt, model.safetensors),
plus `optimizer`, `scheduler` (framework save, read back without running code), `state.json` (step, epoch,
position in the epoch, best metric) and `rng.npz` (Python, numpy and framework generators, no pickle).
"""
import contextlib
import csv
import json
import math
import os
import random
import shlex
import shutil
import socket
import sys
import time
from dataclasses import dataclass, field, fields
from typing import Callable, Optional

import numpy as np
from tqdm import tqdm

import backend
import checkpoint
import files

flow = backend.framework()

NO_DECAY = ("bias", "LayerNorm.weight")
STATE_NAME = "state.json"
RUN_NAME = "run.json"  # in the output directory: what the run was made from, and whether it finished
CONTINUE_ENV = "TINYBERT_CONTINUE_WITH"  # a wrapper's own command to continue (scripts_common.sh)


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
    """fp16 autocast with a gradient scaler on CUDA (--fp16, PyTorch only); plain fp32 steps otherwise.
    Gradients are clipped to `max_grad_norm` (1.0, as BERT's optimizer did) before each update.
    `init_scale`: the loss scale the scaler starts from (PyTorch's default)."""

    def __init__(self, enabled, device, max_grad_norm=1.0, init_scale=2.0 ** 16):
        if enabled and flow.__name__ == "oneflow":
            # OneFlow 0.9's eager amp.GradScaler holds only the settings an nn.Graph reads: it has no
            # scale, unscale_, step, update or state_dict, so the first backward would fail.
            raise ValueError("--fp16 is not supported on --backend oneflow (OneFlow 0.9's GradScaler works only "
                             "in nn.Graph): use --backend torch for --fp16, or train in fp32")
        if enabled and not str(device).startswith("cuda"):
            raise ValueError("--fp16 needs a CUDA GPU; on a CPU train in fp32 (and see --teacher_dtype bf16)")
        self.enabled, self.device, self.max_grad_norm = enabled, str(device), max_grad_norm
        self.scaler = flow.amp.GradScaler("cuda", init_scale=init_scale) if enabled else None

    def autocast(self):
        if not self.enabled:
            return contextlib.nullcontext()
        return flow.autocast("cuda", dtype=flow.float16)

    def backward(self, loss):
        (self.scaler.scale(loss) if self.enabled else loss).backward()

    def step(self, model, optimizer):
        """Clip the accumulated gradients, update, and clear them."""
        if self.enabled:
            self.scaler.unscale_(optimizer)
        flow.nn.utils.clip_grad_norm_(model.parameters(), self.max_grad_norm)
        if self.enabled:
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad()


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
# Saved only where this process uses a GPU (backend.cuda_rng); a run saved without it (on a CPU) resumes
# on a GPU with that generator as it is, and one saved with it resumes on a CPU without it.
CUDA_RNG = "framework_cuda"


def rng_state():
    """Python's, numpy's legacy and the framework's generator states (the current GPU's too, where
    there is one), as plain numpy arrays (stored without pickle: a copied run directory must not be
    able to run code on --resume)."""
    version, python_mt, gauss = random.getstate()
    kind, numpy_mt, pos, has_gauss, cached = np.random.get_state()
    assert kind == "MT19937", kind  # the legacy RandomState has no other generator
    state = {"python_version": np.array(version), "python_mt": np.array(python_mt, dtype=np.uint32),
             "python_gauss": np.array([] if gauss is None else [gauss], dtype=np.float64),
             "numpy_mt": np.asarray(numpy_mt, dtype=np.uint32), "numpy_pos": np.array(pos),
             "numpy_has_gauss": np.array(has_gauss), "numpy_gauss": np.array(cached, dtype=np.float64),
             "framework": flow.get_rng_state().numpy()}
    cuda = backend.cuda_rng(flow)
    if cuda is not None:
        state[CUDA_RNG] = cuda[0]()
    return state


def set_rng_state(state):
    gauss = state["python_gauss"]
    random.setstate((int(state["python_version"]), tuple(int(x) for x in state["python_mt"]),
                     float(gauss[0]) if gauss.size else None))
    np.random.set_state(("MT19937", state["numpy_mt"], int(state["numpy_pos"]), int(state["numpy_has_gauss"]),
                         float(state["numpy_gauss"])))
    flow.set_rng_state(flow.from_numpy(np.array(state["framework"])))
    cuda = backend.cuda_rng(flow)
    if cuda is not None and CUDA_RNG in state:
        cuda[1](state[CUDA_RNG])


def save_checkpoint(directory, model, optimizer=None, scheduler=None, state=None, vocab_file=None, exclude=(),
                    rng_states=None):
    """Everything needed to continue training, or (optimizer=None) only what inference needs.
    `rng_states`: every rank's rng_state() in a data-parallel job (default: this process's)."""
    with files.atomic_dir(directory) as tmp:
        model.save_pretrained(tmp, vocab_file=vocab_file, exclude=exclude)
        if optimizer is not None:
            flow.save(optimizer.state_dict(), os.path.join(tmp, "optimizer"))
            flow.save(scheduler.state_dict(), os.path.join(tmp, "scheduler"))
            arrays = {}
            for rank, rng in enumerate(rng_states or [rng_state()]):
                arrays.update({_rank_key(rank, k): v for k, v in rng.items()})
            checkpoint.save_arrays(os.path.join(tmp, "rng.npz"), arrays)
        files.write_text_atomic(os.path.join(tmp, STATE_NAME), json.dumps(state or {}, indent=2) + "\n")


def _rank_key(rank, key):
    return key if rank == 0 else f"rank{rank}.{key}"


def load_checkpoint(directory, model, optimizer=None, scheduler=None, rank=0):
    """Restore model (and optimizer, scheduler, this rank's RNG) from save_checkpoint's directory;
    returns its state. Every file is read, without running code from any of them, before anything
    is restored."""
    weights = checkpoint.load_state_dict(directory)
    if optimizer is not None:
        optimizer_state = checkpoint.read_framework_save(os.path.join(directory, "optimizer"), flow)
        scheduler_state = checkpoint.read_framework_save(os.path.join(directory, "scheduler"), flow)
        rng_path = os.path.join(directory, "rng.npz")
        if not os.path.isfile(rng_path) and os.path.isfile(os.path.join(directory, "rng.pkl")):
            raise checkpoint.CheckpointError(
                f"{os.path.join(directory, 'rng.pkl')}: random state saved as a pickle by an older version; "
                "it is not loaded, since unpickling can run code: start this run afresh (without --resume)")
        saved = checkpoint.load_arrays(rng_path)
        rng = {k: saved[_rank_key(rank, k)] for k in rng_state() if _rank_key(rank, k) in saved}
        missing = sorted(_rank_key(rank, k) for k in set(rng_state()) - set(rng) - {CUDA_RNG})
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
                              "its contents, or --resume to continue the run it holds (the run_*.sh wrappers: "
                              "OVERWRITE=yes, or RESUME=yes)")
    os.makedirs(directory, exist_ok=True)
    return directory


# ----------------------------------------------------------------------------------------------
# The training loop every stage runs
# ----------------------------------------------------------------------------------------------
RESUME_DIR = "resume"


class Epoch:
    """One epoch's micro-batches: `len()` of them, each made on demand by `make(i)`, so that a resumed
    run skips to its batch without reading or padding the ones before."""

    def __init__(self, count, make):
        self.count, self.make = count, make

    def __len__(self):
        return self.count


@dataclass
class Plan:
    """How long a run is and how often it stops to look (in optimizer steps; 0: never in between).

    A step updates the weights once from `grad_accum` micro-batches; the learning-rate schedule counts
    steps. Evaluations, train_log rows and resume checkpoints also happen at the last step.
    """
    total_steps: int
    eval_every: int = 0
    log_every: int = 0      # 0: a row at each evaluation
    save_every: int = 0     # 0: a resume checkpoint at each evaluation
    grad_accum: int = 1
    estimate_after: int = 20  # steps timed (past the first, which warms up) before the run's cost is printed

    def __post_init__(self):
        if self.total_steps < 1:
            raise ValueError(f"nothing to train: {self.total_steps} steps (no training data, or 0 epochs?)")
        if self.grad_accum < 1:
            raise ValueError(f"--gradient_accumulation_steps must be at least 1, got {self.grad_accum}")

    def at(self, every, step):
        return step == self.total_steps or (every > 0 and step % every == 0)


@dataclass
class Saving:
    """What fit() writes into `out_dir`, and what it keeps there at the end.

    `vocab_file` is copied beside every model saved; `exclude`: name prefixes of parameters left out of
    the kept model (not of the resume state, which must continue training them); `keep_resume`: whether
    `out_dir/resume` stays once the run has finished (it is what a longer run continues from).
    """
    out_dir: str
    vocab_file: Optional[str] = None
    exclude: tuple = ()
    keep_resume: bool = True


@dataclass
class Evaluation:
    """How fit() scores the model at each evaluation, and which score picks the model kept.

    fn() -> {metric: value}. With `best_metric`, the model kept in out_dir is the one that scored
    highest on it; without, the latest.
    """
    fn: Callable[[], dict]
    best_metric: Optional[str] = None


@dataclass
class RunState:
    """Where a run stands: what state.json holds (to_dict/from_dict) and what fit() returns.

    `batch` is the next micro-batch of `epoch`; `interval` sums the loss terms over the steps since the
    last log row (`steps` counts them); `train_seconds` is the run's wall time across resumes and
    `pause_seconds` the part of it spent evaluating and saving, left out of the examples/s figure;
    `run` is the fit's run_info, which a resume must match; `scaler` the fp16 loss scaler's state.
    `finished_before` is never saved: it says that fit() found this run already finished.
    """
    step: int = 0
    epoch: int = 0
    batch: int = 0
    train_seconds: float = 0.0
    pause_seconds: float = 0.0
    examples: int = 0
    best: Optional[float] = None
    interval: dict = field(default_factory=lambda: {"steps": 0})
    run: Optional[dict] = None
    scaler: Optional[dict] = None
    finished_before: bool = False

    def to_dict(self):
        """The JSON object of state.json, with the keys earlier versions wrote (no scaler when not fp16)."""
        saved = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "finished_before"}
        if saved["scaler"] is None:
            del saved["scaler"]
        return saved

    @classmethod
    def from_dict(cls, saved):
        """A RunState from a state.json object, as any version wrote it: earlier versions kept the state
        as this very dict, the first of them without pause_seconds (which then starts at 0). Keys this
        version does not know (a newer version's) are left out, so that such a state still resumes."""
        known = {f.name for f in fields(cls)} - {"finished_before"}
        state = cls(**{k: v for k, v in saved.items() if k in known})
        state.interval = dict(state.interval or {})
        state.interval.setdefault("steps", 0)
        return state


def fit(model, batches, loss_fn, optimizer, scheduler, plan, saving, *, precision, evaluation=None, resume=False,
        run_info=None, desc="train", dist=None):
    """Train `model` for `plan.total_steps` optimizer steps; returns the final RunState.

    batches(epoch) -> Epoch of micro-batches (dicts of tensors), the same for the same epoch in every
    run; loss_fn(batch) -> {term: tensor}, 'loss' the one minimised. `saving` (Saving) says where the
    run is written and what is kept; `evaluation` (Evaluation), how it is scored and which model is
    kept (without one: the latest, never scored). `saving.out_dir/resume` holds everything to continue
    at the exact batch (--resume); a fresh run drops an older run's resume state and log first.
    `run_info` is stored with the state, and a resume under different `run_info` is refused.

    In a data-parallel job (`dist`, backend.Distributed) `model` is the unwrapped model that rank 0
    evaluates and saves; loss_fn trains through the wrapped one, and batches(epoch) gives this rank's
    micro-batches (rank_pieces). Every rank resumes from the same files, each with its own RNG state.
    """
    dist = dist or backend.Distributed(flow)
    run = _Run(model, optimizer, scheduler, plan, precision, saving, evaluation, run_info or {}, dist, desc)
    if run.start(resume) == "finished":
        return run.state
    try:
        _train(run, batches, loss_fn, plan, precision, model, optimizer, scheduler)
    except KeyboardInterrupt:
        raise KeyboardInterrupt(run.how_to_continue()) from None
    run.finish()
    return run.state


def _train(run, batches, loss_fn, plan, precision, model, optimizer, scheduler):
    state = run.state
    bar = tqdm(total=plan.total_steps, initial=state.step, desc=run.desc, unit="step", dynamic_ncols=True,
               disable=not run.dist.is_main or None)
    while state.step < plan.total_steps:
        epoch = batches(state.epoch)
        if len(epoch) == 0:
            raise ValueError(f"epoch {state.epoch} has no batches: no training data?")
        run.epoch_len = len(epoch)
        for i in range(state.batch, len(epoch)):
            batch = epoch.make(i)
            group = min(plan.grad_accum, len(epoch) - i // plan.grad_accum * plan.grad_accum)
            with precision.autocast():
                terms = loss_fn(batch)
            run.accumulate(check_finite(state.step + 1, terms), _batch_size(batch), group)
            precision.backward(terms["loss"] / group)
            state.batch = i + 1
            if (i + 1) % plan.grad_accum and i + 1 < len(epoch):
                continue
            precision.step(model, optimizer)
            scheduler.step()
            state.step += 1
            bar.update(1)
            bar.set_postfix(run.postfix())
            run.estimate(bar)
            run.after_step(bar)
            if state.step >= plan.total_steps:
                break
        else:
            state.epoch, state.batch = state.epoch + 1, 0
    bar.close()


def _batch_size(batch):
    return len(next(iter(batch.values())))


def rank_pieces(rows, world=1, rank=0, grad_accum=1):
    """The `grad_accum` micro-batches this rank trains on out of one global batch `rows`: the rows cut
    into world x grad_accum near-equal pieces, piece j * world + rank at accumulation step j. So a
    step sees the same global batch whatever the number of processes."""
    pieces = np.array_split(np.asarray(rows), world * grad_accum)
    return [pieces[j * world + rank] for j in range(grad_accum)]


def rank_epoch(global_batches, to_batch, world=1, rank=0, grad_accum=1):
    """fit()'s Epoch for this rank from an epoch's global batches (arrays of rows): micro-batch i is this
    rank's piece i % grad_accum of global batch i // grad_accum (rank_pieces), made into tensors by
    to_batch(rows) only when fit() asks for it. Every stage cuts its global batches this one way."""
    def make(i):
        g, j = divmod(i, grad_accum)
        return to_batch(rank_pieces(global_batches[g], world, rank, grad_accum)[j])
    return Epoch(len(global_batches) * grad_accum, make)


def count_batches(rows, batch_size, min_rows=1):
    """Batches of `batch_size` out of `rows` in order; a last one of fewer than `min_rows` rows (too few
    to give every process and accumulation step a piece) is left out."""
    full, rest = divmod(rows, batch_size)
    return full + (rest >= min_rows and rest > 0)


def _pack(arrays):
    """One uint8 buffer of `arrays` (in key order), to gather over ranks; _unpack reverses it."""
    return np.concatenate([np.ascontiguousarray(arrays[k]).reshape(-1).view(np.uint8) for k in sorted(arrays)])


def _unpack(buffer, like):
    out, pos = {}, 0
    for k in sorted(like):
        a = np.asarray(like[k])
        out[k] = buffer[pos:pos + a.nbytes].view(a.dtype).reshape(a.shape).copy()
        pos += a.nbytes
    return out


class _Run:
    """fit()'s bookkeeping: where the run stands, the log, and the checkpoints."""

    def __init__(self, model, optimizer, scheduler, plan, precision, saving, evaluation, run_info, dist,
                 desc="train"):
        self.model, self.optimizer, self.scheduler, self.plan, self.dist = model, optimizer, scheduler, plan, dist
        self.desc, self.saved_step = desc, None
        self.saving, self.evaluation = saving, evaluation
        self.out_dir, self.resume_dir = saving.out_dir, os.path.join(saving.out_dir, RESUME_DIR)
        self.precision, self.run_info = precision, run_info
        self.state = RunState(run=run_info)
        self.lap = time.perf_counter()
        self.step_terms, self.speed, self.epoch_len = {}, None, 1
        self.timed_from = None  # (step, busy seconds) where this process started timing its steps

    def start(self, resume):
        """Start afresh, or (resume) continue the run in out_dir; "finished" when that run had ended."""
        os.makedirs(self.out_dir, exist_ok=True)
        if self.dist.is_main:  # a crash may have cut a checkpoint's swap short, or left temporaries
            files.recover_interrupted_writes(self.out_dir)
        self.dist.barrier()  # the other ranks read resume/ only once it is whole
        record = read_run_record(self.out_dir) if resume else None
        if record is not None:
            check_same_run(self.out_dir, record.get("run"), self.run_info)
            if record.get("finished") and record.get("step", 0) >= self.plan.total_steps:
                self.state.step, self.state.finished_before = record.get("step", 0), True
                if self.dist.is_main:
                    print(f"{self.out_dir} already holds this run, finished at step {self.state.step}: nothing "
                          "to do (--overwrite trains it again)")
                return "finished"
        if resume and os.path.isdir(self.resume_dir):
            state = RunState.from_dict(load_checkpoint(self.resume_dir, self.model, self.optimizer, self.scheduler,
                                                       self.dist.rank))
            check_same_run(self.resume_dir, state.run, self.run_info)
            self.state, self.saved_step = state, state.step
            if self.precision.enabled and state.scaler is not None:  # fp16: the loss scale it had reached
                self.precision.scaler.load_state_dict(state.scaler)
            if self.dist.is_main:
                self.log = TrainLog(self.out_dir)
                self.log.truncate_after(state.step)
                print(f"resuming at epoch {state.epoch}, batch {state.batch}, step {state.step}")
            return
        if not self.dist.is_main:
            return
        if resume and record is not None:
            print(f"--resume: no {self.resume_dir} yet, starting from the beginning")
        shutil.rmtree(self.resume_dir, ignore_errors=True)  # lest a later --resume go back to an older run
        for name in (TrainLog.NAME, TrainLog.PLOT):
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(self.out_dir, name))
        shutil.rmtree(os.path.join(self.out_dir, TensorBoardLog.DIR), ignore_errors=True)
        self.log = TrainLog(self.out_dir)
        self.write_record(finished=False)

    def write_record(self, finished):
        record = {"run": self.run_info, "finished": finished, "step": self.state.step,
                  "total_steps": self.plan.total_steps}
        files.write_text_atomic(os.path.join(self.out_dir, RUN_NAME), json.dumps(record, indent=2) + "\n")

    def how_to_continue(self):
        """What an interrupted run prints: the step reached, the step it will continue from, and how."""
        step, total = self.state.step, self.plan.total_steps
        where = (f"{self.resume_dir} holds step {self.saved_step}" if self.saved_step is not None
                 else "no checkpoint written yet: it starts over")
        return f"at step {step} of {total} ({where}); continue with: {continue_command()}"

    def accumulate(self, values, examples, group):
        """Loss terms of one micro-batch (of a group of `group` making one step)."""
        for k, v in values.items():
            self.step_terms[k] = self.step_terms.get(k, 0.0) + v / group
        self.state.examples += examples

    def postfix(self):
        now = time.perf_counter()
        self.state.train_seconds += now - self.lap
        self.lap = now
        interval = self.state.interval
        for k, v in self.step_terms.items():
            interval[k] = interval.get(k, 0.0) + v
        interval["steps"] += 1
        shown = {k: f"{v:.4g}" for k, v in self.step_terms.items()}
        self.step_terms = {}
        busy = self.state.train_seconds - self.state.pause_seconds
        self.speed = self.state.examples / max(busy, 1e-9)
        return dict(shown, **{"ex/s": f"{self.speed:.0f}"})

    def estimate(self, bar):
        """Once, early: the steps left and what they will take at the pace so far on this machine."""
        busy = self.state.train_seconds - self.state.pause_seconds
        if self.timed_from is None:
            self.timed_from = (self.state.step, busy)
            return
        timed = self.state.step - self.timed_from[0]
        left = self.plan.total_steps - self.state.step
        if timed != self.plan.estimate_after or left == 0 or not self.dist.is_main:
            return
        per_step = (busy - self.timed_from[1]) / timed
        bar.write(f"estimate: {left} more steps at {per_step:.3g} s each = {_duration(left * per_step)} on this "
                  f"machine (evaluations and checkpoints not counted; {self.plan.total_steps} steps in all)")

    def after_step(self, bar):
        started = time.perf_counter()
        self._evaluate_log_save(bar)
        self.state.pause_seconds += time.perf_counter() - started

    def _evaluate_log_save(self, bar):
        step, plan, main = self.state.step, self.plan, self.dist.is_main
        evaluate = self.evaluation is not None and plan.at(plan.eval_every, step)  # the same on every rank
        metrics = self.evaluation.fn() if evaluate and main else None
        if main and (evaluate or plan.at(plan.log_every or plan.eval_every, step)):
            self.write_row(metrics)
        if evaluate or plan.at(plan.save_every or plan.eval_every, step):
            saved = self.save(metrics)
            if metrics is not None:
                shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
                bar.write(f"step {step}: {shown}" + (" (saved)" if saved else ""))

    def write_row(self, metrics):
        interval = self.state.interval
        n = max(interval.pop("steps"), 1)
        epoch = self.state.epoch + self.state.batch / self.epoch_len  # fractional: where in the data
        row = {"step": self.state.step, "epoch": round(epoch, 4), "lr": self.scheduler.get_last_lr()[0],
               "train_seconds": round(self.state.train_seconds, 1),
               **{k: v / n for k, v in interval.items()}, "examples_per_s": round(self.speed, 1)}
        row.update({k if k.startswith("dev_") else f"dev_{k}": v for k, v in (metrics or {}).items()})
        self.log.append(**row)
        self.state.interval = {"steps": 0}

    def save(self, metrics):
        """The model into out_dir (if it is the best so far, or the latest is kept), then resume state
        with every rank's RNG; rank 0 writes, the others only hand over their RNG state."""
        local = rng_state()
        rng_states = [_unpack(b, local) for b in self.dist.all_gather(_pack(local))]
        if self.precision.enabled:
            self.state.scaler = self.precision.scaler.state_dict()
        if not self.dist.is_main:
            return False
        improved = True
        best_metric = self.evaluation.best_metric if self.evaluation is not None else None
        if best_metric is not None:
            value = (metrics or {}).get(best_metric)
            improved = value is not None and (self.state.best is None or value > self.state.best)
            if improved:
                self.state.best = value
        saving, state = self.saving, self.state.to_dict()
        if improved:
            save_checkpoint(self.out_dir, self.model, state=dict(state, metrics=metrics),
                            vocab_file=saving.vocab_file, exclude=saving.exclude)
        save_checkpoint(self.resume_dir, self.model, self.optimizer, self.scheduler, state=state,
                        vocab_file=saving.vocab_file, rng_states=rng_states)
        self.saved_step = self.state.step
        self.log.refresh_plot(final=self.state.step >= self.plan.total_steps)
        return improved

    def finish(self):
        if not self.dist.is_main:
            return
        self.write_record(finished=True)
        if not self.saving.keep_resume:
            shutil.rmtree(self.resume_dir, ignore_errors=True)


def read_run_record(out_dir):
    """The run.json fit() keeps in out_dir, or None where there is none."""
    path = os.path.join(out_dir, RUN_NAME)
    if not os.path.isfile(path):
        return None
    return checkpoint.read_json(path)


def check_same_run(where, recorded, asked):
    """Refuse, in one line naming what differs, to continue a run made from other inputs or settings."""
    if recorded == asked:
        return
    old, new = _flat(recorded or {}), _flat(asked)
    changed = [f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    raise ValueError(f"{where} holds a run made otherwise ({'; '.join(changed)}): resume with the same inputs and "
                     "settings, or start afresh with --overwrite (OVERWRITE=yes for the wrappers)")


def _flat(tree, prefix=""):
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def continue_command():
    """The command that continues an interrupted run: the wrapper's own (CONTINUE_ENV), or this
    script's command line with --resume."""
    if os.environ.get(CONTINUE_ENV):
        return os.environ[CONTINUE_ENV]
    argv = sys.argv if "--resume" in sys.argv else sys.argv + ["--resume"]
    return " ".join(shlex.quote(a) for a in [os.path.basename(sys.executable)] + argv)


# ----------------------------------------------------------------------------------------------
# What a person reads
# ----------------------------------------------------------------------------------------------
class TrainLog:
    """Rows of loss terms and metrics, appended to `train_log.csv`, plotted to `curves.png`."""
    NAME, PLOT = "train_log.csv", "curves.png"
    # Drawing curves.png takes a noticeable part of a second: at every evaluation of a short run (the
    # demo's) that added up. refresh_plot redraws at most this often, and at the end.
    PLOT_EVERY_S = 60.0

    def __init__(self, directory):
        self.path = os.path.join(directory, self.NAME)
        self.rows = []
        self.plotted_at = None  # time.monotonic() of the last drawing
        if os.path.isfile(self.path):  # a resumed run continues its log
            with open(self.path, newline="") as f:
                self.rows = [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(f)]
        self.events = TensorBoardLog(directory)

    def append(self, **row):
        self.rows.append(row)
        self.events.write(row)
        columns = []
        for r in self.rows:
            columns += [k for k in r if k not in columns]
        lines = [",".join(columns)] + [",".join(_fmt(r.get(c)) for c in columns) for r in self.rows]
        files.write_text_atomic(self.path, "\n".join(lines) + "\n")

    def truncate_after(self, step):
        """Drop rows past `step` (a resumed run repeats them)."""
        self.rows = [r for r in self.rows if r.get("step", 0) <= step]
        self.events.restart_after(step)

    def refresh_plot(self, final=False):
        """Redraw curves.png at the run's end (final) or if PLOT_EVERY_S have passed since the last
        drawing; returns its path, or None when it was not due."""
        now = time.monotonic()
        if not final and self.plotted_at is not None and now - self.plotted_at < self.PLOT_EVERY_S:
            return None
        self.plotted_at = now
        return self.plot()

    # columns that say nothing a panel should show: the x axes, the clock, the speed (the progress bar has it)
    NOT_PLOTTED = ("step", "epoch", "train_seconds", "examples_per_s")

    def panels(self):
        """The columns worth a panel each: every loss term, the total only where it differs from the one
        term it sums, the dev metrics and the learning rate."""
        columns = [c for c in dict.fromkeys(c for r in self.rows for c in r) if c not in self.NOT_PLOTTED]
        for prefix in ("", "dev_"):  # the training terms, then their dev means
            terms = [c for c in columns if c.endswith("_loss") and c != prefix + "loss"
                     and (c.startswith("dev_") == (prefix == "dev_"))]
            if prefix + "loss" in columns and len(terms) == 1:
                columns.remove(prefix + "loss")
        return columns

    def plot(self, path=None, x="step"):
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        path = path or os.path.join(os.path.dirname(self.path), self.PLOT)
        columns = self.panels()
        if not columns:
            return None
        ncols = min(3, len(columns))
        nrows = -(-len(columns) // ncols)
        fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 2.6 * nrows), squeeze=False)
        for ax, col in zip(axes.flat, columns):
            pts = [(r[x], r[col]) for r in self.rows if isinstance(r.get(col), (int, float)) and x in r]
            if pts:
                ax.plot(*zip(*pts), marker="." if len(pts) < 50 else None)
            ax.set_title(col, fontsize=9)
            ax.set_xlabel(x, fontsize=8)
            ax.grid(alpha=0.3)
        for ax in axes.flat[len(columns):]:
            ax.set_visible(False)
        fig.tight_layout()
        try:
            with files.atomic_file(path) as f:
                fig.savefig(f, format="png", dpi=90)
        finally:
            plt.close(fig)
        return path


class TensorBoardLog:
    """The train_log rows again as TensorBoard scalars in `DIR` beside it, so that `tensorboard --logdir`
    over several runs shows them all live. Records go through the tensorboard package's record writer
    into a plain file: its event-file writer opens files through TensorFlow when TensorFlow is installed,
    which a training run must not import. Without the package the run keeps the CSV and the plot alone."""
    DIR = "tensorboard"
    opened = 0  # files this process has opened: part of each file's name, so that none is reused

    def __init__(self, directory):
        try:
            from tensorboard.compat.proto import event_pb2, summary_pb2
            from tensorboard.summary.writer.record_writer import RecordWriter
        except ImportError:
            print("note: the tensorboard package is not installed: no TensorBoard events (train_log.csv and "
                  "curves.png are written as always)")
            self.records = None
            return
        self.event_pb2, self.summary_pb2 = event_pb2, summary_pb2
        os.makedirs(os.path.join(directory, self.DIR), exist_ok=True)
        TensorBoardLog.opened += 1
        name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}.{TensorBoardLog.opened}"
        self.file = open(os.path.join(directory, self.DIR, name), "ab")
        self.records = RecordWriter(self.file)
        self._add(self.event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))

    def _add(self, event):
        self.records.write(event.SerializeToString())
        self.file.flush()

    def write(self, row):
        if self.records is None:
            return
        values = [self.summary_pb2.Summary.Value(tag=self.tag(k), simple_value=float(v)) for k, v in row.items()
                  if k not in ("step", "epoch") and isinstance(v, (int, float)) and not isinstance(v, bool)]
        self._add(self.event_pb2.Event(wall_time=time.time(), step=int(row.get("step", 0)),
                                       summary=self.summary_pb2.Summary(value=values)))

    def restart_after(self, step):
        """A resumed run writes its steps again: TensorBoard drops what an earlier file holds past `step`
        when it reads a session start there."""
        if self.records is None:
            return
        start = self.event_pb2.SessionLog(status=self.event_pb2.SessionLog.START)
        self._add(self.event_pb2.Event(wall_time=time.time(), step=step + 1, session_log=start))

    @staticmethod
    def tag(column):
        """dev_acc -> dev/acc; the training terms and rates under train/."""
        return "dev/" + column[4:] if column.startswith("dev_") else "train/" + column


def _duration(seconds):
    """3725 -> '1 h 02 min'; 95 -> '1 min 35 s'."""
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


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
