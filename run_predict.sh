#!/usr/bin/env bash
# Label sentences with a trained student (predict.py); QUANTIZE exports it to ONNX first (export_onnx.py).
#   echo "a gripping , funny film ." | bash run_predict.sh
#   MODEL=models/student_model/MRPC TASK=MRPC INPUT=pairs.tsv OUTPUT=predictions.tsv bash run_predict.sh
#   QUANTIZE=int8 INPUT=sentences.txt bash run_predict.sh     # serve $MODEL/student_int8.onnx on onnxruntime
set -euo pipefail
cd "$(dirname "$0")"

MODEL=${MODEL:-models/student_model/SST-2}  # a model directory (any weight format) or an .onnx file
TASK=${TASK-SST-2}                          # label names and pair input; empty: the model's own labels
INPUT=${INPUT:--}                           # a file, or - for stdin
INPUT_FORMAT=${INPUT_FORMAT:-auto}          # text | tsv | auto (tsv for *.tsv files and pair tasks)
OUTPUT=${OUTPUT:-}                          # empty: stdout
QUANTIZE=${QUANTIZE:-}                      # none | int8: export MODEL to ONNX_FILE, then predict with that file
ONNX_FILE=${ONNX_FILE:-$MODEL/student_${QUANTIZE:-fp32}.onnx}
BACKEND=${BACKEND:-oneflow}                 # runs a model directory; .onnx files run on onnxruntime
MAX_SEQ_LENGTH=${MAX_SEQ_LENGTH:-128}
BATCH_SIZE=${BATCH_SIZE:-64}
NUM_THREADS=${NUM_THREADS:-}                # empty: the runtime's default

bash setup_env.sh
if [ -n "$QUANTIZE" ]; then
  .venv/bin/python export_onnx.py --model "$MODEL" --output "$ONNX_FILE" --quantize "$QUANTIZE" >&2
  MODEL=$ONNX_FILE
fi
args=(--model "$MODEL" --input "$INPUT" --input_format "$INPUT_FORMAT" --max_seq_length "$MAX_SEQ_LENGTH"
      --batch_size "$BATCH_SIZE" --backend "$BACKEND")
[ -n "$TASK" ] && args+=(--task_name "$TASK")
[ -n "$OUTPUT" ] && args+=(--output "$OUTPUT")
[ -n "$NUM_THREADS" ] && args+=(--num_threads "$NUM_THREADS")
exec .venv/bin/python predict.py "${args[@]}"
