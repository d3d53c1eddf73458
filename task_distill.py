"""Task-specific distillation (TinyBERT's second stage), teacher fine-tuning and evaluation on GLUE.

    stage 1  --intermediate_distill   att_loss + rep_loss against a fine-tuned teacher  -> TMP_STUDENT_DIR
    stage 2  --pred_distill           soft cross-entropy against the teacher's logits    -> STUDENT_DIR
    both     --intermediate_distill --pred_distill   in one run (what the original OneFlow script did)
    --finetune    train --student_model on the gold labels alone (teacher fine-tuning; hard-label baselines)
    --do_eval     evaluate --student_model on dev and write results_eval.json

Differences from the reference implementation, all measured in bench/bench_task_distill.py:
- batches are padded to their longest sequence and grouped by length (the reference pads everything
  to max_seq_length); the intermediate losses then average over real tokens only (distillation.py);
- the teacher runs in eval mode (no dropout) under no-grad, and in prediction distillation its
  logits are computed once per example and reused every epoch (the reference reruns it every step,
  with dropout on);
- `--reference_mode` turns the first two back (fixed padding, unmasked means, teacher every step).
"""
import argparse
import json
import os
import sys
import time

import numpy as np
from tqdm import tqdm

import backend
import checkpoint
import distillation
import glue
import modeling
import training

flow = backend.framework()

# The original's per-task defaults: (learning rate, epochs, weight decay) of prediction distillation.
TASK_DEFAULTS = {
    "sst-2": (2e-5, 4, 1e-4), "cola": (7e-5, 100, 1e-4), "mrpc": (2e-5, 30, 1e-3), "sts-b": (2e-5, 30, 1e-4),
    "qqp": (2e-5, 4, 1e-4), "mnli": (2e-5, 4, 1e-4), "mnli-mm": (2e-5, 4, 1e-4), "qnli": (2e-5, 4, 1e-4),
    "rte": (3e-5, 30, 1e-4), "wnli": (2e-5, 30, 1e-4),
}
RESUME_DIR = "resume"
RESULTS_NAME = "results_eval.json"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--task_name", required=True, help="GLUE task: " + ", ".join(glue.PROCESSORS))
    p.add_argument("--data_dir", required=True, help="GLUE task directory (tsv) or OFRecord task directory")
    p.add_argument("--train_data", help="training split location when not in --data_dir (tsv dir or OFRecord split dir)")
    p.add_argument("--student_model", "--model", dest="student_model", required=True,
                   help="model directory to train or evaluate (general TinyBERT, stage-1 student, or BERT to fine-tune)")
    p.add_argument("--teacher_model", help="fine-tuned teacher model directory (distillation)")
    p.add_argument("--output_dir", required=True)
    mode = p.add_argument_group("what to run")
    mode.add_argument("--intermediate_distill", action="store_true", help="stage 1: att_loss + rep_loss")
    mode.add_argument("--pred_distill", action="store_true", help="stage 2: soft cross-entropy on logits")
    mode.add_argument("--finetune", action="store_true", help="train on gold labels, no teacher")
    mode.add_argument("--do_eval", action="store_true", help="only evaluate --student_model on dev")
    p.add_argument("--aug_train", action="store_true", help="train on the train_aug split (data augmentation)")
    p.add_argument("--max_seq_length", type=int, default=64)
    p.add_argument("--train_batch_size", type=int, default=32)
    p.add_argument("--eval_batch_size", type=int, default=64)
    p.add_argument("--learning_rate", type=float, help="default: the task's (prediction) or 5e-5 (intermediate)")
    p.add_argument("--num_train_epochs", type=float, help="default: the task's")
    p.add_argument("--weight_decay", type=float, help="default: the task's")
    p.add_argument("--warmup_proportion", type=float, default=0.1)
    p.add_argument("--temperature", type=float, default=1.0, help="softmax temperature of pred_distill")
    p.add_argument("--layer_map", default="", help="teacher layer for each student layer, e.g. 2,4,6 (default uniform)")
    p.add_argument("--max_train_examples", type=int, help="train on a seeded random subset of this size")
    p.add_argument("--eval_step", type=int, default=0, help="evaluate every N steps (0: once per epoch)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--teacher_dtype", choices=["fp32", "bf16"], default="fp32",
                   help="run the teacher's forward pass in bfloat16 (autocast)")
    p.add_argument("--fp16", action="store_true", help="mixed precision for the student (CUDA only)")
    p.add_argument("--gpu", action=argparse.BooleanOptionalAction, default=True, help="use CUDA when available")
    p.add_argument("--reference_mode", action="store_true",
                   help="the reference's choices: pad to max_seq_length, unmasked loss means, teacher every step")
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT_DIR/resume")
    p.add_argument("--overwrite", action="store_true", help="allow a non-empty output directory")
    p.add_argument("--serve_for_online", action="store_true",
                   help="keep only what inference needs in OUTPUT_DIR (no fit_dense, no resume state)")
    p.add_argument("--allow_untrained_teacher", action="store_true",
                   help="accept a teacher whose classifier was never fine-tuned")
    p.add_argument("--remap_teacher_labels", action="store_true",
                   help="reorder the teacher's logits to the task's label order when its id2label differs")
    p.add_argument("--debug_kill_at_step", type=int, help=argparse.SUPPRESS)  # tests: SIGKILL mid-epoch
    backend.add_argument(p)
    args = p.parse_args(argv)
    return _check_args(p, args)


