"""General distillation, TinyBERT's first stage: a pretrained BERT teaches a small student its
attention scores and hidden states on a large corpus.

    python general_distill.py --pregenerated_data data/pretrain_data_json/ --teacher_model models/bert-base-uncased \
        --student_model 4L-312D --output_dir models/general_tinybert_4L_312D/ [--backend torch]

The loss is att_loss + rep_loss (distillation.py, shared with task distillation) under uniform
layer mapping (or --layer_map); the student's hidden states, embeddings included, reach the
teacher's width through fit_dense. The data are pregenerate_training_data.py's epoch_N.json files,
one per training epoch (cycling when fewer), each read in a seeded random order through an index of
line offsets, never whole. The output directory is a model directory (config.json, vocab.txt,
model.safetensors with fit_dense) that task distillation takes as its student; beside it
train_log.csv, curves.png, general_distill_args.json and resume/ (the last checkpoint: --resume).
"""
import argparse
import json
import math
import os
import shutil
import time
from array import array
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

import backend
import checkpoint
import distillation
import modeling
import training
from checkpoint import KNOWN_MODELS, resolve_model_dir

flow = backend.framework()

# TinyBERT's published students (Jiao et al., 2020): 12 heads, as the BERT-base teacher has.
PRESETS = {
    "4L-312D": dict(num_hidden_layers=4, hidden_size=312, num_attention_heads=12, intermediate_size=1200),
    "6L-768D": dict(num_hidden_layers=6, hidden_size=768, num_attention_heads=12, intermediate_size=3072),
}
RESUME_DIR = "resume"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pregenerated_data", default="data/pretrain_data_json",
                   help="directory of epoch_N.json + epoch_N_metrics.json (pregenerate_training_data.py)")
    p.add_argument("--teacher_model", required=True,
                   help=f"pretrained BERT model directory, or one of: {', '.join(KNOWN_MODELS)}")
    p.add_argument("--student_model", default="4L-312D",
                   help=f"a preset ({', '.join(PRESETS)}) or a directory with the student's config.json")
    p.add_argument("--student_layers", type=int, default=None,
                   help="override the student's number of layers (e.g. 3 for a 6-layer teacher)")
    p.add_argument("--continue_train", action="store_true",
                   help="start from the weights in --student_model's directory instead of random ones")
    p.add_argument("--layer_map", default="",
                   help="teacher layer (1..T) for each student layer, e.g. 2,4,6; default: uniform")
    p.add_argument("--output_dir", default="models/general_tinybert_4L_312D")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty --output_dir")
    p.add_argument("--resume", action="store_true", help="continue from --output_dir/resume")
    p.add_argument("--train_batch_size", type=int, default=32)
    p.add_argument("--learning_rate", type=float, default=1e-4, help="BERT pretraining's, as the paper keeps")
    p.add_argument("--weight_decay", type=float, default=0.01)
    p.add_argument("--warmup_proportion", type=float, default=0.1)
    p.add_argument("--max_grad_norm", type=float, default=1.0)
    p.add_argument("--num_train_epochs", type=int, default=3)
    p.add_argument("--max_steps", type=int, default=0,
                   help="stop after this many steps (0: never); the schedule still spans every epoch, so "
                        "--resume later continues the same run")
    p.add_argument("--logging_steps", type=int, default=50)
    p.add_argument("--save_steps", type=int, default=1000, help="steps between checkpoints in resume/")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--no_cuda", action="store_true")
    backend.add_argument(p)
    args = p.parse_args(argv)
    for flag in ("train_batch_size", "num_train_epochs", "logging_steps", "save_steps"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag} must be at least 1, got {getattr(args, flag)}")
    if args.backend != backend.name():
        p.error(f"--backend {args.backend}: this process already runs {backend.name()}; "
                "give --backend on the command line")
    return args


