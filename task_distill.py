"""Task-specific distillation (TinyBERT's second stage), teacher fine-tuning and evaluation on GLUE.

    stage 1  --intermediate_distill   att_loss + rep_loss against a fine-tuned teacher  -> TMP_STUDENT_DIR
    stage 2  --pred_distill           soft cross-entropy against the teacher's logits    -> STUDENT_DIR
    both     --intermediate_distill --pred_distill   in one run (what the original OneFlow script did)
    --finetune    train --student_model on the gold labels alone (teacher fine-tuning; hard-label baselines)
    --do_eval     evaluate --student_model (a model directory or an .onnx file) on dev: results_eval.json

Every mode trains through training.fit (one loop for every stage). Differences from the reference
implementation (`Recipe`; bench/bench_task_distill.py measures what they buy):
- batches are padded to their longest sequence and grouped by length (the reference pads everything
  to max_seq_length); the intermediate losses then average over real tokens only (distillation.py);
- the teacher runs in eval mode (no dropout) under no-grad, and in prediction distillation its
  logits are computed once per example and reused every epoch (the reference reruns it every step,
  with dropout on);
- soft cross-entropy sums over labels and averages over the batch (the reference averages over
  labels too: its loss, and so its gradient before clipping, is num_labels times smaller);
- a regression task's (STS-B) prediction distillation learns the teacher's score, as the paper
  does; the reference code regresses on the gold scores (its authors confirmed the paper's figures
  came from the teacher's, huawei-noah/Pretrained-Language-Model#128);
- `--reference_mode` turns all of these back.
"""
import argparse
import dataclasses
import enum
import functools
import hashlib
import os
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

import backend
import checkpoint
import cli
import distillation
import glue
import inference
import modeling
import teachers
import training
import vocabulary

flow = backend.framework()

# The original's per-task defaults: (learning rate, epochs, weight decay) of prediction distillation.
TASK_DEFAULTS = {
    "sst-2": (2e-5, 4, 1e-4), "cola": (7e-5, 100, 1e-4), "mrpc": (2e-5, 30, 1e-3), "sts-b": (2e-5, 30, 1e-4),
    "qqp": (2e-5, 4, 1e-4), "mnli": (2e-5, 4, 1e-4), "mnli-mm": (2e-5, 4, 1e-4), "qnli": (2e-5, 4, 1e-4),
    "rte": (3e-5, 30, 1e-4), "wnli": (2e-5, 30, 1e-4),
}
STAGE1_LR = 5e-5  # the reference's intermediate-layer rate; its epochs default stays the task's


class Mode(enum.Enum):
    """What a run does, decided once from the command line."""
    FINETUNE = "finetune"
    STAGE1 = "intermediate"
    STAGE2 = "pred"
    BOTH = "intermediate+pred"
    EVAL = "eval"

    @property
    def intermediate(self):
        """att_loss + rep_loss on the teacher's attention scores and hidden states."""
        return self in (Mode.STAGE1, Mode.BOTH)

    @property
    def pred(self):
        """Soft cross-entropy on the teacher's logits."""
        return self in (Mode.STAGE2, Mode.BOTH)

    @property
    def needs_teacher(self):
        return self.intermediate or self.pred

    @property
    def scored(self):
        """A trained classifier, scored on the task's metric; stage 1 has none and reports its losses."""
        return self is not Mode.STAGE1


class Selection(enum.Enum):
    """Which checkpoint a training run keeps (stage 1 always keeps its last: no classifier to score)."""
    DEV = "dev"
    LAST = "last"


@dataclass(frozen=True)
class Recipe:
    """Where this project departs from the reference implementation (see the module docstring)."""
    dynamic_padding: bool = True        # length-grouped batches padded to their longest row
    masked_means: bool = True           # intermediate losses average over real tokens only
    teacher_logits_once: bool = True    # stage 2 runs the teacher once per example, not every step
    soft_ce_over_labels: str = "sum"    # soft cross-entropy over labels: "sum" (ours) or "mean" (reference)
    regression_target: str = "teacher"  # STS-B's stage 2 learns the teacher's score (paper) or the gold one (reference code)


