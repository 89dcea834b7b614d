-- Events of a model token written before the factory announced the token. The token's `new`
-- logs its manifest and crowdfund (and its first mint) in the block before the factory's
-- callback logs `model_created`; they wait here and are applied, in chain order, when the
-- announcement comes. Only direct sub-accounts of the factory (which only the factory can
-- create) are kept, and only for a bounded number of blocks.
CREATE TABLE pending_token_events (
    seq BIGINT PRIMARY KEY,
    token TEXT NOT NULL,
    block_height BIGINT NOT NULL,
    timestamp_ns BIGINT NOT NULL,
    receipt_id TEXT NOT NULL,
    line TEXT NOT NULL
);
CREATE INDEX pending_token_events_token ON pending_token_events (token, seq);
CREATE INDEX pending_token_events_height ON pending_token_events (block_height);