# ----------------------------------------------------------------------------------------------
# Pregenerated data
# ----------------------------------------------------------------------------------------------
def find_epochs(data_dir, num_train_epochs):
    """(epoch_N.json, its metrics) for each training epoch, cycling through the epochs on disk."""
    found = []
    while True:
        path = os.path.join(data_dir, f"epoch_{len(found)}.json")
        metrics = os.path.join(data_dir, f"epoch_{len(found)}_metrics.json")
        if not (os.path.isfile(path) and os.path.isfile(metrics)):
            break
        with open(metrics) as f:
            found.append((path, json.load(f)))
    if not found:
        raise FileNotFoundError(f"--pregenerated_data {data_dir}: no epoch_0.json with epoch_0_metrics.json; "
                                "run pregenerate_training_data.py first")
    if len(found) < num_train_epochs:
        print(f"{data_dir}: {len(found)} epoch(s) of data for {num_train_epochs} training epochs: "
              "cycling through them")
    return [found[e % len(found)] for e in range(num_train_epochs)]


def read_vocab(model_dir):
    path = checkpoint.find_vocab(model_dir)
    if path is None:
        raise FileNotFoundError(f"{model_dir}: no {checkpoint.VOCAB_NAME}")
    with open(path, encoding="utf-8") as f:
        return {line.rstrip("\n"): i for i, line in enumerate(f)}


class PregeneratedEpoch:
    """One epoch_N.json, read in a seeded random order: only the lines' byte offsets stay in memory."""

    def __init__(self, path, metrics, vocab):
        self.path, self.vocab = path, vocab
        offsets, position = array("q"), 0
        with open(path, "rb") as f:
            for line in f:
                offsets.append(position)
                position += len(line)
        self.offsets = np.frombuffer(offsets, dtype=np.int64)
        expected = metrics["num_training_examples"]
        if len(self.offsets) != expected:
            raise ValueError(f"{path}: {len(self.offsets)} instances, but its metrics file says {expected}: "
                             "an incomplete file? Pregenerate the data again")

    def __len__(self):
        return len(self.offsets)

    def num_batches(self, batch_size):
        return math.ceil(len(self) / batch_size)

    def batches(self, batch_size, seed, start=0):
        """(input_ids, token_type_ids, attention_mask) numpy batches, padded to their longest
        instance; batches before `start` are skipped without being read."""
        order = np.random.default_rng(seed).permutation(len(self))
        with open(self.path, "rb") as f:
            for b in range(start, self.num_batches(batch_size)):
                rows = [self.instance(f, int(i)) for i in order[b * batch_size:(b + 1) * batch_size]]
                yield pad(rows)

    def instance(self, f, i):
        f.seek(self.offsets[i])
        where = f"{self.path}:{i + 1}"
        try:
            example = json.loads(f.readline())
            ids = [self.vocab[t] for t in example["tokens"]]
            segments = example["segment_ids"]
        except json.JSONDecodeError as e:
            raise ValueError(f"{where}: not a JSON instance ({e})") from None
        except KeyError as e:
            raise ValueError(f"{where}: {e} is not in the teacher's vocabulary (nor an instance field): "
                             "pregenerate the data with the teacher as --bert_model") from None
        if len(ids) != len(segments):
            raise ValueError(f"{where}: {len(ids)} tokens but {len(segments)} segment_ids")
        return ids, segments


def pad(rows):
    length = max(len(ids) for ids, _ in rows)
    ids, types, mask = (np.zeros((len(rows), length), dtype=np.int64) for _ in range(3))
    for r, (row_ids, row_types) in enumerate(rows):
        ids[r, :len(row_ids)] = row_ids
        types[r, :len(row_types)] = row_types
        mask[r, :len(row_ids)] = 1
    return ids, types, mask


# ----------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------
def student_config(args, teacher_config):
    """The student's BertConfig: a preset with the teacher's vocabulary, or a directory's config.json."""
    if args.student_model in PRESETS:
        config = modeling.BertConfig(**PRESETS[args.student_model], vocab_size=teacher_config.vocab_size,
                                     max_position_embeddings=teacher_config.max_position_embeddings,
                                     type_vocab_size=teacher_config.type_vocab_size,
                                     pad_token_id=teacher_config.pad_token_id)
    else:
        path = checkpoint.find_config(resolve_model_dir(args.student_model))
        config = modeling.BertConfig.from_json_file(path)
        if config.vocab_size != teacher_config.vocab_size:
            raise ValueError(f"{path}: vocab_size {config.vocab_size}, but the teacher's is "
                             f"{teacher_config.vocab_size}: the student reads the teacher's tokens")
    if args.student_layers:
        config.num_hidden_layers = args.student_layers
    if config.num_attention_heads != teacher_config.num_attention_heads:
        raise ValueError(f"the student has {config.num_attention_heads} attention heads, the teacher "
                         f"{teacher_config.num_attention_heads}: att_loss compares them head by head")
    return config


