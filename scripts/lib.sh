# Shared helpers for the scripts in this folder. Source it; do not run it.
# Sets REPO_ROOT and CARGO_TARGET_DIR (a cache outside the clone when CI=true).

set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export REPO_ROOT

if [[ -z "${CARGO_TARGET_DIR:-}" ]]; then
    if [[ "${CI:-}" == "true" ]]; then
        export CARGO_TARGET_DIR="$HOME/.cache/enclave-cloud/target"
        # A clone built once gains nothing from incremental state, and that state only grows
        # the cache CI keeps between runs (42 GB of it filled a CI machine's disk).
        export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
    else
        export CARGO_TARGET_DIR="$REPO_ROOT/target"
    fi
fi
# Built contracts land here; tests find them through the same variable.
export ECLOUD_WASM_DIR="${ECLOUD_WASM_DIR:-$CARGO_TARGET_DIR/near}"

step() { printf '\n\033[1;34m==> %s\033[0m\n' "$*"; }
fail() { printf '\033[1;31merror:\033[0m %s\n' "$*" >&2; exit 1; }

# apt_install PKG... : installs Debian packages that are missing (root or sudo).
apt_install() {
    local missing=()
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    local sudo=""
    [[ $(id -u) -ne 0 ]] && sudo="sudo"
    command -v apt-get >/dev/null || fail "missing packages ${missing[*]} and no apt-get to install them"
    step "installing ${missing[*]} (apt-get)"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# ensure_rust: the pinned toolchain with the wasm target.
ensure_rust() {
    command -v cargo >/dev/null || fail "cargo not found: install Rust with rustup (https://rustup.rs)"
    (cd "$REPO_ROOT" && rustup show active-toolchain >/dev/null 2>&1) || (cd "$REPO_ROOT" && rustup toolchain install)
    (cd "$REPO_ROOT" && rustup target list --installed | grep -qx wasm32-unknown-unknown) \
        || (cd "$REPO_ROOT" && rustup target add wasm32-unknown-unknown)
}

# ensure_openai_sdk: the official OpenAI Python SDK (PyPI, pinned) in a virtualenv kept with the
# build cache (outside the clone); exports ECLOUD_OPENAI_PYTHON, the interpreter that has it.
OPENAI_SDK_VERSION=3.63.0
ensure_openai_sdk() {
    apt_install python3-venv
    local venv="${ECLOUD_VENV_DIR:-$CARGO_TARGET_DIR/openai-venv}"
    if ! "$venv/bin/python" -c "import openai, sys; sys.exit(openai.__version__ != '$OPENAI_SDK_VERSION')" 2>/dev/null; then
        step "installing the openai Python SDK $OPENAI_SDK_VERSION (pip, into $venv)"
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check "openai==$OPENAI_SDK_VERSION"
    fi
    export ECLOUD_OPENAI_PYTHON="$venv/bin/python"
}

# start_test_postgres: PostgreSQL on loopback for the indexer's storage tests; exports
# ECLOUD_TEST_POSTGRES_URL. Debian's package creates and owns the cluster.
start_test_postgres() {
    apt_install postgresql
    local version
    version="$(ls /etc/postgresql | sort -V | tail -1)"
    [[ -n "$version" ]] || fail "postgresql installed but no cluster under /etc/postgresql"
    # After an unclean stop, crash recovery can take minutes on a busy disk: give pg_ctl time
    # and then wait until the server accepts connections.
    pg_ctlcluster "$version" main status >/dev/null 2>&1 \
        || pg_ctlcluster "$version" main start -- -t 600 \
        || echo "pg_ctlcluster start did not finish; waiting for the server"
    local waited=0
    until pg_isready -q -h 127.0.0.1 -p 5432; do
        ((waited++ < 600)) || fail "PostgreSQL did not accept connections within 10 minutes"
        sleep 1
    done
    local password="ecloud-test"
    su postgres -c "psql -q -c \"ALTER USER postgres PASSWORD '$password'\"" >/dev/null
    export ECLOUD_TEST_POSTGRES_URL="postgres://postgres:$password@127.0.0.1:5432/postgres"
    echo "PostgreSQL $version on 127.0.0.1:5432"
}

# ---------------------------------------------------------------- a local stack (demo, examples)

# Processes started with start_bg; stop_on_exit stops them when the script ends.
STARTED_PIDS=()

# start_bg LOG CMD...: runs CMD in the background, its output in LOG.
start_bg() {
    local log=$1
    shift
    "$@" >"$log" 2>&1 &
    STARTED_PIDS+=($!)
}

# stop_on_exit: on exit (also after Ctrl-C) stop every process start_bg started.
stop_on_exit() {
    trap _stop_started EXIT
    trap 'exit 130' INT TERM
}
_stop_started() {
    local code=$?
    trap - EXIT INT TERM
    if [[ ${#STARTED_PIDS[@]} -gt 0 ]]; then
        echo
        echo "stopping: ${STARTED_PIDS[*]}"
        kill "${STARTED_PIDS[@]}" 2>/dev/null || true
        wait "${STARTED_PIDS[@]}" 2>/dev/null || true
    fi
    exit "$code"
}

# N distinct free loopback ports on one line. All are held open until every one is chosen:
# separate free_port calls can be handed the same port (seen: the demo's worker got one port
# for --metrics-listen and --outputs-listen and failed with "Address already in use").
free_ports() {
    python3 -c 'import socket, sys
held = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in held:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in held))' "$1"
}
free_port() { free_ports 1; }
# json_field FILE KEY: a top-level field of a JSON file ("" for null).
json_field() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d[sys.argv[2]] or "")' "$1" "$2"; }

# A raw amount in text meant for people: a standalone number of 19 to 39 digits (a u128 has at
# most 39; a hex hash is longer or has letters) or the word "yocto" (any case). The same rule
# as cli/tests/text_amounts.rs; amounts for people go through chain_client::format_near.
RAW_AMOUNT_RE='(^|[^[:alnum:]])[0-9]{19,39}([^[:alnum:]]|$)|[Yy][Oo][Cc][Tt][Oo]'
# check_no_raw_amounts FILE...: fails listing every line (FILE:LINE: text) with a raw amount.
check_no_raw_amounts() {
    local found
    found=$(grep -HnE "$RAW_AMOUNT_RE" "$@" | sed 's/\x1b\[[0-9;]*m//g') || true
    [[ -z "$found" ]] || fail "raw amounts (19-39 digit numbers or 'yocto') in text meant for people; format them with chain_client::format_near:
$found"
}

# wait_for URL WHAT LOG: polls until the URL answers (up to 60 s).
wait_for() {
    for _ in $(seq 1 120); do
        curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
        sleep 0.5
    done
    tail -n 20 "$3" >&2 || true
    fail "$2 did not come up ($1); its log: $3"
}

# build_stack PKG...: the contracts (into $ECLOUD_WASM_DIR) and these binary packages (debug).
build_stack() {
    "$REPO_ROOT/scripts/build-contracts.sh" >/dev/null
    local pkgs=()
    for p in "$@"; do pkgs+=(-p "$p"); done
    (cd "$REPO_ROOT" && cargo build --locked --quiet "${pkgs[@]}")
}

# start_localnet DIR PORT: a fresh localnet in DIR/localnet with its RPC on 127.0.0.1:PORT
# (log DIR/localnet.log), stopped on exit.
start_localnet() {
    local dir=$1 port=$2
    "$CARGO_TARGET_DIR/debug/localnet" --home "$dir/localnet" init >/dev/null
    start_bg "$dir/localnet.log" "$CARGO_TARGET_DIR/debug/localnet" --home "$dir/localnet" run \
        --rpc-addr "127.0.0.1:$port"
    wait_for "http://127.0.0.1:$port/status" localnet "$dir/localnet.log"
}

# deploy_localnet DIR RPC "NAME..." [ecloud-deploy contracts options...]: as test.near (the
# genesis account, whose key is localnet's validator_key.json), deploys the registry (with a
# new development CA, secret in DIR/dev-ca.hex), marketplace, model factory and a NEP-141
# test token (USDT), writes DIR/deployment.json, and creates <NAME>.test.near with 200 NEAR
# each. Every key is a near-cli credentials file in DIR/credentials/localnet/; ecloud-deploy's
# report (with the near-cli commands that check the deployment) is in DIR/deploy.log. The
# contract accounts keep no key (ecloud-deploy deletes the deployer's): nothing here signs as
# them, so --keep-access-keys is not needed.
deploy_localnet() {
    local dir=$1 rpc=$2 names=$3
    shift 3
    local root=test.near creds="$dir/credentials/localnet"
    mkdir -p "$creds"
    # near-cli-rs reads `private_key`; neard's key file calls it `secret_key`.
    python3 -c 'import json, sys
k = json.load(open(sys.argv[1]))
print(json.dumps({"account_id": k["account_id"], "public_key": k["public_key"],
                  "private_key": k.get("private_key") or k["secret_key"]}, indent=2))' \
        "$dir/localnet/validator_key.json" >"$creds/$root.json"
    chmod 600 "$creds/$root.json"
    local deploy=("$CARGO_TARGET_DIR/debug/ecloud-deploy" --network localnet --rpc-url "$rpc"
                  --account-id "$root" --credentials "$creds/$root.json")
    "${deploy[@]}" contracts --wasm-dir "$ECLOUD_WASM_DIR" --new-dev-ca "$dir/dev-ca.hex" \
        --test-token USDT --out "$dir/deployment.json" "$@" | tee "$dir/deploy.log" | sed 's/^/   /'
    # shellcheck disable=SC2086 # names is a space-separated list
    "${deploy[@]}" accounts $names --balance 200 --credentials-dir "$creds" | sed 's/^/   /'
}

# ensure_near_cli: near-cli-rs (the `near` command) for the near-cli checks; exports NEAR_CLI.
# Takes $NEAR_CLI if set, else a `near` 0.30 on PATH, else installs 0.30.1 once with cargo into
# ~/.cache/enclave-cloud/tools (outside any clone, so CI's cache keeps it; a release build of
# tens of minutes on two cores), without the ledger feature, which needs libudev.
NEAR_CLI_VERSION=0.30.1
ensure_near_cli() {
    if [[ -n "${NEAR_CLI:-}" ]]; then
        NEAR_CLI="$(command -v "$NEAR_CLI")" || fail "NEAR_CLI is not an executable"
        export NEAR_CLI
        return 0
    fi
    if command -v near >/dev/null && near --version 2>/dev/null | grep -q '^near-cli-rs 0\.30\.'; then
        NEAR_CLI="$(command -v near)"
        export NEAR_CLI
        return 0
    fi
    local root="${XDG_CACHE_HOME:-$HOME/.cache}/enclave-cloud/tools"
    export NEAR_CLI="$root/bin/near"
    if [[ -x "$NEAR_CLI" ]] && "$NEAR_CLI" --version 2>/dev/null | grep -qF "$NEAR_CLI_VERSION"; then
        return 0
    fi
    step "installing near-cli-rs $NEAR_CLI_VERSION into $root (cargo install, once)"
    apt_install pkg-config libssl-dev
    CARGO_TARGET_DIR="$CARGO_TARGET_DIR/near-cli-rs" cargo install --quiet --locked \
        --no-default-features --version "$NEAR_CLI_VERSION" --root "$root" near-cli-rs
    "$NEAR_CLI" --version >/dev/null || fail "near-cli-rs did not install into $root"
}