def _check_args(parser, args):
    modes = [args.intermediate_distill or args.pred_distill, args.finetune, args.do_eval]
    if sum(modes) != 1:
        parser.error("choose one of: --intermediate_distill and/or --pred_distill, --finetune, --do_eval")
    if (args.intermediate_distill or args.pred_distill) and not args.teacher_model:
        parser.error("distillation needs --teacher_model")
    task = glue.get_processor(args.task_name).task
    lr, epochs, wd = TASK_DEFAULTS[task]
    if args.intermediate_distill and not args.pred_distill:
        lr = 5e-5  # the reference's stage-1 rate; its epochs default stays the task's
    args.learning_rate = args.learning_rate or lr
    args.num_train_epochs = args.num_train_epochs or epochs
    args.weight_decay = wd if args.weight_decay is None else args.weight_decay
    return args


# ----------------------------------------------------------------------------------------------
# Models and the checks that catch the reference users' commonest mistakes before any training
# ----------------------------------------------------------------------------------------------
def label_permutation(model, processor, role, allow_remap):
    """Index array mapping the task's label order onto `model`'s logits, or None if they agree."""
    id2label = model.config.extra.get("id2label")
    if processor.is_regression or not id2label:
        return None
    names = [str(id2label[k]) for k in sorted(id2label, key=int)]
    if all(n == f"LABEL_{i}" for i, n in enumerate(names)) or names == list(processor.labels):
        return None
    if sorted(names) != sorted(processor.labels):
        raise ValueError(f"{role} {model.source_dir}: its labels {names} are not the {processor.task} labels "
                         f"{processor.labels}: was it fine-tuned on another task?")
    if not allow_remap:
        raise ValueError(f"{role} {model.source_dir}: label order {names} differs from the task's {processor.labels}; "
                         "pass --remap_teacher_labels to reorder its logits")
    return np.array([names.index(label) for label in processor.labels])


