#!/usr/bin/env bash
# enclave-cloud end to end on one machine: a local NEAR chain, the contracts, the indexer, a
# worker (dev attestation, all-MiniLM-L6-v2 served from weights its owner encrypted, released by the
# owner's key keeper only to the attested node, and gemma-3-270m) and a user whose
# encrypted job is answered and paid for, then a streamed chat through `ecloud proxy` with the
# official OpenAI Python SDK, paid through a payment channel.
#
#   scripts/demo.sh            run the demo, print a summary, stop everything
#   scripts/demo.sh --keep     leave it all running for exploration until Ctrl-C
#
# Ctrl-C stops every process it started. Logs and keys: $ECLOUD_DEMO_DIR (default .demo/).
# At its end it fails if its output or the worker's log shows a raw yocto amount.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

keep=0
for arg in "$@"; do
    case "$arg" in
        --keep) keep=1 ;;
        -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) fail "unknown argument $arg (try --help)" ;;
    esac
done

demo="${ECLOUD_DEMO_DIR:-$REPO_ROOT/.demo}"
stop_on_exit

# Everything the demo prints (stdout and stderr) also goes to a transcript, checked at the end
# for raw amounts; fds 3 and 4 keep the terminal.
transcript=$(mktemp)
exec 3>&1 4>&2
exec > >(tee "$transcript") 2>&1
transcript_pid=$!

step "1/10 toolchain and system packages"
ensure_rust
apt_install binaryen pkg-config python3-pip curl

step "2/10 building the contracts and the binaries (first run: many minutes)"
build_stack localnet ecloud-deploy indexer worker ecloud
"$REPO_ROOT/explorer/build.sh"
bin="$CARGO_TARGET_DIR/debug"
eval "$("$REPO_ROOT/worker/scripts/fetch-model.sh")"
eval "$("$REPO_ROOT/worker/scripts/fetch-gemma.sh")"
ensure_openai_sdk

rm -rf "$demo" && mkdir -p "$demo/credentials"
read -r rpc_port indexer_port metrics_port outputs_port api_port proxy_port <<<"$(free_ports 6)"
rpc="http://127.0.0.1:$rpc_port"
indexer="http://127.0.0.1:$indexer_port"

step "3/10 localnet on $rpc"
start_localnet "$demo" "$rpc_port"

step "4/10 deploying the registry, marketplace, model factory and a NEP-141 test token"
root=test.near
deploy_localnet "$demo" "$rpc" "operator trainer alice bob carol" --max-inline-bytes 10240
registry=$(json_field "$demo/deployment.json" registry)
market=$(json_field "$demo/deployment.json" marketplace)
factory=$(json_field "$demo/deployment.json" model_factory)
token=$(json_field "$demo/deployment.json" token)
start_height=$(json_field "$demo/deployment.json" start_height)
operator="operator.$root"; trainer="trainer.$root"; user="alice.$root"
backers=("bob.$root" "carol.$root")
# 1000 NEAR per million input tokens: a short text costs about 0.01 NEAR.
price_per_million=1000000000000000000000000000
# gemma-3-270m: 10 NEAR per million tokens in, 20 out (a short chat costs about 0.001 NEAR).
chat_model=gemma
chat_price="$chat_model:10000000000000000000000000:20000000000000000000000000"

step "5/10 indexer on $indexer"
start_bg "$demo/indexer.log" "$bin/indexer" --source neardata --source-url "$rpc" \
    --data-dir "$demo/indexer" --registry "$registry" --marketplace "$market" \
    --factory "$factory" --payment-tokens "$token" --start-height "$start_height" \
    --listen "127.0.0.1:$indexer_port" --explorer-dir "$REPO_ROOT/explorer/dist" --rpc-url "$rpc"
wait_for "$indexer/v1/status" indexer "$demo/indexer.log"

model=minilm
ecloud=("$bin/ecloud" --deployment "$demo/deployment.json" --rpc-url "$rpc" --indexer-url "$indexer"
        --credentials-dir "$demo/credentials" --keys-dir "$demo/keys")
step "6/10 model '$model': weights encrypted by its owner, created through the factory with a 10 NEAR crowdfund; bob and carol back it (5 NEAR each + their token storage)"
# Only the owner's keeper holds the key (mode 0600); the manifest names the ciphertext and its
# hash, and only attested enclaves the manifest allows ever get the key.
"${ecloud[@]}" --account-id "$root" model encrypt --weights "$ECLOUD_MINILM_DIR/model.safetensors" \
    --out "$demo/minilm.safetensors.enc" --new-key "$demo/minilm.key" | sed 's/^/   /'
