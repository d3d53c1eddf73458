"""GLUE tsv -> OFRecord: OUTPUT_DIR/<TASK>/{train,train_aug,eval,test}/<split>.of_record-<i>, as the original.

    python glue_process.py --glue_dir data/glue_data --output_dir data/glue_ofrecord --tasks SST-2,RTE \
        --bert_model models/bert-base-uncased

The model directory gives vocab.txt and the casing. With --splits auto (the default), every split whose
tsv file is there is written (MNLI: the mismatched dev/test too); a listed split that is missing is an error.
"""
import argparse
import logging
import os

import cli
import checkpoint
import glue


def split_list(processor, data_dir, requested):
    if requested != "auto":
        return [s.strip() for s in requested.split(",") if s.strip()]
    present = [s for s in processor.splits if os.path.isfile(processor.split_path(data_dir, s))]
    absent = sorted(set(processor.splits) - set(present))
    if absent:
        print(f"{processor.dir_name}: no {', '.join(absent)} split here; not written")
    return present


def process_task(task, args, tokenizer):
    processor = glue.get_processor(task)
    data_dir = os.path.join(args.glue_dir, processor.dir_name)
    splits = split_list(processor, data_dir, args.splits)
    if not splits:
        files = ", ".join(processor.split_files[s][0] for s in processor.splits)
        raise glue.GlueDataError(f"{data_dir}: none of {files}")
    for split in splits:
        examples = processor.read_examples(data_dir, split, skip_bad_rows=args.skip_bad_rows)
        features = glue.convert_examples_to_features(examples, tokenizer,
                                                     args.max_seq_length or processor.default_max_seq_length, processor)
        out = os.path.join(args.output_dir, processor.dir_name, processor.record_dir_name(split))
        glue.write_ofrecord(features, out, num_parts=args.num_parts)
        print(f"{processor.dir_name} {split}: {len(features)} records ({features.num_truncated} truncated) -> {out}")


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--glue_dir", default="data/glue_data", help="folder holding one folder per task (SST-2, ...)")
    p.add_argument("--output_dir", default="data/glue_ofrecord")
    p.add_argument("--tasks", required=True, help="comma list of task names, e.g. SST-2,RTE,MNLI")
    # --bert_model as in pregenerate_training_data.py and data_augmentation.py; --model_dir, this script's
    # earlier spelling, still works
    p.add_argument("--bert_model", "--model_dir", dest="bert_model", required=True,
                   help="model directory with the vocab.txt to tokenize with")
    p.add_argument("--do_lower_case", choices=["auto", "true", "false"], default="auto",
                   help="auto: as the model directory says (or its vocabulary implies)")
    p.add_argument("--max_seq_length", type=int,
                   help="default: the task's (64 for single-sentence tasks, 128 for pairs), as the training stages")
    p.add_argument("--splits", default="auto", help="auto, or a comma list of train,train_aug,dev,test,...")
    p.add_argument("--num_parts", type=int, default=1, help="part files per split")
    p.add_argument("--skip_bad_rows", action="store_true", help="skip malformed rows (counted) instead of stopping")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    lower = {"auto": None, "true": True, "false": False}[args.do_lower_case]
    tokenizer = checkpoint.load_tokenizer(args.bert_model, do_lower_case=lower)
    for task in filter(None, (t.strip() for t in args.tasks.split(","))):
        process_task(task, args, tokenizer)


if __name__ == "__main__":
    cli.run(main)