def load_models(args, processor, device):
    num_labels = processor.num_labels
    teacher = None
    if args.teacher_model:
        teacher = modeling.TinyBertForSequenceClassification.from_pretrained(args.teacher_model, num_labels=num_labels,
                                                                             fit_size=None)
        if any(k.startswith("classifier.") for k in teacher.missing_keys) and not args.allow_untrained_teacher:
            raise ValueError(f"teacher {args.teacher_model} has no classifier: it was never fine-tuned on "
                             f"{processor.task} (run run_train_teacher.sh first), or pass --allow_untrained_teacher")
        teacher.eval().to(device)
    student_dir = args.student_model
    student = modeling.TinyBertForSequenceClassification.from_pretrained(
        student_dir, num_labels=num_labels, fit_size=teacher.config.hidden_size if teacher else None)
    if teacher is not None:
        for field in ("vocab_size",):
            if getattr(teacher.config, field) != getattr(student.config, field):
                raise ValueError(f"teacher {args.teacher_model} and student {student_dir} have different "
                                 f"vocabularies ({field} {getattr(teacher.config, field)} vs "
                                 f"{getattr(student.config, field)}): the student must use the teacher's vocab.txt")
        tv, sv = checkpoint.find_vocab(args.teacher_model), checkpoint.find_vocab(student_dir)
        if tv and sv and open(tv, "rb").read() != open(sv, "rb").read():
            raise ValueError(f"vocab.txt of teacher {args.teacher_model} and student {student_dir} differ")
    label_permutation(student, processor, "student", allow_remap=False)
    if not processor.is_regression:  # every saved model records its label order
        student.config.extra["id2label"] = {str(i): str(label) for i, label in enumerate(processor.labels)}
        student.config.extra["label2id"] = {str(label): i for i, label in enumerate(processor.labels)}
    return teacher, student.to(device)


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------
def load_data(args, processor, tokenizer):
    split = "train_aug" if args.aug_train else "train"
    train = glue.load_features(args.train_data or args.data_dir, args.task_name, split, tokenizer, args.max_seq_length)
    if args.max_train_examples and args.max_train_examples < len(train):
        rng = np.random.default_rng(args.seed)
        train = train.select(np.sort(rng.choice(len(train), args.max_train_examples, replace=False)))
    dev = glue.load_features(args.data_dir, args.task_name, "dev", tokenizer, args.max_seq_length)
    return train, dev


def batches(features, batch_size, args, epoch=0, shuffle=True):
    """Dynamic padding with length-grouped batches; --reference_mode: random batches of full width."""
    order = glue.batch_order(features.lengths, batch_size, shuffle=shuffle, seed=args.seed, epoch=epoch,
                             group_by_length=not args.reference_mode)
    for index in order:
        width = features.max_seq_length if args.reference_mode else int(features.lengths[index].max())
        yield index, width


def to_tensors(features, index, width, device, teacher_logits=None):
    cut = lambda a: flow.tensor(a[index, :width].astype(np.int64), device=device)
    out = {"input_ids": cut(features.input_ids), "segment_ids": cut(features.segment_ids),
           "input_mask": cut(features.input_mask)}
    labels = features.label_ids[index]
    out["labels"] = flow.tensor(labels, dtype=flow.float32 if labels.dtype.kind == "f" else flow.int64, device=device)
    if teacher_logits is not None:
        out["teacher_logits"] = flow.tensor(teacher_logits[index], device=device)
    return out


# ----------------------------------------------------------------------------------------------
# Teacher
# ----------------------------------------------------------------------------------------------
class Teacher:
    """The teacher's forward pass: no grad, eval mode, optional bf16 autocast, label reordering."""

    def __init__(self, model, args, processor, device):
        self.model, self.device = model, device
        self.autocast = args.teacher_dtype == "bf16"
        self.perm = label_permutation(model, processor, "teacher", args.remap_teacher_labels)

    def __call__(self, b, need_internals=True):
        with flow.no_grad():
            if self.autocast:
                with flow.autocast(self.device.split(":")[0], dtype=flow.bfloat16):
                    logits, atts, reps = self.model(b["input_ids"], b["segment_ids"], b["input_mask"],
                                                    output_attentions=need_internals)
                logits = logits.float()
                atts = [a.float() for a in atts] if need_internals else atts
                reps = [r.float() for r in reps]
            else:
                logits, atts, reps = self.model(b["input_ids"], b["segment_ids"], b["input_mask"],
                                                output_attentions=need_internals)
        if self.perm is not None:
            logits = logits[:, flow.tensor(self.perm, device=logits.device)]
        return logits, atts, reps

    def all_logits(self, features, args):
        """Logits for every example, once (prediction distillation reuses them every epoch)."""
        out = np.zeros((len(features), self.model.num_labels), dtype=np.float32)
        order = list(batches(features, args.eval_batch_size, args, shuffle=False))
        for index, width in tqdm(order, desc="teacher logits", unit="batch", leave=False):
            out[index] = self(to_tensors(features, index, width, self.device), need_internals=False)[0].cpu().numpy()
        return out