OURS = Recipe()
REFERENCE = Recipe(dynamic_padding=False, masked_means=False, teacher_logits_once=False, soft_ce_over_labels="mean",
                   regression_target="gold")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--task_name", required=True, help="GLUE task: " + ", ".join(glue.PROCESSORS))
    p.add_argument("--data_dir", required=True, help="GLUE task directory (tsv) or OFRecord task directory")
    p.add_argument("--train_data", help="training split location when not in --data_dir (tsv dir or OFRecord split dir)")
    p.add_argument("--student_model", "--model", dest="student_model", required=True,
                   help="model directory to train or evaluate (general TinyBERT, stage-1 student, or BERT to fine-tune); "
                        "--do_eval/--do_predict also take an .onnx file from export_onnx.py")
    p.add_argument("--teacher_model", help="fine-tuned teacher model directory (distillation): this project's BERT, or "
                                           "any encoder transformers' AutoModelForSequenceClassification loads "
                                           "(RoBERTa, XLM-R, ELECTRA, DeBERTa, ... on --backend torch)")
    p.add_argument("--teacher_through", choices=["auto", *teachers.TEACHER_PATHS], default="auto",
                   help="how a BERT teacher is read: auto (default) takes modeling.py for a BERT directory and "
                        "transformers for any other; transformers reads a BERT through transformers too (to check "
                        "one path against the other, --backend torch)")
    p.add_argument("--output_dir", required=True)
    mode = p.add_argument_group("what to run")
    mode.add_argument("--intermediate_distill", action="store_true", help="stage 1: att_loss + rep_loss")
    mode.add_argument("--pred_distill", action="store_true", help="stage 2: soft cross-entropy on logits")
    mode.add_argument("--finetune", action="store_true", help="train on gold labels, no teacher")
    mode.add_argument("--do_eval", action="store_true", help="only evaluate --student_model on dev")
    mode.add_argument("--do_predict", action="store_true",
                      help="write the GLUE benchmark's submission files (SST-2.tsv, MNLI-m.tsv, ...) for the task's "
                           "test split into OUTPUT_DIR (with --do_eval, or alone)")
    p.add_argument("--aug_train", action="store_true", help="train on the train_aug split (data augmentation)")
    p.add_argument("--max_seq_length", type=int,
                   help="default: the length of OFRecord input, else the task's (64 single sentences, 128 pairs)")
    p.add_argument("--train_batch_size", type=int, default=32, help="examples per micro-batch (per process)")
    p.add_argument("--gradient_accumulation_steps", type=int, default=1,
                   help="micro-batches per weight update: the batch of one update is train_batch_size x this")
    p.add_argument("--eval_batch_size", type=int, default=64)
    p.add_argument("--learning_rate", type=float, help=f"default: the task's (prediction) or {STAGE1_LR} (intermediate)")
    p.add_argument("--num_train_epochs", type=float, help="default: the task's")
    p.add_argument("--weight_decay", type=float, help="default: the task's")
    p.add_argument("--warmup_proportion", type=float, default=0.1)
    p.add_argument("--temperature", type=float, default=1.0, help="softmax temperature of pred_distill")
    p.add_argument("--layer_map", default="", help="teacher layer for each student layer, e.g. 2,4,6 (default uniform)")
    p.add_argument("--att_loss", choices=["auto", *distillation.ATT_LOSSES], default="auto",
                   help="stage 1's attention term: 'mse' on pre-softmax scores head by head (the paper's), 'kl' on "
                        "head-averaged attention distributions (any head count, any teacher); 'auto' takes mse "
                        "where the teacher allows it")
    p.add_argument("--max_train_examples", type=int, help="train on a seeded random subset of this size")
    p.add_argument("--eval_step", type=int, default=0, help="evaluate every N steps (0: once per epoch)")
    p.add_argument("--model_selection", choices=[s.value for s in Selection], default=Selection.DEV.value,
                   help="which checkpoint a training run keeps: 'dev', the best on dev (the reference's: dev then "
                        "both selects and reports it); 'last', the one at the end of a fixed budget (dev only reports)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--teacher_dtype", choices=["fp32", "bf16"], default="fp32",
                   help="run the teacher's forward pass in bfloat16 (autocast)")
    p.add_argument("--fp16", action="store_true", help="mixed precision for the student (CUDA only)")
    p.add_argument("--gpu", action=argparse.BooleanOptionalAction, default=True, help="use CUDA when available")
    p.add_argument("--reference_mode", action="store_true",
                   help="the reference's choices: pad to max_seq_length, unmasked loss means, teacher every step, "
                        "soft cross-entropy averaged over labels, STS-B's stage 2 on the gold scores")
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT_DIR/resume")
    p.add_argument("--overwrite", action="store_true", help="allow a non-empty output directory")
    p.add_argument("--serve_for_online", action="store_true",
                   help="keep only what inference needs in OUTPUT_DIR (no fit_dense, no resume state)")
    p.add_argument("--allow_untrained_teacher", action="store_true",
                   help="accept a teacher whose classifier was never fine-tuned")
    p.add_argument("--remap_teacher_labels", action="store_true",
                   help="reorder the teacher's logits to the task's label order when its id2label differs")
    backend.add_argument(p)
    args = p.parse_args(argv)
    return _check_args(p, args)


