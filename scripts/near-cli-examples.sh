#!/usr/bin/env bash
# Runs the README's "near-cli examples" as written, on a fresh localnet, and checks what they
# did, so the examples stay true.
#
#   scripts/near-cli-examples.sh            # NEAR_CLI: the near-cli-rs binary [default: a 0.30
#                                           #   `near` on PATH, else installed once into
#                                           #   ~/.cache/enclave-cloud/tools by lib.sh]
#   scripts/near-cli-examples.sh --list     # print the blocks it would run, run nothing
#
# It builds the contracts, localnet, ecloud-deploy and the worker, starts localnet, deploys
# like the demo (registry with a development CA, marketplace, model factory, test token) and
# creates the examples' accounts, points near-cli at a scratch config (XDG_CONFIG_HOME) whose
# credentials are the deployment's, then runs every ```sh block between the
# "near-cli-examples:begin/end" markers of README.md in order, in one shell with `set -e`,
# from a scratch directory holding deployment.json and dev-ca.hex. Each block is named by the
# `<!-- example: NAME -->` line before it; `check_NAME` below verifies its effect through
# JSON-RPC (independently of near-cli), `before_NAME` prepares the chain (localnet's clock), and
# a block marked `expect-error="TEXT"` must fail with TEXT in its output. Finally it runs the
# near-cli commands ecloud-deploy printed to check the deployment.
# Scratch directory: $ECLOUD_EXAMPLES_DIR (default: a new temporary directory).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

readme="$REPO_ROOT/README.md"

# extract_blocks README OUT_DIR: writes OUT_DIR/NN-NAME.sh per block and prints
# "NN NAME EXPECTED_ERROR" lines (EXPECTED_ERROR empty for blocks that must succeed).
extract_blocks() {
    python3 - "$1" "$2" <<'PY'
import os, re, sys
readme, out = sys.argv[1], sys.argv[2]
text = open(readme).read()
m = re.search(r"<!-- near-cli-examples:begin -->(.*?)<!-- near-cli-examples:end -->", text, re.S)
if not m:
    sys.exit(f"{readme}: no <!-- near-cli-examples:begin/end --> markers")
lines = m.group(1).split("\n")
blocks, name, expect, i = [], None, "", 0
while i < len(lines):
    line = lines[i]
    marker = re.fullmatch(r'<!-- example: ([a-z0-9-]+)(?: expect-error="([^"]*)")? -->', line.strip())
    if marker:
        name, expect = marker.group(1), marker.group(2) or ""
    elif line.strip() == "```sh":
        if name is None:
            sys.exit(f"{readme}: a ```sh block without an <!-- example: NAME --> line before it")
        body = []
        i += 1
        while lines[i].strip() != "```":
            body.append(lines[i])
            i += 1
        blocks.append((name, expect, "\n".join(body) + "\n"))
        name, expect = None, ""
    elif line.strip() and name is not None:
        sys.exit(f"{readme}: <!-- example: {name} --> is not followed by a ```sh block")
    i += 1
names = [b[0] for b in blocks]
dupes = {n for n in names if names.count(n) > 1}
if dupes or not blocks:
    sys.exit(f"{readme}: duplicate example names {sorted(dupes)}" if dupes else f"{readme}: no examples")
os.makedirs(out, exist_ok=True)
for n, (name, expect, body) in enumerate(blocks, 1):
    open(os.path.join(out, f"{n:02d}-{name}.sh"), "w").write(body)
    print(f"{n:02d} {name} {expect}")
PY
}

if [[ "${1:-}" == "--list" ]]; then
    list_dir="$(mktemp -d)"
    extract_blocks "$readme" "$list_dir" | while read -r n name expect; do
        printf '\n# --- %s %s %s\n' "$n" "$name" "${expect:+(must fail with: $expect)}"
        cat "$list_dir/$n-$name.sh"
    done
    rm -rf "$list_dir"
    exit 0