# ----------------------------------------------------------------------------------------------
# Losses of one step
# ----------------------------------------------------------------------------------------------
def step_losses(args, student, teacher, b, layer_map, is_regression):
    """{term: tensor} for this run's mode; 'loss' is their sum."""
    need_internals = args.intermediate_distill
    logits, atts, reps = student(b["input_ids"], b["segment_ids"], b["input_mask"], is_student=need_internals,
                                 output_attentions=need_internals)
    terms = {}
    if args.finetune:
        terms["cls_loss"] = (flow.nn.functional.mse_loss(logits.reshape(-1), b["labels"]) if is_regression
                             else flow.nn.functional.cross_entropy(logits, b["labels"]))
    else:
        t_logits = b.get("teacher_logits")
        if need_internals or t_logits is None:
            t_logits, t_atts, t_reps = teacher(b, need_internals)
        mask = None if args.reference_mode else b["input_mask"]
        if args.intermediate_distill:
            terms["att_loss"] = distillation.att_loss(atts, t_atts, layer_map, mask)
            terms["rep_loss"] = distillation.rep_loss(reps, t_reps, layer_map, mask)
        if args.pred_distill:
            terms["cls_loss"] = distillation.pred_loss(logits, t_logits, args.temperature, b["labels"], is_regression)
    loss = 0.0
    for v in terms.values():
        loss = loss + v
    terms["loss"] = loss
    return terms


# ----------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------
def predict(model, features, args, device):
    """Logits for every example, and the examples/s of inference (no scores, fused attention)."""
    model.eval()
    out = np.zeros((len(features), model.num_labels), dtype=np.float32)
    start = time.perf_counter()
    with flow.no_grad():
        for index, width in batches(features, args.eval_batch_size, args, shuffle=False):
            b = to_tensors(features, index, width, device)
            out[index] = model(b["input_ids"], b["segment_ids"], b["input_mask"],
                               output_attentions=False)[0].float().cpu().numpy()
    return out, len(features) / max(time.perf_counter() - start, 1e-9)


def evaluate(args, model, features, device, teacher=None, layer_map=None):
    """The task's metrics (stage 1: the dev intermediate losses instead: the classifier is untrained)."""
    processor = glue.get_processor(args.task_name)
    if args.intermediate_distill and not args.pred_distill:
        model.eval()
        sums, n = {}, 0
        with flow.no_grad():
            for index, width in batches(features, args.eval_batch_size, args, shuffle=False):
                terms = step_losses(args, model, teacher, to_tensors(features, index, width, device),
                                    layer_map, processor.is_regression)
                for k, v in terms.items():
                    sums[k] = sums.get(k, 0.0) + float(v) * len(index)
                n += len(index)
        model.train()
        return {f"dev_{k}": v / n for k, v in sums.items()}
    logits, speed = predict(model, features, args, device)
    model.train()
    preds = logits if processor.is_regression else logits.argmax(-1)
    return dict(glue.compute_metrics(args.task_name, preds, features.label_ids), inference_examples_per_s=speed)


