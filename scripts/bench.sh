#!/usr/bin/env bash
# Runs every benchmark and gas report and prints each figure as one line:
#   BENCH <name> <value> <unit>
# Figures are printed, never asserted: gas is deterministic, times are machine-dependent
# (compare times only as ratios within one run).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

"$REPO_ROOT/scripts/build-contracts.sh" >&2
for wasm in "$ECLOUD_WASM_DIR"/*.wasm; do
    name="$(basename "$wasm" .wasm)"
    echo "BENCH contracts.$name.wasm_size $(stat -c %s "$wasm") bytes"
done
