"""TensorFlow BERT/TinyBERT checkpoint (Google names) -> OneFlow model directory.

    python convert_tf_ckpt_to_of.py --tf_checkpoint_path DIR_OR_PREFIX --of_dump_path OUT

The checkpoint is a directory (its `checkpoint` index names the prefix; without one, the single
*.index in it) or a prefix such as DIR/bert_model.ckpt; its bert_config.json (or config.json) and
vocab.txt sit beside it. OUT gets the weights as `oneflow.save` of the model's state dict (a plain
`oneflow.load(OUT)` feeds `load_state_dict`), config.json (Hugging Face keys) and vocab.txt, all at
once or not at all. Optimizer slots (adam_m, adam_v) and global_step are left out. Any stage then
loads OUT with `from_pretrained`, on either backend.
"""
import argparse
import os

import checkpoint
import files
import cli


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tf_checkpoint_path", required=True,
                        help="a TF checkpoint directory, or a checkpoint prefix (DIR/bert_model.ckpt)")
    parser.add_argument("--of_dump_path", required=True, help="the OneFlow model directory to write")
    parser.add_argument("--bert_config_file", default=None,
                        help="the model's config (default: bert_config.json or config.json beside the checkpoint)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    prefix = checkpoint.tf_checkpoint_prefix(args.tf_checkpoint_path)
    source_dir = os.path.dirname(prefix)
    config = checkpoint.read_json(args.bert_config_file or checkpoint.find_config(source_dir))
    tf_state, skipped = checkpoint.read_tf_checkpoint(prefix)
    state = checkpoint.from_tf(tf_state, config)
    checkpoint.check_shapes(state, config, prefix)
    if "classifier.bias" in state:  # so that from_pretrained builds the classifier this checkpoint has
        config["num_labels"] = int(state["classifier.bias"].shape[0])
    vocab = checkpoint.find_vocab(source_dir)

    with files.atomic_dir(args.of_dump_path) as tmp:
        checkpoint.save_oneflow(state, tmp)
        files.write_json_atomic(os.path.join(tmp, checkpoint.CONFIG_NAME), config)
        if vocab:
            checkpoint.copy_file(vocab, os.path.join(tmp, checkpoint.VOCAB_NAME))

    print(f"wrote {args.of_dump_path} (oneflow.save): {checkpoint.summary(state)} (from {prefix})")
    if skipped:
        print(f"left out {len(skipped)} optimizer slot(s) and counter(s): {', '.join(skipped)}")
    unknown = sorted(set(state) - {t.hf for t in checkpoint.name_table(config)})
    if unknown:
        print(f"kept {len(unknown)} tensor(s) under their TF names (not in the name table): {', '.join(unknown)}")
    print(f"wrote {checkpoint.CONFIG_NAME}" + (", vocab.txt" if vocab else f"; no vocab.txt in {source_dir} to copy"))
    print(f"next (task distillation with this model as the student; from_pretrained reads it on either backend): "
          f"python task_distill.py --student_model {args.of_dump_path} --teacher_model FINE_TUNED_TEACHER_DIR ...")


if __name__ == "__main__":
    cli.run(main)