def results_json(args, model, features, device):
    """The original's keys (accuracy, MCC, precision, recall, f_1, modelSize MB, reasoningTime
    examples/s) plus the task's own metrics."""
    processor = glue.get_processor(args.task_name)
    logits, speed = predict(model, features, args, device)
    names = ["pearson", "spearman", "corr"] if processor.is_regression else ["acc", "mcc", "precision", "recall", "f1"]
    preds = logits if processor.is_regression else logits.argmax(-1)
    m = glue.compute_metrics(args.task_name, preds, features.label_ids, names=names)
    m.update(glue.compute_metrics(args.task_name, preds, features.label_ids))
    params = modeling.count_parameters(model)
    renamed = {"acc": "accuracy", "mcc": "MCC", "f1": "f_1"}
    out = {renamed.get(k, k): round(v, 6) for k, v in m.items()}
    out.update(task=processor.task, best_metric=glue.best_metric_name(args.task_name),
               num_examples=len(features), parameters=params, modelSize=round(params * 4 / 2 ** 20, 2),
               reasoningTime=round(speed, 1), backend=backend.name(), model_dir=os.path.abspath(args.student_model))
    return out


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------
def mode_name(args):
    if args.finetune:
        return "finetune"
    return "+".join(n for n, on in (("intermediate", args.intermediate_distill), ("pred", args.pred_distill)) if on)


def train(args, teacher_model, student, train_data, dev, device):
    processor = glue.get_processor(args.task_name)
    teacher = Teacher(teacher_model, args, processor, device) if teacher_model is not None else None
    layer_map = distillation.parse_layer_map(args.layer_map, teacher_model.config.num_hidden_layers,
                                             student.config.num_hidden_layers) if teacher else None
    steps_per_epoch = len(glue.batch_order(train_data.lengths, args.train_batch_size))
    total_steps = int(steps_per_epoch * args.num_train_epochs)
    optimizer = training.make_optimizer(student, args.learning_rate, args.weight_decay)
    # the reference trains stage 1 at a constant rate, stage 2 and fine-tuning with linear warm-up
    kind = "constant" if args.intermediate_distill and not args.pred_distill else "linear"
    scheduler = training.make_schedule(optimizer, total_steps, args.warmup_proportion, kind)
    state = {"mode": mode_name(args), "epoch": 0, "step_in_epoch": 0, "global_step": 0, "best": None}
    resume_dir = os.path.join(args.output_dir, RESUME_DIR)
    log = training.TrainLog(args.output_dir)
    if args.resume and os.path.isdir(resume_dir):
        state = training.load_checkpoint(resume_dir, student, optimizer, scheduler)
        if state["mode"] != mode_name(args):
            raise ValueError(f"{resume_dir} holds a {state['mode']} run; this is {mode_name(args)}")
        log.truncate_after(state["global_step"])
        print(f"resuming at epoch {state['epoch']}, step {state['global_step']}")
    lap = time.perf_counter()  # train_seconds (in the log): teacher logits, training, evaluation; across resumes
    teacher_logits = None
    if args.pred_distill and not args.intermediate_distill and not args.reference_mode:
        teacher_logits = teacher.all_logits(train_data, args)

    def checkpoint_now(metrics):
        """Best model (stage 2, fine-tuning) or last model (stage 1) into OUTPUT_DIR; resume state."""
        key = None if not metrics else glue.best_metric_name(args.task_name)
        improved = key is None or state["best"] is None or metrics[key] > state["best"]
        if key is not None and improved:
            state["best"] = metrics[key]
        exclude = ("fit_dense.",) if args.serve_for_online else ()
        if improved:
            training.save_checkpoint(os.path.join(args.output_dir), student, state=dict(state, metrics=metrics),
                                     exclude=exclude)
        if not args.serve_for_online:
            training.save_checkpoint(resume_dir, student, optimizer, scheduler, state=state)
        return improved

    amp = training.MixedPrecision(args.fp16, device)
    student.train()
    eval_every = args.eval_step or steps_per_epoch
    epochs = int(np.ceil(args.num_train_epochs))
    bar = tqdm(total=total_steps, initial=state["global_step"], desc=mode_name(args), unit="step", dynamic_ncols=True)
    seen, started = 0, time.perf_counter()
    while state["global_step"] < total_steps and state["epoch"] < epochs:
        for i, (index, width) in enumerate(batches(train_data, args.train_batch_size, args, epoch=state["epoch"])):
            if i < state["step_in_epoch"]:
                continue
            if state["global_step"] >= total_steps:
                break
            b = to_tensors(train_data, index, width, device, teacher_logits)
            with amp.autocast():
                terms = step_losses(args, student, teacher, b, layer_map, processor.is_regression)
            values = training.check_finite(state["global_step"] + 1, terms)
            optimizer.zero_grad()
            amp.backward_and_step(terms["loss"], student, optimizer)
            scheduler.step()
            state["global_step"] += 1
            state["step_in_epoch"] = i + 1
            seen += len(index)
            speed = seen / (time.perf_counter() - started)
            bar.update(1)
            bar.set_postfix({**{k: f"{v:.4g}" for k, v in values.items()}, "ex/s": f"{speed:.0f}"})
            if state["global_step"] % eval_every == 0 or state["global_step"] == total_steps:
                metrics = evaluate(args, student, dev, device, teacher, layer_map)
                improved = checkpoint_now(metrics if "dev_loss" not in metrics else None)
                state["train_seconds"] = state.get("train_seconds", 0.0) + time.perf_counter() - lap
                lap = time.perf_counter()
                log.append(step=state["global_step"], epoch=state["epoch"], lr=scheduler.get_last_lr()[0],
                           train_seconds=round(state["train_seconds"], 1), **values, examples_per_s=round(speed, 1),
                           **{k if k.startswith("dev_") else f"dev_{k}": v for k, v in metrics.items()})
                log.plot()
                shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
                bar.write(f"step {state['global_step']}: {shown}" + (" (saved)" if improved else ""))
            if args.debug_kill_at_step and state["global_step"] == args.debug_kill_at_step:
                os.kill(os.getpid(), 9)
        else:
            state["epoch"] += 1
            state["step_in_epoch"] = 0
    bar.close()
    if args.serve_for_online and os.path.isdir(resume_dir):
        import shutil
        shutil.rmtree(resume_dir)
    return state


