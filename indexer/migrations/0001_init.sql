-- enclave-cloud indexer schema. Portable SQL: runs unchanged on SQLite and PostgreSQL.
-- Conventions:
--   * every integer is BIGINT (decodes as i64 on both backends);
--   * token amounts (u128) are TEXT, zero-padded to 40 digits, so that ORDER BY and
--     comparisons on the text are numeric; the API strips the padding;
--   * `seq` is the event's position in the chain: block height * 1e6 + index in the block.
--     It is deterministic, so re-indexing produces the same keys and a replay is detectable.

CREATE TABLE checkpoint (
    id BIGINT PRIMARY KEY,
    height BIGINT NOT NULL,         -- last height fully processed (a block or a skipped height)
    block_hash TEXT NOT NULL,       -- hash of the last block that existed at or below `height`
    timestamp_ns BIGINT NOT NULL
);

CREATE TABLE counters (
    name TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);

CREATE TABLE rejected_events (
    seq BIGINT PRIMARY KEY,
    block_height BIGINT NOT NULL,
    receipt_id TEXT NOT NULL,
    executor_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    line TEXT NOT NULL
);

CREATE TABLE operators (
    operator TEXT PRIMARY KEY,
    staked TEXT NOT NULL DEFAULT '0000000000000000000000000000000000000000',
    unstaking TEXT NOT NULL DEFAULT '0000000000000000000000000000000000000000',
    slashed TEXT NOT NULL DEFAULT '0000000000000000000000000000000000000000'
);

CREATE TABLE nodes (
    node_id BIGINT PRIMARY KEY,
    operator TEXT NOT NULL,
    status TEXT NOT NULL,
    kind TEXT NOT NULL,
    signer_key TEXT NOT NULL,
    encryption_key TEXT NOT NULL,
    tcb_status TEXT NOT NULL,
    measurements TEXT NOT NULL,
    endpoint TEXT,
    region TEXT,
    capacity BIGINT NOT NULL,
    -- Cheapest output price over the node's models; '9'*40 (above any u128) when unpriced,
    -- so the price index serves ORDER BY directly on both backends.
    min_output_price TEXT NOT NULL DEFAULT '9999999999999999999999999999999999999999',
    registered_height BIGINT NOT NULL,
    registered_at_ns BIGINT NOT NULL,
    expires_at_ns BIGINT NOT NULL,
    last_heartbeat_ns BIGINT NOT NULL,
    jobs_settled BIGINT NOT NULL,
    requests_answered BIGINT NOT NULL
);
CREATE INDEX nodes_status ON nodes (status, node_id);
CREATE INDEX nodes_price ON nodes (min_output_price, node_id);

CREATE TABLE node_gpus (
    node_id BIGINT NOT NULL,
    device_id TEXT NOT NULL,
    model TEXT NOT NULL,
    driver_version TEXT,
    vbios_version TEXT,
    PRIMARY KEY (node_id, device_id)
);
CREATE INDEX node_gpus_model ON node_gpus (model, node_id);

CREATE TABLE node_prices (
    node_id BIGINT NOT NULL,
    model_id TEXT NOT NULL,
    input_per_million TEXT NOT NULL,
    output_per_million TEXT NOT NULL,
    PRIMARY KEY (node_id, model_id)
);
CREATE INDEX node_prices_model ON node_prices (model_id, output_per_million, node_id);

CREATE TABLE node_status_history (
    node_id BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    status TEXT NOT NULL,
    block_height BIGINT NOT NULL,
    timestamp_ns BIGINT NOT NULL,
    PRIMARY KEY (node_id, seq)
);

CREATE TABLE jobs (
    job_id BIGINT PRIMARY KEY,
    user_id TEXT NOT NULL,
    model_id TEXT NOT NULL,
    asset TEXT NOT NULL,
    price_cap TEXT NOT NULL,
    claim_deadline_ns BIGINT NOT NULL,
    deadline_ns BIGINT NOT NULL,
    target_node BIGINT,
    target_region TEXT,
    target_gpu TEXT,
    target_max_price TEXT,
    input TEXT NOT NULL,
    user_key TEXT NOT NULL,
    status TEXT NOT NULL,
    node_id BIGINT,
    operator TEXT,
    input_tokens BIGINT,
    output_tokens BIGINT,
    output TEXT,
    output_hash TEXT,
    cost TEXT,
    provider_amount TEXT,
    royalty TEXT,
    protocol_fee TEXT,
    refund TEXT,
    cancel_reason TEXT,
    slashed TEXT,
    created_seq BIGINT NOT NULL,
    created_height BIGINT NOT NULL,
    created_ns BIGINT NOT NULL,
    updated_height BIGINT NOT NULL
);
CREATE INDEX jobs_open ON jobs (status, created_seq);
CREATE INDEX jobs_user ON jobs (user_id, job_id);
CREATE INDEX jobs_node ON jobs (node_id, job_id);