def make_student(args, teacher_config, resume_dir):
    """TinyBertForPreTraining (fit_dense to the teacher's width): from the checkpoint when resuming,
    the --student_model directory's weights with --continue_train, or random."""
    fit_size = teacher_config.hidden_size
    if resume_dir:
        return modeling.TinyBertForPreTraining(
            modeling.BertConfig.from_json_file(checkpoint.find_config(resume_dir)), fit_size=fit_size)
    config = student_config(args, teacher_config)
    if args.continue_train:
        if args.student_model in PRESETS:
            raise ValueError(f"--continue_train needs a --student_model directory with weights, not the preset "
                             f"{args.student_model}")
        student = modeling.TinyBertForPreTraining.from_pretrained(resolve_model_dir(args.student_model),
                                                                  fit_size=fit_size)
        if student.config.num_hidden_layers != config.num_hidden_layers:
            raise ValueError("--student_layers cannot change a student whose weights are loaded (--continue_train)")
        return student
    return modeling.TinyBertForPreTraining(config, fit_size=fit_size)


def load_teacher(teacher_dir, device):
    teacher = modeling.BertModel.from_pretrained(teacher_dir).to(device)
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------
def distill_step(teacher, student, batch, layer_map, step):
    """att_loss and rep_loss of one batch, checked finite before anything is updated."""
    ids, types, mask = batch
    with flow.no_grad():
        target = teacher(ids, types, mask)
    student_atts, student_reps = student(ids, types, mask)
    att = distillation.att_loss(student_atts, target.attentions, layer_map, mask)
    rep = distillation.rep_loss(student_reps, target.hidden_states, layer_map, mask)
    training.check_finite(step, {"att_loss": att.detach(), "rep_loss": rep.detach()})
    return att, rep


@dataclass
class Run:
    """What the training loop carries; `state` is where it stands (saved in, and read from, resume/)."""
    args: argparse.Namespace
    teacher: object
    student: object
    optimizer: object
    scheduler: object
    layer_map: list
    epochs: list        # (epoch_N.json, metrics) per training epoch
    vocab: dict
    vocab_file: str
    total_steps: int    # the schedule's length; --max_steps may stop the run before
    device: str
    state: dict = field(default_factory=lambda: {"step": 0, "epoch": 0, "batch": 0})

    def __post_init__(self):
        self.log = training.TrainLog(self.args.output_dir)
        self.interval = []  # (att_loss, rep_loss) since the last row of the log
        self.stop_at = min(self.total_steps, self.args.max_steps or self.total_steps)
        self.steps = training.MixedPrecision(False, self.device, self.args.max_grad_norm)
        self.lap = time.perf_counter()  # train_seconds in the log, carried across resumes in `state`

    def train(self):
        self.log.truncate_after(self.state["step"])
        while self.state["epoch"] < len(self.epochs) and self.state["step"] < self.stop_at:
            self.train_epoch(*self.epochs[self.state["epoch"]])
            if self.state["step"] < self.stop_at:
                self.state.update(epoch=self.state["epoch"] + 1, batch=0)
        self.save_checkpoint()

    def train_epoch(self, path, metrics):
        data = PregeneratedEpoch(path, metrics, self.vocab)
        e, bs = self.state["epoch"], self.args.train_batch_size
        batches = data.batches(bs, seed=self.args.seed + e, start=self.state["batch"])
        with tqdm(batches, total=data.num_batches(bs), initial=self.state["batch"], desc=f"epoch {e}") as bar:
            for batch in bar:
                batch = [flow.tensor(a, dtype=flow.int64, device=self.device) for a in batch]
                att, rep = distill_step(self.teacher, self.student, batch, self.layer_map, self.state["step"] + 1)
                self.optimizer.zero_grad()
                self.steps.backward_and_step(att + rep, self.student, self.optimizer)
                self.scheduler.step()
                self.state.update(step=self.state["step"] + 1, batch=self.state["batch"] + 1)
                self.record(float(att), float(rep), data.num_batches(bs), bar)
                if self.state["step"] >= self.stop_at:
                    break

    def record(self, att, rep, num_batches, bar):
        step = self.state["step"]
        self.interval.append((att, rep))
        bar.set_postfix(att_loss=f"{att:.4g}", rep_loss=f"{rep:.4g}")
        if step % self.args.logging_steps == 0 or step == self.stop_at:
            att, rep = np.mean(self.interval, axis=0).tolist()
            now = time.perf_counter()
            self.state["train_seconds"] = self.state.get("train_seconds", 0.0) + now - self.lap
            self.lap = now
            self.log.append(step=step, epoch=round(self.state["epoch"] + self.state["batch"] / num_batches, 4),
                            train_seconds=round(self.state["train_seconds"], 1),
                            att_loss=att, rep_loss=rep, loss=att + rep, lr=self.optimizer.param_groups[0]["lr"])
            self.interval = []
        if step % self.args.save_steps == 0 and step < self.stop_at:
            self.save_checkpoint()

    def save_checkpoint(self):
        training.save_checkpoint(os.path.join(self.args.output_dir, RESUME_DIR), self.student, self.optimizer,
                                 self.scheduler, state=dict(self.state), vocab_file=self.vocab_file)
        self.log.plot()