weights_hash=$(sha256sum "$demo/minilm.safetensors.enc" | cut -d' ' -f1)
cat >"$demo/manifest.json" <<JSON
{"name": "all-MiniLM-L6-v2", "weights_hash": "$weights_hash",
 "encrypted_weights_uri": "file://$demo/minilm.safetensors.enc",
 "training_data_manifest_hash": "$weights_hash", "training_data_manifest_uri": "",
 "training_image_measurement": "", "allowed_enclave_measurements": ["dev"], "licence": "apache-2.0"}
JSON
"${ecloud[@]}" --account-id "$root" model create "$model" --manifest "$demo/manifest.json" \
    --name "MiniLM revenue" --symbol MINI --decimals 6 --goal 10 --token-price 1 \
    --crowdfund-duration 1d --beneficiary "$trainer" | sed 's/^/   /'
for backer in "${backers[@]}"; do
    "${ecloud[@]}" --account-id "$backer" model contribute "$model" --amount 5.01 | sed 's/^/   /'
done
"${ecloud[@]}" --account-id "$root" model finalize "$model" | sed 's/^/   /'

step "7/10 worker: keys sealed in $demo/worker, dev attestation, registered by $operator"
worker=("$bin/worker" --data-dir "$demo/worker")
attest=(--provider dev --dev-ca-key-file "$demo/dev-ca.hex")
"${worker[@]}" init >/dev/null
"${worker[@]}" register --rpc-url "$rpc" --operator "$operator" --registry "$registry" \
    --marketplace "$market" --credentials "$demo/credentials/localnet/$operator.json" "${attest[@]}" \
    --region local --price "$model:$price_per_million:0" --price "$chat_price" \
    --endpoint "http://127.0.0.1:$api_port" | sed 's/^/   /'
# The registration is final on chain; the indexer lists the node once it has followed that block.
node_id=$(json_field "$demo/worker/node.json" node_id)
wait_for "$indexer/v1/nodes/$node_id" "node $node_id in the indexer" "$demo/indexer.log"
start_bg "$demo/worker.log" "${worker[@]}" run --rpc-url "$rpc" --indexer-url "$indexer" \
    --model "$model=all-MiniLM-L6-v2" --backend embedded --model-dir "$ECLOUD_MINILM_DIR" \
    --model "$chat_model=gemma-3-270m" --gemma-gguf "$ECLOUD_GEMMA_GGUF" \
    --api-listen "127.0.0.1:$api_port" --settle-interval 2s --factory "$factory" \
    --metrics-listen "127.0.0.1:$metrics_port" --outputs-listen "127.0.0.1:$outputs_port" \
    "${attest[@]}"
wait_for "http://127.0.0.1:$metrics_port/metrics" "worker metrics" "$demo/worker.log"
# The owner's key keeper grants the model key, sealed to the node's attested key; the worker
# fetches the ciphertext, opens its grant, decrypts in memory and measures the weights.
start_bg "$demo/keeper.log" "${ecloud[@]}" --account-id "$root" model keeper --model "$model" \
    --key-file "$demo/minilm.key" --interval 2s
echo "   key keeper running (log: $demo/keeper.log); waiting for the node to serve '$model' from its encrypted weights"
for _ in $(seq 1 600); do
    grep -q "serving the model from its encrypted weights" "$demo/worker.log" && break
    grep -q "REFUSED encrypted weights" "$demo/worker.log" && break
    sleep 0.5
done
grep -q "serving the model from its encrypted weights" "$demo/worker.log" \
    || { tail -n 30 "$demo/worker.log" "$demo/keeper.log" >&2; fail "the node does not serve '$model' from its encrypted weights (logs: $demo/worker.log, $demo/keeper.log)"; }
grep "granted node=" "$demo/keeper.log" | head -n 1 | sed 's/^/   keeper: /'
echo "   node $node_id serves '$model' from encrypted weights $weights_hash (measured into its attestation)"

step "8/10 alice submits an encrypted embeddings job; the worker answers; alice decrypts it"
job=$("${ecloud[@]}" --account-id "$user" --json job submit --model "$model" \
    --embed "enclave-cloud runs AI inside attested enclaves" --max-cost 0.5 \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["job_id"])')