def _check_args(parser, args):
    chosen = [args.intermediate_distill or args.pred_distill, args.finetune, args.do_eval or args.do_predict]
    if sum(chosen) != 1:
        parser.error("choose one of: --intermediate_distill and/or --pred_distill, --finetune, "
                     "--do_eval and/or --do_predict")
    if args.finetune:
        args.mode = Mode.FINETUNE
    elif args.do_eval or args.do_predict:
        args.mode = Mode.EVAL
    else:
        args.mode = {(True, False): Mode.STAGE1, (False, True): Mode.STAGE2,
                     (True, True): Mode.BOTH}[args.intermediate_distill, args.pred_distill]
    if args.mode.needs_teacher and not args.teacher_model:
        parser.error("distillation needs --teacher_model")
    for flag in ("train_batch_size", "gradient_accumulation_steps", "eval_batch_size", "max_seq_length"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            parser.error(f"--{flag} must be at least 1, got {getattr(args, flag)}")
    task = glue.get_processor(args.task_name).task
    lr, epochs, wd = TASK_DEFAULTS[task]
    if args.mode is Mode.STAGE1:
        lr = STAGE1_LR
    args.learning_rate = lr if args.learning_rate is None else args.learning_rate  # 0 holds the student still
    args.num_train_epochs = epochs if args.num_train_epochs is None else args.num_train_epochs
    if args.learning_rate < 0 or args.num_train_epochs <= 0:
        parser.error(f"--learning_rate must be at least 0 and --num_train_epochs above 0, got {args.learning_rate} "
                     f"and {args.num_train_epochs}")
    args.weight_decay = wd if args.weight_decay is None else args.weight_decay
    args.recipe = REFERENCE if args.reference_mode else OURS
    args.selection = Selection(args.model_selection)
    args.backend = backend.check_bound(args.backend, flow)
    return args


# ----------------------------------------------------------------------------------------------
# Models and the checks that catch the reference users' commonest mistakes before any training
# ----------------------------------------------------------------------------------------------
def load_models(student_dir, teacher_dir, processor, device, allow_untrained_teacher=False, teacher_through="auto",
                trimmed=None):
    """(teacher or None, student) on `device`; the student records the task's label order. `trimmed`:
    the student's map to the teacher's ids (checkpoint.read_teacher_ids), None for the teacher's vocabulary."""
    teacher = None
    if teacher_dir:
        teacher = teachers.load_teacher(teacher_dir, processor.num_labels, device, modeling, allow_untrained_teacher,
                                        through=None if teacher_through == "auto" else teacher_through,
                                        task=processor.task)
        print(f"teacher {teacher_dir}: " + (f"a {teacher.model_type} read through transformers' {teacher.auto_class}"
                                            if isinstance(teacher, teachers.AutoClassifier) else "read by modeling.py"))
    student = teachers.load_classifier(student_dir, processor.num_labels, modeling,
                                       fit_size=teacher.config.hidden_size if teacher else None,
                                       trainable_only_alone=teacher is not None)
    if teacher is not None:
        check_same_vocabulary(teacher_dir, teacher.config, student_dir, student.config, trimmed)
    inference.label_permutation(student, processor, "student", allow_remap=False)
    if not processor.is_regression:  # every saved model records its label order
        student.config.extra["id2label"] = {str(i): str(label) for i, label in enumerate(processor.labels)}
        student.config.extra["label2id"] = {str(label): i for i, label in enumerate(processor.labels)}
    return teacher, student.to(device)


def check_same_vocabulary(teacher_dir, teacher_config, student_dir, student_config, trimmed=None):
    """The student reads the teacher's vocabulary, or (`trimmed`: checkpoint.read_teacher_ids) a part of
    it whose map leads each of its tokens to the teacher's id of that token."""
    if trimmed is not None:
        vocabulary.check_student(teacher_dir, teacher_config.vocab_size, student_dir, student_config.vocab_size,
                                 trimmed[0])
        return
    if teacher_config.vocab_size != student_config.vocab_size:
        raise ValueError(f"teacher {teacher_dir} and student {student_dir} have different vocabularies "
                         f"(vocab_size {teacher_config.vocab_size} vs {student_config.vocab_size}): "
                         "the student must use the teacher's vocab.txt")
    tv, sv = checkpoint.find_vocab(teacher_dir), checkpoint.find_vocab(student_dir)
    if tv and sv and open(tv, "rb").read() != open(sv, "rb").read():
        raise ValueError(f"vocab.txt of teacher {teacher_dir} and student {student_dir} differ")


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------
def load_data(data_dir, train_data, task, split, tokenizer, max_seq_length, max_train_examples=None, seed=0):
    """(train features of `split`, optionally a seeded subset; dev features)."""
    train = glue.load_features(train_data or data_dir, task, split, tokenizer, max_seq_length)
    if max_train_examples and max_train_examples < len(train):
        rng = np.random.default_rng(seed)
        train = train.select(np.sort(rng.choice(len(train), max_train_examples, replace=False)))
    dev = glue.load_features(data_dir, task, "dev", tokenizer, max_seq_length)
    return train, dev


def batches(features, batch_size, recipe=OURS, seed=0, epoch=0, shuffle=True, min_rows=1):
    """[(rows, width)] of one epoch: length-grouped rows padded to their longest (ours), or random
    batches padded to max_seq_length (the reference's). A last batch of fewer than `min_rows` rows
    (too few to give every process a piece) is left out."""
    order = glue.batch_order(features.lengths, batch_size, shuffle=shuffle, seed=seed, epoch=epoch,
                             group_by_length=recipe.dynamic_padding)
    return [(index, width(features, index, recipe)) for index in order if len(index) >= min_rows]


def width(features, rows, recipe=OURS):
    return int(features.lengths[rows].max()) if recipe.dynamic_padding else features.max_seq_length


def to_tensors(features, index, width, device, teacher_logits=None):
    """A batch under the keys of every stage's batches (general_distill.py's too): the models' argument
    names, not the OFRecord column names glue.Features keeps."""
    cut = lambda a: flow.tensor(a[index, :width].astype(np.int64), device=device)
    out = {"input_ids": cut(features.input_ids), "token_type_ids": cut(features.segment_ids),
           "attention_mask": cut(features.input_mask)}
    labels = features.label_ids[index]
    out["labels"] = flow.tensor(labels, dtype=flow.float32 if labels.dtype.kind == "f" else flow.int64, device=device)
    if teacher_logits is not None:
        out["teacher_logits"] = flow.tensor(teacher_logits[index], device=device)
    return out


def training_epochs(features, batch_size, recipe, seed, device, teacher_logits=None, world=1, rank=0, grad_accum=1):
    """fit()'s batches(epoch): this rank's micro-batches of batch_size rows (its pieces of global
    batches of batch_size x world x grad_accum rows), as tensors made when fit() asks."""
    pieces = world * grad_accum

    def epoch_of(epoch):
        order = batches(features, batch_size * pieces, recipe, seed=seed, epoch=epoch, min_rows=pieces)
        return training.rank_epoch([rows for rows, _ in order], lambda rows: to_tensors(
            features, rows, width(features, rows, recipe), device, teacher_logits), world, rank, grad_accum)
    return epoch_of


# ----------------------------------------------------------------------------------------------
# Teacher
# ----------------------------------------------------------------------------------------------
class Teacher:
    """The teacher's forward pass: no grad, eval mode, optional bf16 autocast, label reordering; for a
    student on a trimmed vocabulary, the batch's (student) ids turned into the teacher's ids first."""

    def __init__(self, model, processor, device, dtype="fp32", remap_labels=False, teacher_ids=None):
        self.model, self.device = model, device
        self.autocast = dtype == "bf16"
        self.perm = inference.label_permutation(model, processor, "teacher", remap_labels)
        self.token_map = None if teacher_ids is None else flow.tensor(np.asarray(teacher_ids, np.int64), device=device)

    def __call__(self, b, need_internals=True):
        if self.token_map is not None:
            b = dict(b, input_ids=self.token_map[b["input_ids"]])
        with flow.no_grad():
            if self.autocast:
                with flow.autocast(self.device.split(":")[0], dtype=flow.bfloat16):
                    logits, atts, reps = self.model(b["input_ids"], b["token_type_ids"], b["attention_mask"],
                                                    output_attentions=need_internals)
                logits = logits.float()
                atts = [a.float() for a in atts] if need_internals else atts
                reps = [r.float() for r in reps]
            else:
                logits, atts, reps = self.model(b["input_ids"], b["token_type_ids"], b["attention_mask"],
                                                output_attentions=need_internals)
        if self.perm is not None:
            logits = logits[:, flow.tensor(self.perm, device=logits.device)]
        return logits, atts, reps

    def all_logits(self, features, batch_size, recipe, dist=None):
        """Logits for every example, once (prediction distillation reuses them every epoch); in a
        data-parallel job each rank computes every world-th example and they share the results."""
        n, world, rank = len(features), dist.world if dist else 1, dist.rank if dist else 0
        mine = np.arange(rank, n, world)
        share = features.select(mine) if world > 1 else features
        out = np.zeros((-(-n // world), self.model.num_labels), dtype=np.float32)
        order = batches(share, batch_size, recipe, shuffle=False)
        for index, cols in tqdm(order, desc="teacher logits", unit="batch", leave=False, disable=rank != 0 or None):
            out[index] = self(to_tensors(share, index, cols, self.device), need_internals=False)[0].cpu().numpy()
        if world == 1:
            return out
        every = np.zeros((n, self.model.num_labels), dtype=np.float32)
        for r, part in enumerate(dist.all_gather(out)):
            rows = np.arange(r, n, world)
            every[rows] = part[:len(rows)]
        return every


# ----------------------------------------------------------------------------------------------
# Losses of one step
# ----------------------------------------------------------------------------------------------
@dataclass
class Losses:
    """loss_fn of fit(): the mode's terms for one batch ({term: tensor}, 'loss' their sum)."""
    mode: Mode
    student: object
    teacher: object = None
    matching: distillation.Matching = None
    is_regression: bool = False
    temperature: float = 1.0
    recipe: Recipe = OURS

    def __call__(self, b):
        internals = self.mode.intermediate
        logits, atts, reps = self.student(b["input_ids"], b["token_type_ids"], b["attention_mask"], is_student=internals,
                                          output_attentions=internals)
        terms = {}
        if self.mode is Mode.FINETUNE:
            terms["cls_loss"] = (flow.nn.functional.mse_loss(logits.reshape(-1), b["labels"]) if self.is_regression
                                 else flow.nn.functional.cross_entropy(logits, b["labels"]))
        else:
            t_logits = b.get("teacher_logits")
            if internals or t_logits is None:
                t_logits, t_atts, t_reps = self.teacher(b, internals)
            mask = b["attention_mask"] if self.recipe.masked_means else None
            if internals:
                terms["att_loss"] = self.matching.att_term(atts, t_atts, mask)
                terms["rep_loss"] = distillation.rep_loss(reps, t_reps, self.matching.layer_map, mask)
            if self.mode.pred:
                terms["cls_loss"] = distillation.pred_loss(logits, t_logits, self.temperature, b["labels"],
                                                           self.is_regression, self.recipe.soft_ce_over_labels,
                                                           self.recipe.regression_target)
        loss = 0.0
        for v in terms.values():
            loss = loss + v
        terms["loss"] = loss
        return terms


# ----------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------
def predict(model, features, batch_size, device):
    """Logits for every example (inference.py's batched, fused-attention path), and examples/s."""
    return inference.timed_logits(inference.ModelRunner(model, flow, device), features, batch_size)


def evaluate(task, model, features, batch_size, device, losses=None):
    """The task's metrics on `features`; with `losses` (stage 1, whose classifier is untrained) the
    mean of its loss terms instead, as dev_<term>."""
    processor = glue.get_processor(task)
    if losses is not None:
        model.eval()
        sums, n = {}, 0
        with flow.no_grad():
            for index, cols in batches(features, batch_size, losses.recipe, shuffle=False):
                for k, v in losses(to_tensors(features, index, cols, device)).items():
                    sums[k] = sums.get(k, 0.0) + float(v) * len(index)
                n += len(index)
        model.train()
        return {f"dev_{k}": v / n for k, v in sums.items()}
    logits, speed = predict(model, features, batch_size, device)
    model.train()
    preds = logits if processor.is_regression else logits.argmax(-1)
    return dict(glue.compute_metrics(task, preds, features.label_ids), inference_examples_per_s=speed)


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------
def make_teacher(model, student, processor, device, dtype="fp32", remap_labels=False, layer_map_text="",
                 att_loss="auto", teacher_ids=None):
    """The Teacher and the Matching of its layers and attention to the student's."""
    teacher = Teacher(model, processor, device, dtype, remap_labels, teacher_ids)
    return teacher, distillation.match_layers(model.config, student.config, layer_map_text, att_loss,
                                              getattr(model, "scores", True))


def make_plan(global_batches, grad_accum, epochs, eval_step):
    """Steps of the run (one per global batch; fractional epochs allowed) and the evaluation cadence
    (0: once per epoch)."""
    return training.Plan(total_steps=int(global_batches * epochs), eval_every=eval_step or global_batches,
                         grad_accum=grad_accum)


def run_record(mode, task, student_model, teacher_model, data_path, split, train_data, learning_rate, epochs,
               processes, batch):
    """What a run is made from, kept with it: --resume continues only a run made from the same models
    (path and content), data (where, which split, and the examples themselves) and settings."""
    def model(path):
        return {"path": os.path.abspath(path), "sha256": checkpoint.model_fingerprint(path)} if path else None
    examples = hashlib.sha256()
    for array in (train_data.input_ids, train_data.segment_ids, train_data.label_ids):
        examples.update(np.ascontiguousarray(array).tobytes())
    return {"mode": mode.value, "task": glue.get_processor(task).task, "student_model": model(student_model),
            "teacher_model": model(teacher_model) if mode.needs_teacher else None,
            "data": {"path": os.path.abspath(data_path), "split": split, "examples": len(train_data),
                     "sha256": examples.hexdigest()},
            "learning_rate": learning_rate, "epochs": epochs, "processes": processes, "batch": batch}


def main(argv=None):
    args = parse_args(argv)
    training.set_seed(args.seed)
    dist, device = backend.distributed(args.gpu)
    precision = training.MixedPrecision(args.fp16, device)  # refuses --fp16 where it cannot run, before any loading
    training.set_seed(args.seed + dist.rank)  # each rank its own dropout; the data order is seeded apart
    processor = glue.get_processor(args.task_name)
    mode, recipe = args.mode, args.recipe
    keep_best = mode.scored and args.selection is Selection.DEV
    if mode is Mode.EVAL:
        evaluated = inference.load_evaluated(args.student_model, processor, device, args.backend)
        results = {}
        if args.do_eval:
            dev = glue.load_features(args.data_dir, args.task_name, "dev", evaluated.tokenizer, args.max_seq_length)
            results = inference.write_results(args.output_dir, inference.results_json(args.task_name, evaluated, args.student_model,
                                                                  dev, args.eval_batch_size))
        if args.do_predict:
            paths = glue.write_submissions(args.task_name, args.data_dir, args.output_dir, lambda examples: (
                inference.predict_examples(evaluated.runner, examples, evaluated.tokenizer,
                                           args.max_seq_length or processor.default_max_seq_length,
                                           args.eval_batch_size)[0]))
            print("wrote " + ", ".join(paths))
        return results
    tokenizer = checkpoint.load_tokenizer(args.student_model)
    training.prepare_output_dir(args.output_dir, args.overwrite, args.resume)
    trimmed = checkpoint.read_teacher_ids(args.student_model)
    teacher_model, student = load_models(args.student_model, args.teacher_model if mode.needs_teacher else None,
                                         processor, device, args.allow_untrained_teacher, args.teacher_through, trimmed)
    split = "train_aug" if args.aug_train else "train"
    train_data, dev = load_data(args.data_dir, args.train_data, args.task_name, split, tokenizer, args.max_seq_length,
                                args.max_train_examples, args.seed)
    accum, pieces = args.gradient_accumulation_steps, dist.world * args.gradient_accumulation_steps
    if dist.is_main:
        print(f"{mode.value}: {len(train_data)} training examples, {len(dev)} dev, lr {args.learning_rate}, "
              f"{args.num_train_epochs} epochs, batch {args.train_batch_size} x {dist.world} processes x {accum} "
              f"accumulated = {args.train_batch_size * pieces}, backend {args.backend} on {device}")

    teacher = matching = teacher_logits = None
    if mode.needs_teacher:
        teacher, matching = make_teacher(teacher_model, student, processor, device, args.teacher_dtype,
                                         args.remap_teacher_labels, args.layer_map, args.att_loss,
                                         None if trimmed is None else trimmed[0])
        if mode.intermediate and dist.is_main:
            print(matching.describe())
    if mode is Mode.STAGE2 and recipe.teacher_logits_once:
        teacher_logits = teacher.all_logits(train_data, args.eval_batch_size, recipe, dist)
    losses = Losses(mode, dist.wrap(student), teacher, matching, processor.is_regression, args.temperature, recipe)
    plan = make_plan(len(batches(train_data, args.train_batch_size * pieces, recipe, min_rows=pieces)), accum,
                     args.num_train_epochs, args.eval_step)
    optimizer = training.make_optimizer(student, args.learning_rate, args.weight_decay)
    # the reference trains stage 1 at a constant rate, stage 2 and fine-tuning with linear warm-up
    scheduler = training.make_schedule(optimizer, plan.total_steps, args.warmup_proportion,
                                       "constant" if mode is Mode.STAGE1 else "linear")
    run_info = run_record(mode, args.task_name, args.student_model, args.teacher_model, args.train_data or args.data_dir,
                          split, train_data, args.learning_rate, args.num_train_epochs, dist.world,
                          args.train_batch_size * pieces)
    if mode.scored and not keep_best:  # recorded only when not the default
        run_info["model_selection"] = args.selection.value
    student.train()
    state = training.fit(
        student, training_epochs(train_data, args.train_batch_size, recipe, args.seed, device, teacher_logits,
                                 dist.world, dist.rank, accum),
        losses, optimizer, scheduler, plan,
        # --serve_for_online: the kept model without fit_dense (only distillation uses it), and no resume state
        training.Saving(args.output_dir, exclude=("fit_dense.",) if args.serve_for_online else (),
                        keep_resume=not args.serve_for_online),
        precision=precision,
        evaluation=training.Evaluation(
            functools.partial(evaluate, args.task_name, student, dev, args.eval_batch_size, device,
                              None if mode.scored else dataclasses.replace(losses, student=student)),
            best_metric=glue.best_metric_name(args.task_name) if keep_best else None),
        resume=args.resume, run_info=run_info, desc=mode.value, dist=dist)
    if not dist.is_main or state.finished_before:
        return state
    if mode.scored:
        best = teachers.load_classifier(args.output_dir, processor.num_labels, modeling, fit_size=None,
                                        verbose=False).to(device)
        results = inference.results_json(args.task_name, inference.evaluated_model(best, tokenizer, flow, device), args.output_dir, dev,
                               args.eval_batch_size)
        inference.write_results(args.output_dir, dict(results, model_selection=args.selection.value))
    print(f"done: {state.step} steps; model in {args.output_dir}")
    return state


if __name__ == "__main__":
    cli.run(main, training.NonFiniteLoss)
