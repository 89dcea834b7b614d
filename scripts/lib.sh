# Shared helpers for the scripts in this folder. Source it; do not run it.
# Sets REPO_ROOT and CARGO_TARGET_DIR (a cache outside the clone when CI=true).

set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export REPO_ROOT

if [[ -z "${CARGO_TARGET_DIR:-}" ]]; then
    if [[ "${CI:-}" == "true" ]]; then
        export CARGO_TARGET_DIR="$HOME/.cache/enclave-cloud/target"
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
