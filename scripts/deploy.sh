#!/usr/bin/env bash
# Builds the contracts, checks them in nearcore's VM, and deploys them to a network with
# ecloud-deploy (which checks the network's protocol version first).
#
#   scripts/deploy.sh localnet [ecloud-deploy options]     # a running localnet; signs as test.near
#   scripts/deploy.sh testnet --account-id you.testnet [options]
#   scripts/deploy.sh mainnet --account-id you.near [options]
#
# Credentials: near-cli's ~/.near-credentials/<network>/<account>.json (`--credentials FILE`
# to use another file); for localnet the validator key of $LOCALNET_HOME (default ~/.localnet).
# Everything after the network goes to ecloud-deploy: `scripts/deploy.sh testnet --help`.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# Paths the user gives (--policy, --new-dev-ca, --out, --credentials) are theirs: relative to
# where they ran this, not to the repository the build happens in.
caller_dir="$PWD"
cd "$REPO_ROOT"

usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; }
network="${1:-}"
case "$network" in
    localnet|testnet|mainnet) shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; fail "first argument: localnet, testnet or mainnet" ;;
esac
if [[ " $* " == *" --help "* || " $* " == *" -h "* ]]; then
    ensure_rust
    exec cargo run --locked --quiet -p ecloud-deploy -- contracts --help
fi

step "toolchain"
ensure_rust
apt_install binaryen

step "contracts"
"$REPO_ROOT/scripts/build-contracts.sh"

step "deployability in nearcore's VM"
cargo run --locked --quiet -p localnet -- check-contract "$ECLOUD_WASM_DIR"/*.wasm

extra=()
case "$network" in
    localnet)
        home="${LOCALNET_HOME:-$HOME/.localnet}"
        [[ -f "$home/validator_key.json" ]] || fail "no localnet home at $home: start one with
  cargo run -p localnet -- --home $home init && cargo run -p localnet -- --home $home run --rpc-addr 127.0.0.1:3030"
        [[ " $* " == *" --account-id "* ]] || extra+=(--account-id test.near)
        [[ " $* " == *" --credentials "* ]] || extra+=(--credentials "$home/validator_key.json")
        [[ " $* " == *" --test-token "* ]] || extra+=(--test-token USDT)
        ;;
    mainnet)
        echo "mainnet: dev attestation and the test token are refused; the registry starts with"
        echo "the contract's default policy (no TDX platform or compose hash allowed yet):"
        echo "set yours with --policy FILE; after the deployment a new policy is a governance"
        echo "proposal that applies after --governance-delay (24h by default on mainnet)."
        ;;
esac

step "deploying to $network"
cargo build --locked --quiet -p ecloud-deploy
deploy_bin="$(cd "$CARGO_TARGET_DIR" && pwd)/debug/ecloud-deploy"
wasm_dir="$(cd "$ECLOUD_WASM_DIR" && pwd)"
cd "$caller_dir"
"$deploy_bin" contracts --network "$network" --wasm-dir "$wasm_dir" "${extra[@]}" "$@"
