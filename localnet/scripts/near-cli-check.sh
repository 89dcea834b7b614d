#!/usr/bin/env bash
# near-cli-rs against localnet: starts a fresh chain, then with `near` (near-cli-rs) creates an
# account, deploys a contract, calls a change method and a view method, and views the account,
# through a custom network `localnet` pointing at the local RPC. Exits non-zero on the first
# step that fails; prints each command and its output.
#
# Needs: the localnet binary (LOCALNET_BIN, default $CARGO_TARGET_DIR/debug/localnet), near-cli-rs
# (NEAR_CLI, default `near` on PATH; `cargo install near-cli-rs --locked --no-default-features`),
# the probe contract (LOCALNET_PROBE_WASM, default
# $CARGO_TARGET_DIR/wasm32-unknown-unknown/release/localnet_probe.wasm), curl and jq. The binary
# and the contract are built with cargo when their default paths are empty.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$repo/target}"
localnet="${LOCALNET_BIN:-$target/debug/localnet}"
near="${NEAR_CLI:-near}"
wasm="${LOCALNET_PROBE_WASM:-$target/wasm32-unknown-unknown/release/localnet_probe.wasm}"
# Build what is missing at the default paths (a named path must exist).
if [[ -z "${LOCALNET_BIN:-}" && ! -f "$localnet" ]]; then
    (cd "$repo" && cargo build --locked --quiet -p localnet --bin localnet)
fi
if [[ -z "${LOCALNET_PROBE_WASM:-}" && ! -f "$wasm" ]]; then
    (cd "$repo" && cargo build --locked --quiet -p localnet-probe --target wasm32-unknown-unknown --release)
fi
for need in "$localnet" "$wasm"; do
    [[ -f "$need" ]] || { echo "missing $need" >&2; exit 2; }
done
command -v "$near" >/dev/null || { echo "near-cli-rs not found: $near" >&2; exit 2; }

work="$(mktemp -d)"
pid=""
cleanup() {
    local status=$?
    # Stopping the node must not turn a passed check into a failure (SIGTERM's 143).
    if [[ -n "$pid" ]]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT

port=$((20000 + RANDOM % 20000))
rpc="http://127.0.0.1:$port/"
"$localnet" --home "$work/home" init >/dev/null
"$localnet" --home "$work/home" run --rpc-addr "127.0.0.1:$port" 2>"$work/localnet.log" &
pid=$!
for _ in $(seq 100); do
    curl -sf "${rpc}status" >/dev/null && break
    sleep 0.1
done
curl -sf "${rpc}status" >/dev/null || { echo "localnet did not start" >&2; cat "$work/localnet.log" >&2; exit 1; }

# test.near (the validator and root account) signs with its key from validator_key.json; the
# new account gets the same key so the same plaintext key signs for it.
secret="$(jq -r '.secret_key // .private_key' "$work/home/validator_key.json")"
public="$(jq -r .public_key "$work/home/validator_key.json")"
account="probe.test.near"

# near-cli-rs reads its networks from $XDG_CONFIG_HOME/near-cli/config.toml.
export XDG_CONFIG_HOME="$work/config"
mkdir -p "$XDG_CONFIG_HOME/near-cli"
cat >"$XDG_CONFIG_HOME/near-cli/config.toml" <<EOF
version = "5"
credentials_home_dir = "$work/credentials"

[network_connection.localnet]
network_name = "localnet"
rpc_url = "$rpc"
wallet_url = "$rpc"
explorer_transaction_url = "$rpc"
EOF

step() {
    echo "\$ near $*"
    "$near" "$@" 2>&1 | tee "$work/out"
    echo
}

step account create-account fund-myself "$account" '10 NEAR' \
    use-manually-provided-public-key "$public" \
    sign-as test.near network-config localnet sign-with-plaintext-private-key "$secret" send
step contract deploy "$account" use-file "$wasm" without-init-call \
    network-config localnet sign-with-plaintext-private-key "$secret" send
step contract call-function as-transaction "$account" set \
    json-args '{"key":"color","value":"blue"}' prepaid-gas '30 Tgas' attached-deposit '0 NEAR' \
    sign-as "$account" network-config localnet sign-with-plaintext-private-key "$secret" send
step contract call-function as-read-only "$account" get json-args '{"key":"color"}' \
    network-config localnet now
grep -q blue "$work/out" || { echo "view did not return the stored value" >&2; exit 1; }
step account view-account-summary "$account" network-config localnet now
grep -q "$account" "$work/out" || { echo "account summary does not name $account" >&2; exit 1; }

# The chain agrees: the account exists with the probe's code, and the value is stored.
code_hash="$(curl -s "$rpc" -H 'content-type: application/json' -d "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"query\",\"params\":{\"request_type\":\"view_account\",\"finality\":\"final\",\"account_id\":\"$account\"}}" | jq -r .result.code_hash)"
[[ "$code_hash" != "11111111111111111111111111111111" && "$code_hash" != "null" ]] || { echo "no code on $account" >&2; exit 1; }
echo "near-cli-check: all steps passed (code hash $code_hash)"
