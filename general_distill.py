"""General distillation, TinyBERT's first stage: a pretrained BERT teaches a small student its
attention scores and hidden states on a large corpus.

    python general_distill.py --pregenerated_data data/pretrain_data_json/ --teacher_model models/bert-base-uncased \
        --student_model 4L-312D --output_dir models/general_tinybert_4L_312D/ [--backend torch]

The loss is att_loss + rep_loss (distillation.py, shared with task distillation) under uniform
layer mapping (or --layer_map); the student's hidden states, embeddings included, reach the
teacher's width through fit_dense. The teacher may also be any encoder transformers' AutoModel loads
(a RoBERTa, XLM-R, ELECTRA ... masked LM, on --backend torch; teachers.AutoEncoder), pregenerated with
its own tokenizer; its attention is compared as in task distillation (--att_loss: the paper's MSE on
scores where the teacher gives them with the student's head count, else the KL of head-averaged
attention distributions). The data are pregenerate_training_data.py's epoch_N.json files,
one per training epoch (cycling when fewer), each read in a seeded random order through an index of
line offsets, never whole. The output directory is a model directory (config.json, the teacher's
vocab.txt or tokenizer files, model.safetensors with fit_dense) that task distillation takes as its
student; beside it train_log.csv, curves.png, general_distill_args.json and resume/ (the last
checkpoint: --resume).
"""
import argparse
import json
import os
from array import array
from dataclasses import dataclass

import numpy as np

import backend
import checkpoint
import files
import cli
import distillation
import modeling
import teachers
import training
from checkpoint import KNOWN_MODELS, resolve_model_dir

flow = backend.framework()

# TinyBERT's published students (Jiao et al., 2020): 12 heads, as the BERT-base teacher has.
PRESETS = {
    "4L-312D": dict(num_hidden_layers=4, hidden_size=312, num_attention_heads=12, intermediate_size=1200),
    "6L-768D": dict(num_hidden_layers=6, hidden_size=768, num_attention_heads=12, intermediate_size=3072),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pregenerated_data", default="data/pretrain_data_json",
                   help="directory of epoch_N.json + epoch_N_metrics.json (pregenerate_training_data.py)")
    p.add_argument("--teacher_model", required=True,
                   help=f"pretrained BERT model directory, or one of: {', '.join(KNOWN_MODELS)}; or any encoder "
                        "transformers' AutoModel loads (RoBERTa, XLM-R, ELECTRA ...: --backend torch)")
    p.add_argument("--student_model", default="4L-312D",
                   help=f"a preset ({', '.join(PRESETS)}) or a directory with the student's config.json")
    p.add_argument("--student_layers", type=int, default=None,
                   help="override the student's number of layers (e.g. 3 for a 6-layer teacher)")
    p.add_argument("--continue_train", action="store_true",
                   help="start from the weights in --student_model's directory instead of random ones")
    p.add_argument("--layer_map", default="",
                   help="teacher layer (1..T) for each student layer, e.g. 2,4,6; default: uniform")
    p.add_argument("--att_loss", choices=["auto", *distillation.ATT_LOSSES], default="auto",
                   help="'mse' on pre-softmax scores head by head (the paper's), 'kl' on head-averaged attention "
                        "distributions (any head count, any teacher); 'auto' takes mse where the teacher allows it")
    p.add_argument("--output_dir", default="models/general_tinybert_4L_312D")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty --output_dir")
    p.add_argument("--resume", action="store_true", help="continue from --output_dir/resume")
    p.add_argument("--train_batch_size", type=int, default=32, help="instances per micro-batch (per process)")
    p.add_argument("--gradient_accumulation_steps", type=int, default=1,
                   help="micro-batches per weight update: the batch of one update is train_batch_size x this")
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
    p.add_argument("--gpu", action=argparse.BooleanOptionalAction, default=True,
                   help="use CUDA when available (as task_distill.py); --no-gpu forces the CPU")
    p.add_argument("--no_cuda", dest="gpu", action="store_false", help="the reference's spelling of --no-gpu")
    backend.add_argument(p)
    args = p.parse_args(argv)
    for flag in ("train_batch_size", "gradient_accumulation_steps", "num_train_epochs", "logging_steps",
                 "save_steps"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag} must be at least 1, got {getattr(args, flag)}")
    args.backend = backend.check_bound(args.backend, flow)
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
    """{token: id} of the teacher's vocab.txt, or of its tokenizer.json (a BPE or SentencePiece teacher)."""
    path = checkpoint.find_vocab(model_dir)
    if path is None and checkpoint.tokenizer_files(model_dir):
        return checkpoint.load_tokenizer(model_dir).get_vocab()
    if path is None:
        raise FileNotFoundError(f"{model_dir}: no {checkpoint.VOCAB_NAME} (nor {checkpoint.TOKENIZER_JSON})")
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

    def batches(self, batch_size, seed, device, world=1, rank=0, grad_accum=1):
        """fit()'s Epoch for this rank: global batch g is rows order[g*G:(g+1)*G] of a seeded permutation
        (G = batch_size x world x grad_accum), of which this rank trains on its pieces (rank_pieces),
        read and padded to their longest instance only when fit() asks for them."""
        order = np.random.default_rng(seed).permutation(len(self))
        size = batch_size * world * grad_accum
        count = training.count_batches(len(self), size, world * grad_accum)

        def to_batch(rows):
            with open(self.path, "rb") as f:
                instances = [self.instance(f, int(r)) for r in rows]
            ids, types, mask = (flow.tensor(a, dtype=flow.int64, device=device) for a in pad(instances))
            return {"input_ids": ids, "token_type_ids": types, "attention_mask": mask}
        return training.rank_epoch([order[g * size:(g + 1) * size] for g in range(count)], to_batch,
                                   world, rank, grad_accum)

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
def student_config(student_model, teacher_config, student_layers=None):
    """The student's BertConfig: a preset with the teacher's vocabulary, or a directory's config.json."""
    if student_model in PRESETS:
        # two token types at least: the pregenerated [CLS] A [SEP] B [SEP] marks B with 1 (RoBERTa has one type)
        config = modeling.BertConfig(**PRESETS[student_model], vocab_size=teacher_config.vocab_size,
                                     max_position_embeddings=min(teacher_config.max_position_embeddings, 512),
                                     type_vocab_size=max(2, teacher_config.type_vocab_size),
                                     pad_token_id=teacher_config.pad_token_id)
    else:
        path = checkpoint.find_config(resolve_model_dir(student_model))
        config = modeling.BertConfig.from_json_file(path)
        if config.vocab_size != teacher_config.vocab_size:
            raise ValueError(f"{path}: vocab_size {config.vocab_size}, but the teacher's is "
                             f"{teacher_config.vocab_size}: the student reads the teacher's tokens")
    if student_layers:
        config.num_hidden_layers = student_layers
    return config