def find_resume_dir(args):
    """output_dir/resume when resuming from it; a fresh run (--overwrite) drops a stale one first,
    lest a later --resume go back to the older run."""
    path = os.path.join(args.output_dir, RESUME_DIR)
    if not args.resume and os.path.isdir(path):
        shutil.rmtree(path)
    return path if args.resume and os.path.isdir(path) else None


def check_lengths(epochs, teacher_config, student_config):
    path, metrics = max(epochs, key=lambda e: e[1]["max_seq_len"])
    positions = min(teacher_config.max_position_embeddings, student_config.max_position_embeddings)
    if metrics["max_seq_len"] > positions:
        raise ValueError(f"{path}: instances of up to {metrics['max_seq_len']} tokens, but the models have "
                         f"{positions} positions: pregenerate with --max_seq_len {positions} or less")


def count_steps(epochs, batch_size):
    return sum(math.ceil(metrics["num_training_examples"] / batch_size) for _, metrics in epochs)


def main(argv=None):
    args = parse_args(argv)
    training.set_seed(args.seed)
    epochs = find_epochs(args.pregenerated_data, args.num_train_epochs)
    teacher_dir = resolve_model_dir(args.teacher_model)
    vocab = read_vocab(teacher_dir)
    training.prepare_output_dir(args.output_dir, args.overwrite, args.resume)
    resume_dir = find_resume_dir(args)
    device = backend.device(not args.no_cuda)
    teacher = load_teacher(teacher_dir, device)
    student = make_student(args, teacher.config, resume_dir).to(device)
    check_lengths(epochs, teacher.config, student.config)
    layer_map = distillation.parse_layer_map(args.layer_map, teacher.config.num_hidden_layers,
                                             student.config.num_hidden_layers)
    total_steps = count_steps(epochs, args.train_batch_size)
    optimizer = training.make_optimizer(student, args.learning_rate, args.weight_decay)
    scheduler = training.make_schedule(optimizer, total_steps, args.warmup_proportion)
    run = Run(args, teacher, student, optimizer, scheduler, layer_map, epochs, vocab,
              checkpoint.find_vocab(teacher_dir), total_steps, device)
    if resume_dir:
        run.state = training.load_checkpoint(resume_dir, student, optimizer, scheduler)
        print(f"resuming from {resume_dir} at step {run.state['step']}")
    checkpoint.write_text_atomic(os.path.join(args.output_dir, "general_distill_args.json"),
                                 json.dumps({**vars(args), "layer_map": layer_map, "total_steps": total_steps},
                                            indent=2) + "\n")
    print(f"teacher {teacher_dir} ({teacher.config.num_hidden_layers} layers) -> student "
          f"{student.config.num_hidden_layers} layers x {student.config.hidden_size}, layer map {layer_map}, "
          f"{total_steps} steps on {args.backend}/{device}")
    run.train()
    student.save_pretrained(args.output_dir, vocab_file=checkpoint.find_vocab(teacher_dir))
    print(f"general TinyBERT saved in {args.output_dir} (step {run.state['step']} of {total_steps})")


if __name__ == "__main__":
    main()
