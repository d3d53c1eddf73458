#!/usr/bin/env bash
# GLUE tsv -> OFRecord files that OneFlow's OFRecordReader (and glue.py, for PyTorch) reads:
# OUT_DIR/<TASK>/{train,train_aug,eval,test}/<split>.of_record-<i>. Each variable can be set from outside.
set -euo pipefail
cd "$(dirname "$0")"
source scripts_common.sh

GLUE_DIR=${GLUE_DIR:-data/glue_data}            # one folder per task, as download_glue_data.py writes them
OUT_DIR=${OUT_DIR:-data/glue_ofrecord}
TASKS=${TASKS:-SST-2}                           # comma list: CoLA,SST-2,MRPC,STS-B,QQP,MNLI,QNLI,RTE,WNLI
MODEL_DIR=${MODEL_DIR:-models/bert-base-uncased}  # the vocab.txt (and casing) of the models that will read the records
MAX_SEQ_LENGTH=${MAX_SEQ_LENGTH:-128}
SPLITS=${SPLITS:-auto}                          # auto: every split whose tsv is there
NUM_PARTS=${NUM_PARTS:-1}
DOWNLOAD=${DOWNLOAD:-false}                     # true: fetch the tasks first
PYTHON=${PYTHON:-}                              # empty: .venv/bin/python (setup_env.sh makes it)

[ "$DOWNLOAD" = true ] || need GLUE_DIR "the GLUE root (or DOWNLOAD=true to fetch TASKS into it)"
need MODEL_DIR "the model directory whose vocab.txt the records are tokenized with"
use_python
if [ "$DOWNLOAD" = true ]; then
  "$PYTHON" download_glue_data.py --data_dir "$GLUE_DIR" --tasks "$TASKS"
fi

"$PYTHON" glue_process.py --glue_dir "$GLUE_DIR" --output_dir "$OUT_DIR" --tasks "$TASKS" \
  --model_dir "$MODEL_DIR" --max_seq_length "$MAX_SEQ_LENGTH" --splits "$SPLITS" --num_parts "$NUM_PARTS"