def make_student(student_model, teacher_config, resume_dir=None, student_layers=None, continue_train=False):
    """TinyBertForPreTraining (fit_dense to the teacher's width): from the checkpoint when resuming,
    the --student_model directory's weights with --continue_train, or random."""
    fit_size = teacher_config.hidden_size
    if resume_dir:
        return modeling.TinyBertForPreTraining(
            modeling.BertConfig.from_json_file(checkpoint.find_config(resume_dir)), fit_size=fit_size)
    config = student_config(student_model, teacher_config, student_layers)
    if continue_train:
        if student_model in PRESETS:
            raise ValueError(f"--continue_train needs a --student_model directory with weights, not the preset "
                             f"{student_model}")
        student = modeling.TinyBertForPreTraining.from_pretrained(resolve_model_dir(student_model),
                                                                  fit_size=fit_size)
        if student.config.num_hidden_layers != config.num_hidden_layers:
            raise ValueError("--student_layers cannot change a student whose weights are loaded (--continue_train)")
        return student
    return modeling.TinyBertForPreTraining(config, fit_size=fit_size)


class Teacher(modeling.BertModel):
    """The teacher's encoder: its hidden states and attention scores are all general distillation uses,
    so a checkpoint without a pooler (transformers' BertForMaskedLM saves none) is taken as it is."""
    optional_prefixes = ("bert.pooler.",)


def load_teacher(teacher_dir, device):
    """This project's BERT for a BERT directory, else a transformers encoder (teachers.AutoEncoder)."""
    loader = Teacher if teachers.is_bert(teacher_dir) else teachers.AutoEncoder
    with teachers.rng_untouched():  # the student's random start follows the seed alone
        teacher = loader.from_pretrained(teacher_dir).to(device)
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------
@dataclass
class DistillLosses:
    """loss_fn of fit(): att_loss and rep_loss of the student against the teacher on one batch."""
    teacher: object
    student: object
    matching: distillation.Matching

    def __call__(self, b):
        ids, types, mask = b["input_ids"], b["token_type_ids"], b["attention_mask"]
        with flow.no_grad():
            teacher_atts, teacher_reps = teachers.encoder_internals(self.teacher, ids, types, mask)
        student_atts, student_reps = self.student(ids, types, mask)
        att = self.matching.att_term(student_atts, teacher_atts, mask)
        rep = distillation.rep_loss(student_reps, teacher_reps, self.matching.layer_map, mask)
        return {"att_loss": att, "rep_loss": rep, "loss": att + rep}


