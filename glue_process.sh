#!/usr/bin/env bash
# GLUE tsv -> OFRecord files that OneFlow's OFRecordReader (and glue.py, for PyTorch) reads:
# OUT_DIR/<TASK>/{train,train_aug,eval,test}/<split>.of_record-<i>. Run it after run_data_augmentation.sh,
# so that train_aug is written too. Every variable can be set from outside; extra arguments go to
# glue_process.py. The training wrappers read these files with DATA_ROOT=data/glue_ofrecord.
set -euo pipefail
cd "$(dirname "$0")"
source scripts_common.sh
task_name TASKS

GLUE_DIR=${GLUE_DIR:-data/glue_data}            # GLUE root: one tsv folder per task, as download_glue_data.py writes them
OUT_DIR=${OUT_DIR:-data/glue_ofrecord}          # the OFRecord root the training wrappers take as DATA_ROOT
MODEL_DIR=${MODEL_DIR:-models/bert-base-uncased}  # the vocab.txt (and casing) of the models that will read the records
MAX_SEQ_LENGTH=${MAX_SEQ_LENGTH:-}              # empty: each task's (64 single sentences, 128 pairs), as the training stages
SPLITS=${SPLITS:-auto}                          # auto: every split whose tsv is there
NUM_PARTS=${NUM_PARTS:-1}                       # part files per split
DOWNLOAD=${DOWNLOAD:-no}                        # yes: fetch the tasks first (download_glue_data.py)
EXTRA_ARGS=${EXTRA_ARGS:-}                      # more glue_process.py flags (arguments after the wrapper do the same)
PYTHON=${PYTHON:-}                              # empty: $VENV/bin/python (VENV default .venv, made by setup_env.sh)
# TASK_NAME may be a comma list here: CoLA,SST-2,MRPC,STS-B,QQP,MNLI,QNLI,RTE,WNLI (TASKS, the older name, is read)

is_yes DOWNLOAD || need GLUE_DIR "the GLUE root (or DOWNLOAD=yes to fetch TASK_NAME into it)"
need MODEL_DIR "the model directory whose vocab.txt the records are tokenized with"
use_python
if is_yes DOWNLOAD; then
  "$PYTHON" download_glue_data.py --data_dir "$GLUE_DIR" --tasks "$TASK_NAME"
fi

# shellcheck disable=SC2086  # EXTRA_ARGS is a list of flags
"$PYTHON" glue_process.py --glue_dir "$GLUE_DIR" --output_dir "$OUT_DIR" --tasks "$TASK_NAME" \
  --bert_model "$MODEL_DIR" ${MAX_SEQ_LENGTH:+--max_seq_length "$MAX_SEQ_LENGTH"} --splits "$SPLITS" \
  --num_parts "$NUM_PARTS" $EXTRA_ARGS "$@"
