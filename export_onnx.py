"""Export a fine-tuned student to ONNX (optionally int8) for serving with onnxruntime.

    python export_onnx.py --model models/student_model/SST-2 --output student.onnx
    python export_onnx.py --model models/student_model/SST-2 --output student_int8.onnx --quantize int8

The graph takes input_ids, token_type_ids, attention_mask (int64 [batch, sequence], both axes
dynamic) and returns logits [batch, num_labels]: modeling.py's TinyBertForSequenceClassification on
the PyTorch backend, on its serving path (no attention scores, no fit_dense), whatever weight format
the directory holds. `--quantize int8` applies onnxruntime's dynamic quantization (int8 weights,
activations quantized per batch at run time). The file carries the model's config.json and vocab.txt
in its metadata, so predict.py --model student.onnx needs nothing else. The output appears only
when complete; the export is checked against the PyTorch model on a few sentences before it is kept.
"""
import argparse
import os
import tempfile

import numpy as np

import cli
import glue
import inference

# Checked through both the PyTorch model and the exported graph: a pair and lengths that differ, so
# a wrong segment or padding path shows.
CHECK_EXAMPLES = [glue.InputExample("0", "it 's a charming and often affecting journey .", None, None),
                  glue.InputExample("1", "unflinchingly bleak and desperate", None, None),
                  glue.InputExample("2", "the movie is a mess .", "the plot never comes together .", None)]
FP32_TOLERANCE = 1e-4


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__.split("\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="fine-tuned model directory (any weight format)")
    p.add_argument("--output", required=True, help="the .onnx file to write")
    p.add_argument("--quantize", choices=["none", "int8"], default="none")
    p.add_argument("--opset", type=int, default=inference.ONNX_OPSET)
    args = p.parse_args(argv)
    if not args.output.endswith(".onnx"):
        p.error(f"--output {args.output}: give a file name ending in .onnx (predict.py tells files by it)")
    return args


def compare(model, path, tokenizer):
    """(largest |logit difference|, share of equal argmax) of the graph against the PyTorch model."""
    import torch
    features = glue.convert_examples_to_features(CHECK_EXAMPLES, tokenizer, 64, [None])
    expected = inference.predict_logits(inference.ModelRunner(model, torch), features, batch_size=2)
    got = inference.predict_logits(inference.OnnxRunner(path), features, batch_size=2)
    same = float((got.argmax(1) == expected.argmax(1)).mean()) if got.shape[1] > 1 else 1.0
    return float(np.abs(got - expected).max()), same


def main(argv=None):
    args = parse_args(argv)
    model = inference.load_classifier(args.model, "torch")  # PyTorch exports, whatever wrote the weights
    tokenizer = glue.tokenizer_from_dir(args.model)
    metadata = inference.metadata_of_dir(args.model)
    # the directory's name only: a published .onnx file carries no path of this machine
    metadata.update(inference.json_metadata(source=os.path.basename(os.path.normpath(os.path.abspath(args.model))),
                                            quantize=args.quantize))
    out_dir = os.path.dirname(os.path.abspath(args.output))
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        staged = os.path.join(tmp, "model.onnx")  # renamed onto --output once checked
        if args.quantize == "int8":
            fp32 = os.path.join(tmp, "fp32.onnx")
            inference.export_onnx(model, fp32, metadata, args.opset)
            inference.quantize_int8(fp32, staged)
        else:
            inference.export_onnx(model, staged, metadata, args.opset)
        diff, same = compare(model, staged, tokenizer)
        if args.quantize == "none" and diff > FP32_TOLERANCE:
            raise inference.InferenceError(f"the graph's logits differ from PyTorch's by {diff:.2e} "
                                           f"(> {FP32_TOLERANCE}); {args.output} not written")
        os.replace(staged, args.output)
    print(f"wrote {args.output}: {inference.onnx_summary(args.output)}")
    print(f"check on {len(CHECK_EXAMPLES)} sentences against PyTorch: max |logit difference| {diff:.2e}, "
          f"same label {same:.0%}")
    return 0


if __name__ == "__main__":
    cli.run(main)