echo "   job $job submitted (input sealed to the node's attested key)"
status=""
for _ in $(seq 1 240); do
    status=$("${ecloud[@]}" --json job status "$job" 2>/dev/null \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])' || true)
    [[ "$status" == settled || "$status" == cancelled ]] && break
    sleep 0.5
done
[[ "$status" == settled ]] || { tail -n 30 "$demo/worker.log" >&2; fail "job $job is '$status' after 2 minutes (worker log: $demo/worker.log)"; }
"${ecloud[@]}" --account-id "$user" job result "$job" | sed 's/^/   /'

step "9/10 payouts: provider, treasury, and the model's holders (bob and carol claim their royalty share)"
curl -fsS "$indexer/v1/jobs/$job" | python3 -c '
import json, sys
job = json.load(sys.stdin)
print("   job %s in the indexer: %s; the provider share goes to operator %s" % (job["job_id"],
      " -> ".join(e["event"] for e in job["timeline"]), job["operator"]))
'
"${ecloud[@]}" job status "$job" | sed 's/^/   /'
for backer in "${backers[@]}"; do
    "${ecloud[@]}" --account-id "$backer" model claim "$model" | sed 's/^/   /'
done

step "10/10 alice chats with gemma-3-270m through 'ecloud proxy' and the OpenAI Python SDK: streamed, sealed to the enclave, signed, paid by a channel"
start_bg "$demo/proxy.log" "${ecloud[@]}" --account-id "$user" proxy \
    --listen "127.0.0.1:$proxy_port" --deposit 0.5
wait_for "http://127.0.0.1:$proxy_port/v1/models" "ecloud proxy" "$demo/proxy.log"
printf '   gemma: '
"$ECLOUD_OPENAI_PYTHON" "$REPO_ROOT/examples/openai_chat.py" "http://127.0.0.1:$proxy_port/v1" \
    "$chat_model" "Name three colours." | sed 's/^/   /'
echo "   the node settles the channel's newest voucher on chain within seconds:"
for _ in $(seq 1 60); do
    "${ecloud[@]}" --account-id "$user" --json channel list >"$demo/channels.json" 2>/dev/null || true
    python3 -c 'import json,sys; cs=json.load(open(sys.argv[1]))["channels"]; sys.exit(0 if cs and all(c.get("owed") and c.get("settled") == c["owed"] for c in cs) else 1)' "$demo/channels.json" 2>/dev/null && break
    sleep 1
done
"${ecloud[@]}" --account-id "$user" channel list | sed 's/^/   /'

cat <<EOF

$(printf '\033[1;32m')enclave-cloud demo: done$(printf '\033[0m')
  chain (JSON-RPC)     $rpc            contracts: $registry, $market, $factory, $token
  explorer page        $indexer/   (wallet: Connect wallet -> imported key: an account id and the private_key of $demo/credentials/localnet/<account>.json)
  REST API             $indexer/v1/nodes   $indexer/v1/jobs/$job   $indexer/v1/models/$model
  OpenAPI              $indexer/openapi.json
  worker               log $demo/worker.log, keys sealed in $demo/worker
  worker API (OHTTP)   http://127.0.0.1:$api_port/.well-known/ohttp-gateway   /v1/attestation/report?nonce=<64 hex>   /v1/signature/{id}
  OpenAI endpoint      http://127.0.0.1:$proxy_port/v1   (ecloud proxy: any OpenAI SDK; log $demo/proxy.log)
  worker metrics       http://127.0.0.1:$metrics_port/metrics
  worker outputs       http://127.0.0.1:$outputs_port/v1/outputs/{job_id}   (outputs over the inline limit, by hash + URI)
  accounts             $demo/credentials (near-cli format), deployment record $demo/deployment.json
EOF

# The check: the transcript so far (the tee ends once fds 1 and 2 leave its pipe) and the
# worker's log.
exec 1>&3 2>&4
for _ in $(seq 1 50); do kill -0 "$transcript_pid" 2>/dev/null || break; sleep 0.1; done
check_no_raw_amounts "$transcript" "$demo/worker.log"
echo "no raw amounts in the demo's output or the worker's log"
rm -f "$transcript"

if [[ $keep -eq 1 ]]; then
    echo
    echo "running until Ctrl-C (--keep)"
    wait
fi