CREATE TABLE requests (
    request_id BIGINT PRIMARY KEY,
    caller TEXT NOT NULL,
    model_id TEXT NOT NULL,
    deposit TEXT NOT NULL,
    input TEXT NOT NULL,
    status TEXT NOT NULL,
    node_id BIGINT,
    input_tokens BIGINT,
    output_tokens BIGINT,
    cost TEXT,
    provider_amount TEXT,
    royalty TEXT,
    protocol_fee TEXT,
    refund TEXT,
    created_seq BIGINT NOT NULL,
    created_height BIGINT NOT NULL,
    created_ns BIGINT NOT NULL,
    updated_height BIGINT NOT NULL
);
CREATE INDEX requests_open ON requests (status, created_seq);

-- Every event of a job or a request, in chain order: the timeline.
CREATE TABLE timeline (
    entity TEXT NOT NULL,
    entity_id BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    event TEXT NOT NULL,
    block_height BIGINT NOT NULL,
    timestamp_ns BIGINT NOT NULL,
    receipt_id TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (entity, entity_id, seq)
);

CREATE TABLE models (
    model_id TEXT PRIMARY KEY,
    token TEXT,
    owner TEXT,
    name TEXT,
    manifest TEXT,
    created_height BIGINT,
    crowdfund_state TEXT,
    crowdfund_goal TEXT,
    crowdfund_token_price TEXT,
    crowdfund_deadline_ns BIGINT,
    crowdfund_beneficiary TEXT,
    crowdfund_raised TEXT NOT NULL DEFAULT '0000000000000000000000000000000000000000',
    released TEXT NOT NULL DEFAULT '0000000000000000000000000000000000000000',
    total_supply TEXT NOT NULL DEFAULT '0000000000000000000000000000000000000000'
);
CREATE UNIQUE INDEX models_token ON models (token);

-- Crowdfund history: contributions, refunds, releases, outcomes.
CREATE TABLE model_activity (
    seq BIGINT PRIMARY KEY,
    model_id TEXT NOT NULL,
    event TEXT NOT NULL,
    account TEXT,
    amount TEXT,
    block_height BIGINT NOT NULL,
    timestamp_ns BIGINT NOT NULL
);
CREATE INDEX model_activity_model ON model_activity (model_id, seq);

CREATE TABLE key_grants (
    model_id TEXT NOT NULL,
    node_id BIGINT NOT NULL,
    key_hash TEXT,
    granted_height BIGINT,
    revoked_height BIGINT,
    PRIMARY KEY (model_id, node_id)
);

-- NEP-141 balances of model tokens and allow-listed payment tokens.
CREATE TABLE balances (
    token TEXT NOT NULL,
    account TEXT NOT NULL,
    balance TEXT NOT NULL,
    PRIMARY KEY (token, account)
);
CREATE INDEX balances_account ON balances (account, token);
CREATE INDEX balances_top ON balances (token, balance);

-- Revenue deposited into model token contracts and claimed by holders.
CREATE TABLE revenue (
    seq BIGINT PRIMARY KEY,
    model_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    account TEXT NOT NULL,
    asset TEXT NOT NULL,
    amount TEXT NOT NULL,
    block_height BIGINT NOT NULL,
    timestamp_ns BIGINT NOT NULL
);
CREATE INDEX revenue_model ON revenue (model_id, seq);
CREATE INDEX revenue_account ON revenue (account, seq);

-- Money the marketplace and registry moved to an account: provider shares, royalties,
-- protocol fees, refunds, slashes, credits.
CREATE TABLE payouts (
    seq BIGINT NOT NULL,
    idx BIGINT NOT NULL,
    account TEXT NOT NULL,
    kind TEXT NOT NULL,
    asset TEXT NOT NULL,
    amount TEXT NOT NULL,
    job_id BIGINT,
    request_id BIGINT,
    node_id BIGINT,
    block_height BIGINT NOT NULL,
    timestamp_ns BIGINT NOT NULL,
    PRIMARY KEY (seq, idx)
);
CREATE INDEX payouts_account ON payouts (account, seq);

-- Undelivered payouts waiting for `withdraw` on the marketplace.
CREATE TABLE credits (
    account TEXT NOT NULL,
    asset TEXT NOT NULL,
    amount TEXT NOT NULL,
    PRIMARY KEY (account, asset)
);

-- Running totals (volume, fees, royalties per asset) so /v1/stats is O(1).
CREATE TABLE totals (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