def main(argv=None):
    args = parse_args(argv)
    training.set_seed(args.seed)
    device = backend.device(args.gpu)
    processor = glue.get_processor(args.task_name)
    tokenizer = glue.tokenizer_from_dir(args.student_model)
    if args.do_eval:
        dev = glue.load_features(args.data_dir, args.task_name, "dev", tokenizer, args.max_seq_length)
        model = modeling.TinyBertForSequenceClassification.from_pretrained(
            args.student_model, num_labels=processor.num_labels, fit_size=None).to(device)
        label_permutation(model, processor, "model", allow_remap=False)
        return write_results(args, model, dev, device)
    training.prepare_output_dir(args.output_dir, args.overwrite, args.resume)
    teacher, student = load_models(args, processor, device)
    train_data, dev = load_data(args, processor, tokenizer)
    print(f"{mode_name(args)}: {len(train_data)} training examples, {len(dev)} dev, "
          f"lr {args.learning_rate}, {args.num_train_epochs} epochs, backend {backend.name()} on {device}")
    state = train(args, teacher, student, train_data, dev, device)
    if args.pred_distill or args.finetune:
        best = modeling.TinyBertForSequenceClassification.from_pretrained(
            args.output_dir, num_labels=processor.num_labels, fit_size=None,
            verbose=False).to(device)
        args.student_model = args.output_dir
        write_results(args, best, dev, device)
    print(f"done: {state['global_step']} steps; model in {args.output_dir}")
    return state


def write_results(args, model, dev, device):
    results = results_json(args, model, dev, device)
    os.makedirs(args.output_dir, exist_ok=True)
    path = os.path.join(args.output_dir, RESULTS_NAME)
    checkpoint.write_text_atomic(path, json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print(f"wrote {path}")
    return results


if __name__ == "__main__":
    sys.exit(0 if main() is not None else 1)
