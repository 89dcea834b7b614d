#!/usr/bin/env bash
# The one test command: installs what is missing, builds the contracts, checks them against
# nearcore's VM, then runs formatting, lints and every test tier. Used as is by .ci/run.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
started=$SECONDS

step "toolchain and system packages"
ensure_rust
apt_install binaryen pkg-config
echo "target dir: $CARGO_TARGET_DIR"

step "formatting (cargo fmt --check)"
cargo fmt --all -- --check || fail "run 'cargo fmt --all' and commit the result"

step "contracts (wasm32, release)"
"$REPO_ROOT/scripts/build-contracts.sh"

step "deployability: every contract through nearcore's VM (protocol of near-vm-runner 0.38)"
cargo run --locked --quiet -p localnet -- check-contract "$ECLOUD_WASM_DIR"/*.wasm

step "lints (cargo clippy -D warnings)"
cargo clippy --locked --workspace --all-targets -- -D warnings

step "unit and integration tests (cargo test --workspace)"
cargo test --locked --workspace

printf '\n\033[1;32mall checks passed\033[0m in %ds\n' $((SECONDS - started))
