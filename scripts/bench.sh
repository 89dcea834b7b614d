#!/usr/bin/env bash
# Runs every benchmark and gas report and prints each figure as one line:
#   BENCH <name> <value> <unit>
# Figures are printed, never asserted. Gas is deterministic (nearcore's VM and cost tables;
# the harnesses run in debug builds, which does not change gas). Times depend on the machine:
# compare them only as ratios within one run. Progress and build output go to stderr, so
# `scripts/bench.sh 2>/dev/null` prints only the BENCH lines.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

"$REPO_ROOT/scripts/build-contracts.sh" >&2
for wasm in "$ECLOUD_WASM_DIR"/*.wasm; do
    echo "BENCH contracts.$(basename "$wasm" .wasm).wasm_size $(stat -c %s "$wasm") bytes"
done

run() { # run <what> <cargo args...>: a bench binary whose stdout is BENCH lines
    step "$1" >&2
    cargo run --locked --quiet "${@:2}"
}

# Gas, on the wasm we deploy (wasm-opt'd), in nearcore's VM.
step "attestation gas probe (wasm32)" >&2
cargo build --locked --quiet -p attestation --example gas_probe --features near \
    --target wasm32-unknown-unknown --release >&2
run "attestation gas" -p attestation-gas-bench -- \
    "$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/examples/gas_probe.wasm"
run "registry gas" -p registry-gas-bench -- "$ECLOUD_WASM_DIR/registry.wasm"
run "marketplace gas" -p marketplace-gas-bench -- \
    "$ECLOUD_WASM_DIR/marketplace.wasm" "$ECLOUD_WASM_DIR/registry.wasm"
run "model-token gas" -p model-token-gas-bench -- \
    "$ECLOUD_WASM_DIR/model_token.wasm" "$ECLOUD_WASM_DIR/model_factory.wasm"

# Gas as a real chain charges it (receipts, callbacks, global contracts): the model-token
# sandbox suite on localnet prints its figures as BENCH lines.
step "model-token gas on localnet (sandbox suite)" >&2
cargo build --locked --quiet -p localnet --bin localnet >&2
NEAR_SANDBOX_BIN_PATH="$CARGO_TARGET_DIR/debug/localnet" \
    cargo test --locked --quiet -p sandbox-tests --test model_token -- --nocapture --test-threads 1 \
    2>/dev/null | grep '^BENCH '
# Payment channels as a real chain charges them: open (registry and token paths), settle
# (the issue's budget: <= 15 Tgas whatever the requests a voucher covers; the suite fails
# above it), close, start_close / finish_close. The marketplace gas report above prints the
# same methods in nearcore's VM (marketplace.{open,settle,close}_channel.gas).
step "channel gas on localnet (sandbox suite)" >&2
NEAR_SANDBOX_BIN_PATH="$CARGO_TARGET_DIR/debug/localnet" \
    cargo test --locked --quiet -p sandbox-tests --test channels -- --nocapture --test-threads 1 \
    2>/dev/null | grep '^BENCH '

# Registering an 8-GPU + 4-NVSwitch dev node through the worker's register flow on localnet:
# its transactions and their gas (issue 16; the sandbox suite prints them as BENCH lines).
step "GPU node registration on localnet (sandbox suite)" >&2
NEAR_SANDBOX_BIN_PATH="$CARGO_TARGET_DIR/debug/localnet" \
    cargo test --locked --quiet -p sandbox-tests --test gpu_registration -- --nocapture --test-threads 1 \
    2>/dev/null | grep '^BENCH '

# Throughput and latency: optimised host builds (the `bench` profile: release without the
# contract-sized opt-level/LTO).
cargo build --locked --quiet -p localnet-probe --target wasm32-unknown-unknown --release >&2
run "localnet throughput" --profile bench -p localnet --example localnet_bench
run "indexer ingest" --profile bench --no-default-features -p indexer --example ingest_bench
run "indexer API and feed" --profile bench --no-default-features -p indexer --example api_bench
eval "$("$REPO_ROOT/worker/scripts/fetch-model.sh")"
run "worker inference" --profile bench -p worker --example worker_bench
run "sealed API (OHTTP seal/open, response signatures)" --profile bench -p sealed-api --example bench
run "encrypted weights (decryption vs plain read)" --profile bench -p protocol --example weights_bench
run "encrypted weights on the node (grant to first served request)" --profile bench -p worker \
    --example weights_grant_bench

# End to end on localnet: localnet, indexer and worker as optimised processes (the `bench`
# profile writes to target/release), sealed embedding jobs from submit to settlement.
step "worker end to end (processes on localnet)" >&2
cargo build --locked --quiet --profile bench -p localnet --bin localnet -p indexer --bin indexer \
    -p worker --bin worker >&2
ECLOUD_LOCALNET_BIN="$CARGO_TARGET_DIR/release/localnet" \
    ECLOUD_INDEXER_BIN="$CARGO_TARGET_DIR/release/indexer" \
    ECLOUD_WORKER_BIN="$CARGO_TARGET_DIR/release/worker" \
    run "worker end to end" -p worker --example e2e_bench

# The private, paid API on localnet: what `ecloud proxy` + the node's OHTTP gateway, payment
# and signatures add over calling an instant upstream directly; time to first token, tokens/s
# through a stream, requests/s with vouchers (issue 17; the channels suite above prints the
# gas of open / settle / close).
step "paid API (ecloud proxy -> worker -> upstream, processes on localnet)" >&2
cargo build --locked --quiet --profile bench -p ecloud --bin ecloud >&2
ECLOUD_LOCALNET_BIN="$CARGO_TARGET_DIR/release/localnet" \
    ECLOUD_INDEXER_BIN="$CARGO_TARGET_DIR/release/indexer" \
    ECLOUD_WORKER_BIN="$CARGO_TARGET_DIR/release/worker" \
    ECLOUD_BIN="$CARGO_TARGET_DIR/release/ecloud" \
    run "paid API" --profile bench -p worker --example paid_api_bench
