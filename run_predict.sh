#!/usr/bin/env bash
# Label sentences with a trained student (predict.py); QUANTIZE exports it to ONNX first (export_onnx.py).
#   echo "a gripping , funny film ." | bash run_predict.sh
#   MODEL=models/student_model/MRPC TASK_NAME=MRPC INPUT=pairs.tsv OUTPUT=predictions.tsv bash run_predict.sh
#   QUANTIZE=int8 INPUT=sentences.txt bash run_predict.sh     # serve $MODEL/student_int8.onnx on onnxruntime
# Every variable can be set from outside; extra arguments go to predict.py (e.g. --header).
set -euo pipefail
cd "$(dirname "$0")"
source scripts_common.sh
own_labels=no  # TASK_NAME set empty (or TASK, the older name): the model's own label names
for name in TASK_NAME TASK; do
  if [ -n "${!name+set}" ] && [ -z "${!name}" ]; then own_labels=yes; unset "$name"; fi
done
task_name TASK

MODEL=${MODEL:-models/student_model/$TASK_NAME}  # a model directory (any weight format) or an .onnx file
INPUT=${INPUT:--}                           # a file, or - for stdin
INPUT_FORMAT=${INPUT_FORMAT:-auto}          # text | tsv | auto (tsv for *.tsv files and pair tasks)
OUTPUT=${OUTPUT:-}                          # empty: stdout
QUANTIZE=${QUANTIZE:-}                      # empty | none | int8: export MODEL to ONNX_FILE, then predict with that file
ONNX_FILE=${ONNX_FILE:-$MODEL/student_${QUANTIZE:-fp32}.onnx}  # where the export goes
BACKEND=${BACKEND:-oneflow}                 # runs a model directory; .onnx files run on onnxruntime
MAX_SEQ_LENGTH=${MAX_SEQ_LENGTH:-}          # empty: predict.py's (128); longer inputs are truncated and counted
BATCH_SIZE=${BATCH_SIZE:-64}                # sentences per forward pass
NUM_THREADS=${NUM_THREADS:-}                # empty: the runtime's default
EXTRA_ARGS=${EXTRA_ARGS:-}                  # more predict.py flags (arguments after the wrapper do the same)
PYTHON=${PYTHON:-}                          # empty: $VENV/bin/python (VENV default .venv, made by setup_env.sh)

need MODEL "a trained student (run_train_student_tinybert.sh writes models/student_model/$TASK_NAME) or an .onnx file"
use_python
if [ -n "$QUANTIZE" ]; then
  "$PYTHON" export_onnx.py --model "$MODEL" --output "$ONNX_FILE" --quantize "$QUANTIZE" >&2
  MODEL=$ONNX_FILE
fi
args=(--model "$MODEL" --input "$INPUT" --input_format "$INPUT_FORMAT" --batch_size "$BATCH_SIZE" --backend "$BACKEND")
is_yes own_labels || args+=(--task_name "$TASK_NAME")
[ -n "$MAX_SEQ_LENGTH" ] && args+=(--max_seq_length "$MAX_SEQ_LENGTH")
[ -n "$OUTPUT" ] && args+=(--output "$OUTPUT")
[ -n "$NUM_THREADS" ] && args+=(--num_threads "$NUM_THREADS")
# shellcheck disable=SC2086  # EXTRA_ARGS is a list of flags
exec "$PYTHON" predict.py "${args[@]}" $EXTRA_ARGS "$@"