fi
[[ $# -eq 0 ]] || fail "unknown argument $1 (try --list)"

work="${ECLOUD_EXAMPLES_DIR:-$(mktemp -d)}"
stop_on_exit

step "1/6 toolchain, packages, build (contracts, localnet, ecloud-deploy, worker)"
ensure_rust
apt_install binaryen pkg-config curl jq openssl
build_stack localnet ecloud-deploy worker
ensure_near_cli
near_path=$NEAR_CLI
echo "near-cli: $near_path ($("$near_path" --version 2>/dev/null || echo 'version unknown'))"

rm -rf "$work" && mkdir -p "$work"
port=$(free_port)
rpc="http://127.0.0.1:$port"
step "2/6 localnet on $rpc, contracts and accounts (scratch: $work)"
start_localnet "$work" "$port"
deploy_localnet "$work" "$rpc" "operator trainer alice bob"

step "3/6 near-cli configuration (XDG_CONFIG_HOME=$work/config)"
# near-cli-rs reads $XDG_CONFIG_HOME/near-cli/config.toml (version 5 of its format); the README's
# localnet-connection block appends the localnet connection. The blocks run with HOME in the
# scratch directory, so their ~/.near-credentials is the deployment's credentials directory and
# their $LOCALNET_HOME this localnet's home.
export XDG_CONFIG_HOME="$work/config"
mkdir -p "$XDG_CONFIG_HOME/near-cli" "$work/bin" "$work/home"
ln -sfn "$work/credentials" "$work/home/.near-credentials"
cat >"$XDG_CONFIG_HOME/near-cli/config.toml" <<EOF
version = "5"
credentials_home_dir = "$work/home/.near-credentials"

[network_connection]
EOF
# The README's commands are `near` and `worker`.
ln -sf "$near_path" "$work/bin/near"
ln -sf "$CARGO_TARGET_DIR/debug/worker" "$work/bin/worker"
export PATH="$work/bin:$PATH"

# ---------------------------------------------------------------- checks, through JSON-RPC

# view CONTRACT METHOD ARGS_JSON: the view's JSON result.
view() {
    local args
    args=$(printf '%s' "$3" | base64 -w0)
    curl -fsS "$rpc" -H 'content-type: application/json' -d "{\"jsonrpc\": \"2.0\", \"id\": 1,
        \"method\": \"query\", \"params\": {\"request_type\": \"call_function\", \"finality\": \"final\",
        \"account_id\": \"$1\", \"method_name\": \"$2\", \"args_base64\": \"$args\"}}" \
        | python3 -c 'import json, sys
r = json.load(sys.stdin)
if "result" not in r or "result" not in r["result"]:
    sys.exit("view failed: %s" % json.dumps(r.get("error") or r.get("result")))
print(bytes(r["result"]["result"]).decode())'
}
# balance ACCOUNT: the account's NEAR balance in yocto.
balance() {
    curl -fsS "$rpc" -H 'content-type: application/json' -d "{\"jsonrpc\": \"2.0\", \"id\": 1,
        \"method\": \"query\", \"params\": {\"request_type\": \"view_account\", \"finality\": \"final\",
        \"account_id\": \"$1\"}}" | jq -r .result.amount
}
# expect WHAT ACTUAL EXPECTED
expect() {
    [[ "$2" == "$3" ]] || fail "check failed: $1: got '$2', expected '$3'"
    echo "   ok: $1 = $3"
}

# expect_share WHAT ACTUAL EXPECTED: a pro-rata revenue share, which the model token rounds
# down (at most one unit of dust per holder).
expect_share() {
    python3 -c "import sys; sys.exit(not $3 - 1 <= $2 <= $3)" \
        || fail "check failed: $1: got '$2', expected '$3' (or one unit less)"
    echo "   ok: $1 = $2 (of $3 pro rata)"
}

check_localnet-deployer-key() {
    expect "the deployer's near-cli key file" \
        "$(jq -r '"\(.account_id) \(.public_key)"' "$HOME/.near-credentials/localnet/$ROOT.json")" \
        "$(jq -r '"\(.account_id) \(.public_key)"' "$LOCALNET_HOME/validator_key.json")"
}
check_setup() {
    expect "contracts read from deployment.json" "$REGISTRY $MARKETPLACE" \
        "$(json_field deployment.json registry) $(json_field deployment.json marketplace)"
}
check_node-keys() {
    expect "exported key is the enclave's attested key" "$NODE_KEY" "$(jq -r .near_public_key bundle.json)"
}
check_add-node-key() {
    local perm
    perm=$(curl -fsS "$rpc" -H 'content-type: application/json' -d "{\"jsonrpc\": \"2.0\", \"id\": 1,
        \"method\": \"query\", \"params\": {\"request_type\": \"view_access_key\", \"finality\": \"final\",
        \"account_id\": \"$OPERATOR\", \"public_key\": \"$NODE_KEY\"}}" \
        | jq -r .result.permission.FunctionCall.receiver_id)
    expect "the node key is a function-call key for" "$perm" "$REGISTRY"
    # 0.05 NEAR less the storage of the balance entry itself.
    local storage
    storage=$(view "$MARKETPLACE" storage_balance_of "{\"account_id\": \"$OPERATOR\"}" | jq -r .)
    python3 -c "import sys; sys.exit(not 40 * 10**21 < $storage <= 50 * 10**21)" \
        || fail "check failed: the operator's storage balance at the marketplace is $storage yocto"
    echo "   ok: operator's storage balance at the marketplace = $storage yocto"
}
check_register-node() {
    local page
    page=$(view "$REGISTRY" list_nodes '{}')
    expect "node $NODE_ID listed, active, operated by $OPERATOR" \
        "$(jq -r --arg id "$NODE_ID" '.nodes[] | select(.node_id == $id) | "\(.status) \(.operator)"' <<<"$page")" \
        "active $OPERATOR"
}
check_node-upkeep() {
    expect "region and capacity after update_node" \
        "$(view "$REGISTRY" get_node "{\"node_id\": \"$NODE_ID\"}" | jq -r '"\(.region) \(.capacity)"')" \
        "eu-central 8"
}
check_create-model() {
    expect "the factory lists $MODEL with its token" \
        "$(view "$FACTORY" model "{\"model_id\": \"$MODEL\"}" | jq -r .token)" "$MODEL_TOKEN"
}
check_confirm-model() {
    expect "the model's royalty account" \
        "$(view "$MARKETPLACE" royalty_account "{\"model_id\": \"$MODEL\"}" | jq -r .)" "$MODEL_TOKEN"
}
check_crowdfund() {
    expect "crowdfund status" "$(view "$MODEL_TOKEN" crowdfund '{}' | jq -r .status)" succeeded
    expect "backer's tokens (10 NEAR at 1 NEAR per token, 6 decimals)" \
        "$(view "$MODEL_TOKEN" ft_balance_of "{\"account_id\": \"$BACKER\"}" | jq -r .)" 10000000
}
check_transfer() {
    expect "app user's tokens" \
        "$(view "$MODEL_TOKEN" ft_balance_of "{\"account_id\": \"$APP_USER\"}" | jq -r .)" 2000000
}
before_revenue() { backer_near_before=$(balance "$BACKER"); }
check_revenue() {
    # bob holds 8 of 10 tokens: 0.8 NEAR and 9.6 USDT of the deposits, all claimed.
    expect "backer's claimable after the claims" \
        "$(view "$MODEL_TOKEN" claimable_all "{\"account_id\": \"$BACKER\"}" | jq -r '[.[].amount] | join(" ")')" "0 0"
    expect_share "backer's USDT (9.6 of 12 deposited)" \
        "$(view "$TOKEN" ft_balance_of "{\"account_id\": \"$BACKER\"}" | jq -r .)" 9600000
    expect_share "the app user's share (0.2 NEAR) is still claimable" \
        "$(view "$MODEL_TOKEN" claimable "{\"account_id\": \"$APP_USER\", \"asset\": {\"kind\": \"near\"}}" | jq -r .)" \
        200000000000000000000000
    local gained
    gained=$(python3 -c "print(int('$(balance "$BACKER")') - int('$backer_near_before'))")
    # 0.8 NEAR in, less the gas and deposits of the backer's four transactions (< 0.01 NEAR).
    python3 -c "import sys; sys.exit(not 790 * 10**21 < $gained < 800 * 10**21)" \
        || fail "check failed: backer's NEAR changed by $gained yocto, expected 0.8 NEAR less fees"
    echo "   ok: backer's NEAR balance grew by $gained yocto (0.8 NEAR less fees)"
}
check_job-spec() {
    expect "job spec targets node" "$(jq -r .target.node_id job.json)" "$NODE_ID"
}
before_job-near() { user_near_before=$(balance "$APP_USER"); }
check_job-near() {
    expect "job $JOB_ID is gone after the cancel" \
        "$(view "$MARKETPLACE" get_job "{\"job_id\": \"$JOB_ID\"}")" null
    local spent
    spent=$(python3 -c "print(int('$user_near_before') - int('$(balance "$APP_USER")'))")
    # The cap and the storage came back: only gas was spent.
    python3 -c "import sys; sys.exit(not 0 < $spent < 5 * 10**21)" \
        || fail "check failed: the app user's NEAR fell by $spent yocto, expected gas only (< 0.005 NEAR)"
    echo "   ok: the app user's NEAR fell by $spent yocto (gas only: cap and storage refunded)"
}
check_job-token() {
    expect "token job $TOKEN_JOB_ID is gone after the cancel" \
        "$(view "$MARKETPLACE" get_job "{\"job_id\": \"$TOKEN_JOB_ID\"}")" null
    expect "the app user's USDT after the refund" \
        "$(view "$TOKEN" ft_balance_of "{\"account_id\": \"$APP_USER\"}" | jq -r .)" 100000000
    expect "the app user's storage balance at the marketplace after storage_withdraw" \
        "$(view "$MARKETPLACE" storage_balance_of "{\"account_id\": \"$APP_USER\"}" | jq -r .)" 0
}
check_unstake() {
    expect "node status after deregister" \
        "$(view "$REGISTRY" get_node "{\"node_id\": \"$NODE_ID\"}" | jq -r .status)" deregistered
    expect "unbonding stake" \
        "$(view "$REGISTRY" get_operator "{\"account_id\": \"$OPERATOR\"}" | jq -r .unbonding)" \
        100000000000000000000000000
}
# The unbonding delay (7 days) passes in one block: localnet skips a second per height.
before_withdraw-stake() {
    curl -fsS "$rpc" -H 'content-type: application/json' -d "{\"jsonrpc\": \"2.0\", \"id\": 1,
        \"method\": \"sandbox_fast_forward\", \"params\": {\"delta_height\": $((7 * 24 * 3600 + 60))}}" >/dev/null
    sleep 1
    operator_near_before=$(balance "$OPERATOR")
}
check_withdraw-stake() {
    expect "unbonding stake after withdraw" \
        "$(view "$REGISTRY" get_operator "{\"account_id\": \"$OPERATOR\"}" | jq -r .unbonding)" 0
    python3 -c "import sys; sys.exit(not int('$(balance "$OPERATOR")') - int('$operator_near_before') > 99 * 10**24)" \
        || fail "check failed: the operator did not get its 100 NEAR back"
    echo "   ok: the operator's 100 NEAR came back"
}

check_governance() {
    local governance
    governance=$(view "$MARKETPLACE" governance '{}')
    expect "the marketplace's governance delay" "$(jq -r .delay_ns <<<"$governance")" 3600000000000
    expect "the pending change's treasury" \
        "$(jq -r '.pending[0].change.setting.update_config.treasury' <<<"$governance")" "$BACKER"
    expect "the treasury before the delay" "$(view "$MARKETPLACE" get_config '{}' | jq -r .treasury)" "$ROOT"
}
check_governance-cancel() {
    expect "pending changes after cancel_change" "$(view "$MARKETPLACE" governance '{}' | jq -r '.pending | length')" 0
    expect "the treasury" "$(view "$MARKETPLACE" get_config '{}' | jq -r .treasury)" "$ROOT"
}

# ---------------------------------------------------------------- the README's blocks

step "4/6 extracting the README's near-cli examples"
blocks=$(extract_blocks "$readme" "$work/blocks")
echo "$blocks" | sed 's/^/   /'

step "5/6 running them in $work"
cd "$work"
export HOME="$work/home" LOCALNET_HOME="$work/localnet"
# The blocks come on fd 3: a command in a block must not eat the list from stdin.
while read -r n name expect_error <&3; do
    file="$work/blocks/$n-$name.sh"
    printf '\n\033[1m--- %s (%s)\033[0m\n' "$name" "$file"
    sed 's/^/   $ /' "$file"
    if declare -F "before_$name" >/dev/null; then "before_$name"; fi
    if [[ -n "$expect_error" ]]; then
        # In a command substitution with its own `set -e`: the failing command must end the
        # block, not this script.
        set +e
        output=$(set -e; source "$file" 2>&1)
        status=$?
        set -e
        if [[ $status -eq 0 ]]; then
            printf '%s\n' "$output"
            fail "example '$name' succeeded, but the README says it fails with '$expect_error'"
        fi
        printf '%s\n' "$output" | tail -n 15
        grep -qiF "$expect_error" <<<"$output" \
            || fail "example '$name' failed without '$expect_error' in its output"
        echo "   ok: failed as documented ($expect_error)"
    else
        # shellcheck disable=SC1090 # the README's block, in this shell (its variables carry on)
        source "$file"
    fi
    if declare -F "check_$name" >/dev/null; then "check_$name"; fi
done 3<<<"$blocks"

# ecloud-deploy ends its report with near-cli commands that check a deployment: run them too
# (now that the README's blocks have added the localnet connection).
step "6/6 the near-cli commands ecloud-deploy prints to check a deployment"
check_commands=$(sed -n 's/^ *\(near contract call-function as-read-only .*\)$/\1/p' "$work/deploy.log")
[[ -n "$check_commands" ]] || fail "ecloud-deploy printed no near-cli check commands ($work/deploy.log)"
while read -r command <&3; do
    echo "   \$ $command"
    eval "$command" >"$work/deploy-check.out" 2>&1 \
        || { cat "$work/deploy-check.out"; fail "ecloud-deploy's check command failed: $command"; }
done 3<<<"$check_commands"
echo "   ok: the $(wc -l <<<"$check_commands") commands ran"

printf '\n\033[1;32mnear-cli examples: every block of README.md ran and checked\033[0m (%s)\n' "$work"
