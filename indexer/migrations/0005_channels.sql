-- Payment channels of the marketplace (NEP-297 `ecloud_marketplace` 1.1.0 channel events).
-- A row is written by `channel_opened` and kept up to date by `channel_topped_up`,
-- `channel_settled`, `channel_close_started` and `channel_closed`; the contract never reuses
-- a channel id. Amounts are in the channel's asset, padded like every amount.
--   state: open | closing (the node may still settle until close_ends_ns) | closed
CREATE TABLE channels (
    channel_id BIGINT PRIMARY KEY,
    user_id TEXT NOT NULL,
    node_id BIGINT NOT NULL,
    operator TEXT NOT NULL,
    model_id TEXT NOT NULL,
    asset TEXT NOT NULL,                -- near | ft:<token>
    channel_key TEXT NOT NULL,          -- ed25519:<base58>, signs the vouchers
    input_per_million TEXT NOT NULL,    -- the node's price at opening, yoctoNEAR
    output_per_million TEXT NOT NULL,
    units_per_near TEXT,                -- the token rate at opening (NEP-141 channels)
    challenge_period_ns BIGINT NOT NULL,
    deposit TEXT NOT NULL,              -- the deposit now (after top-ups)
    settled TEXT NOT NULL,              -- cumulative amount of the newest settled voucher
    state TEXT NOT NULL,
    close_ends_ns BIGINT,               -- end of the challenge period of a unilateral close
    close_reason TEXT,                  -- cooperative | unilateral
    settlements BIGINT NOT NULL,        -- how many vouchers were settled
    paid_provider TEXT NOT NULL,        -- sums of the settlements' legs
    paid_royalty TEXT NOT NULL,
    paid_fee TEXT NOT NULL,
    refund TEXT,                        -- back to the user at close
    opened_seq BIGINT NOT NULL,
    opened_height BIGINT NOT NULL,
    opened_ns BIGINT NOT NULL,
    updated_height BIGINT NOT NULL,
    updated_ns BIGINT NOT NULL
);
-- /v1/channels lists newest first, optionally of one user, node, operator, model or state.
CREATE INDEX channels_user ON channels (user_id, channel_id);
CREATE INDEX channels_node ON channels (node_id, channel_id);
CREATE INDEX channels_operator ON channels (operator, channel_id);
CREATE INDEX channels_model ON channels (model_id, channel_id);
CREATE INDEX channels_state ON channels (state, channel_id);

-- Every settled voucher of a channel, in chain order (cooperative close included).
CREATE TABLE channel_settlements (
    channel_id BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    settled TEXT NOT NULL,              -- the voucher's cumulative amount
    cost TEXT NOT NULL,                 -- the difference to the previous voucher
    provider TEXT NOT NULL,
    royalty TEXT NOT NULL,
    protocol_fee TEXT NOT NULL,
    block_height BIGINT NOT NULL,
    timestamp_ns BIGINT NOT NULL,
    receipt_id TEXT NOT NULL,
    PRIMARY KEY (channel_id, seq)
);
-- Payouts of a channel's settlements and close name it.
ALTER TABLE payouts ADD COLUMN channel_id BIGINT;
