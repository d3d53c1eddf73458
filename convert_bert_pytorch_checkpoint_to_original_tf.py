"""PyTorch (Hugging Face) BERT or TinyBERT -> TensorFlow 1 checkpoint with Google's BERT names.

    python convert_bert_pytorch_checkpoint_to_original_tf.py --model_name DIR \
        [--pytorch_model_path DIR/pytorch_model.bin] --tf_cache_dir OUT

DIR is a model directory (config.json, vocab.txt, pytorch_model.bin or model.safetensors). OUT gets
bert_model.ckpt.{index,data-00000-of-00001}, the `checkpoint` index file naming it, bert_config.json
and vocab.txt, all at once or not at all. Names and transposes: checkpoint.LAYOUT (fit_dense, which
Google's BERT lacks, becomes fit_dense/kernel and fit_dense/bias; a classifier, output_weights and
output_bias as in Google's run_classifier.py). Next step: convert_tf_ckpt_to_of.py.
"""
import argparse
import os

import checkpoint
import files
import cli


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_name", required=True,
                        help="the PyTorch model directory (config.json, vocab.txt and weights)")
    parser.add_argument("--pytorch_model_path", default=None,
                        help="the weight file, pytorch_model.bin or model.safetensors (default: the weights in "
                             "--model_name)")
    parser.add_argument("--tf_cache_dir", required=True, help="the directory to write the TF checkpoint to")
    return parser.parse_args(argv)


def next_stage_dir(tf_dir):
    """Where the OneFlow model goes, by the original's naming: NAME_tf -> NAME_oneflow."""
    tf_dir = tf_dir.rstrip("/")
    return (tf_dir[:-len("_tf")] if tf_dir.endswith("_tf") else tf_dir) + "_oneflow"


def main(argv=None):
    args = parse_args(argv)
    config = checkpoint.read_json(checkpoint.find_config(args.model_name))
    source = args.pytorch_model_path or args.model_name
    state = (checkpoint.read_weights_file(args.pytorch_model_path) if args.pytorch_model_path
             else checkpoint.load_state_dict(args.model_name, config))
    checkpoint.check_shapes(state, config, source)
    tf_state, left = checkpoint.to_tf(state, config)
    vocab = checkpoint.find_vocab(args.model_name)

    with files.atomic_dir(args.tf_cache_dir) as tmp:
        checkpoint.save_tf_checkpoint(tf_state, tmp)
        files.write_json_atomic(os.path.join(tmp, "bert_config.json"), config)
        if vocab:
            checkpoint.copy_file(vocab, os.path.join(tmp, checkpoint.VOCAB_NAME))

    prefix = os.path.join(args.tf_cache_dir, checkpoint.TF_PREFIX)
    print(f"wrote {prefix}: {checkpoint.summary(tf_state)} (from {source})")
    if left:
        print(f"not converted ({len(left)}, no Google name under this config): "
              + ", ".join(f"{n} (tied to {checkpoint.TIED[n]})" if n in checkpoint.TIED else n for n in left))
    print(f"wrote {os.path.join(args.tf_cache_dir, checkpoint.TF_INDEX)}, bert_config.json"
          + (", vocab.txt" if vocab else f"; no vocab.txt in {args.model_name} to copy"))
    print(f"next: python convert_tf_ckpt_to_of.py --tf_checkpoint_path {args.tf_cache_dir} "
          f"--of_dump_path {next_stage_dir(args.tf_cache_dir)}")


if __name__ == "__main__":
    cli.run(main)