def pregenerated_epochs(epochs, vocab, batch_size, seed, device, world=1, rank=0, grad_accum=1):
    """fit()'s batches(epoch): training epoch e reads its epoch_N.json in the order seeded by seed + e."""
    def epoch_of(e):
        path, metrics = epochs[e % len(epochs)]
        return PregeneratedEpoch(path, metrics, vocab).batches(batch_size, seed + e, device, world, rank, grad_accum)
    return epoch_of


def check_lengths(epochs, teacher_config, student_config):
    path, metrics = max(epochs, key=lambda e: e[1]["max_seq_len"])
    positions = min(teacher_config.max_position_embeddings, student_config.max_position_embeddings)
    if metrics["max_seq_len"] > positions:
        raise ValueError(f"{path}: instances of up to {metrics['max_seq_len']} tokens, but the models have "
                         f"{positions} positions: pregenerate with --max_seq_len {positions} or less")


def count_steps(epochs, global_batch_size, pieces=1):
    """Optimizer steps of the run: one per global batch."""
    return sum(training.count_batches(metrics["num_training_examples"], global_batch_size, pieces)
               for _, metrics in epochs)


def main(argv=None):
    args = parse_args(argv)
    dist, device = backend.distributed(args.gpu)
    training.set_seed(args.seed + dist.rank)  # each rank its own dropout; the data order is seeded apart
    epochs = find_epochs(args.pregenerated_data, args.num_train_epochs)
    teacher_dir = resolve_model_dir(args.teacher_model)
    vocab = read_vocab(teacher_dir)
    training.prepare_output_dir(args.output_dir, args.overwrite, args.resume)
    resume_dir = os.path.join(args.output_dir, training.RESUME_DIR)
    resuming = args.resume and os.path.isdir(resume_dir)
    teacher = load_teacher(teacher_dir, device)
    student = make_student(args.student_model, teacher.config, resume_dir if resuming else None,
                           args.student_layers, args.continue_train).to(device)
    if checkpoint.find_vocab(teacher_dir) is None:
        student.source_dir = teacher_dir  # where save_pretrained copies a tokenizer.json teacher's files from
    check_lengths(epochs, teacher.config, student.config)
    matching = distillation.match_layers(teacher.config, student.config, args.layer_map, args.att_loss,
                                         getattr(teacher, "scores", True))
    layer_map = matching.layer_map
    accum, pieces = args.gradient_accumulation_steps, dist.world * args.gradient_accumulation_steps
    total_steps = count_steps(epochs, args.train_batch_size * pieces, pieces)
    plan = training.Plan(total_steps=min(total_steps, args.max_steps or total_steps), log_every=args.logging_steps,
                         save_every=args.save_steps, grad_accum=args.gradient_accumulation_steps)
    optimizer = training.make_optimizer(student, args.learning_rate, args.weight_decay)
    scheduler = training.make_schedule(optimizer, total_steps, args.warmup_proportion)  # spans every epoch
    if dist.is_main:
        files.write_text_atomic(os.path.join(args.output_dir, "general_distill_args.json"),
                                     json.dumps({**vars(args), "layer_map": layer_map, "total_steps": total_steps,
                                                 "processes": dist.world}, indent=2) + "\n")
        print(f"teacher {teacher_dir} ({teacher.config.num_hidden_layers} layers) -> student "
              f"{student.config.num_hidden_layers} layers x {student.config.hidden_size}, layer map {layer_map}, "
              f"batch {args.train_batch_size} x {dist.world} processes x {accum} accumulated, "
              f"{plan.total_steps} of {total_steps} steps on {args.backend}/{device}")
        print(matching.describe())
    student.train()
    state = training.fit(
        student, pregenerated_epochs(epochs, vocab, args.train_batch_size, args.seed, device, dist.world, dist.rank,
                                     accum),
        DistillLosses(teacher, dist.wrap(student), matching), optimizer, scheduler, plan,
        training.Saving(args.output_dir, vocab_file=checkpoint.find_vocab(teacher_dir)),
        precision=training.MixedPrecision(False, device, args.max_grad_norm), resume=args.resume,
        run_info={"mode": "general_distill", "layer_map": layer_map, "processes": dist.world,
                  "batch": args.train_batch_size * pieces, "learning_rate": args.learning_rate,
                  "epochs": args.num_train_epochs, "data": os.path.abspath(args.pregenerated_data),
                  "teacher_model": {"path": os.path.abspath(teacher_dir),
                                    "sha256": checkpoint.model_fingerprint(teacher_dir)},
                  "student_model": args.student_model,
                  # recorded only when not the paper's, so that runs from before --att_loss still resume
                  **({"att_loss": matching.att_loss_name} if matching.att_loss_name != "mse" else {})},
        desc="general distillation", dist=dist)
    if dist.is_main:
        print(f"general TinyBERT saved in {args.output_dir} (step {state.step} of {total_steps})")
    return state


if __name__ == "__main__":
    cli.run(main, training.NonFiniteLoss)
