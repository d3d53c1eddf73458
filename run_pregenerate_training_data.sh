#!/usr/bin/env bash
# Pregenerate general-distillation data: data/pretrain_data_json/epoch_N.json (+ _metrics.json).
set -euo pipefail
cd "$(dirname "$0")"
source scripts_common.sh

CORPUS=${CORPUS:-../shared/corpus/wikitext-2-raw}   # files or directories; one sentence a line, blank line between documents
CORPUS_FORMAT=${CORPUS_FORMAT:-wikitext}             # lines | wikitext (' = Title = ' starts a document)
BERT_BASE_DIR=${BERT_BASE_DIR:-models/bert-base-uncased}  # its vocab.txt tokenizes; or a known name, e.g. all-MiniLM-L6-v2
OUTPUT_DIR=${OUTPUT_DIR:-data/pretrain_data_json}
EPOCHS=${EPOCHS:-3}
MAX_SEQ_LEN=${MAX_SEQ_LEN:-128}
NUM_WORKERS=${NUM_WORKERS:-$(nproc)}
PYTHON=${PYTHON:-}                                   # empty: .venv/bin/python (setup_env.sh makes it)

for path in $CORPUS; do
  need CORPUS "corpus files or directories (README: general distillation)" "$path"
done
need_model BERT_BASE_DIR "a BERT model directory with vocab.txt, or all-MiniLM-L6-v2"
use_python
"$PYTHON" pregenerate_training_data.py \
  --train_corpus $CORPUS \
  --corpus_format "$CORPUS_FORMAT" \
  --bert_model "$BERT_BASE_DIR" \
  --output_dir "$OUTPUT_DIR" \
  --epochs_to_generate "$EPOCHS" \
  --max_seq_len "$MAX_SEQ_LEN" \
  --num_workers "$NUM_WORKERS" \
  "$@"
