#!/usr/bin/env bash
# Pregenerate general-distillation data: OUTPUT_DIR/epoch_N.json (+ _metrics.json) from a text corpus.
# Every variable can be set from outside; extra arguments go to pregenerate_training_data.py.
set -euo pipefail
cd "$(dirname "$0")"
source scripts_common.sh

CORPUS=${CORPUS:-data/corpus}                        # files or directories; one sentence a line, blank line between documents
CORPUS_FORMAT=${CORPUS_FORMAT:-lines}                # lines | wikitext (' = Title = ' starts a document)
BERT_BASE_DIR=${BERT_BASE_DIR:-models/bert-base-uncased}  # its vocab.txt tokenizes; or a known name, e.g. all-MiniLM-L6-v2
OUTPUT_DIR=${OUTPUT_DIR:-data/pretrain_data_json}    # run_general_distill.sh's PREGENERATED_DATA
EPOCHS=${EPOCHS:-3}                                  # epochs of data to write (one epoch_N.json each)
MAX_SEQ_LEN=${MAX_SEQ_LEN:-128}                      # tokens per instance (general distillation, not GLUE)
NUM_WORKERS=${NUM_WORKERS:-$(nproc)}                 # processes that tokenize and write
EXTRA_ARGS=${EXTRA_ARGS:-}                           # more pregenerate_training_data.py flags (arguments after the wrapper do the same)
PYTHON=${PYTHON:-}                                   # empty: $VENV/bin/python (VENV default .venv, made by setup_env.sh)

for path in $CORPUS; do
  need CORPUS "corpus files or directories, e.g. WikiText-103 raw with CORPUS_FORMAT=wikitext (docs/pipeline.md: general distillation)" "$path"
done
need_model BERT_BASE_DIR "a BERT model directory with vocab.txt, or all-MiniLM-L6-v2"
use_python
# shellcheck disable=SC2086  # CORPUS and EXTRA_ARGS are lists
"$PYTHON" pregenerate_training_data.py \
  --train_corpus $CORPUS \
  --corpus_format "$CORPUS_FORMAT" \
  --bert_model "$BERT_BASE_DIR" \
  --output_dir "$OUTPUT_DIR" \
  --epochs_to_generate "$EPOCHS" \
  --max_seq_len "$MAX_SEQ_LEN" \
  --num_workers "$NUM_WORKERS" \
  $EXTRA_ARGS "$@"
echo "next: bash run_general_distill.sh   (PREGENERATED_DATA=$OUTPUT_DIR)"
