-- Timelocked governance changes (NEP-297 standard `ecloud_governance`) of every contract the
-- indexer follows: the registry, the marketplace, the model factory and each model token.
-- Ids are per contract, so a change is keyed by (contract, change_id). A row is written by
-- `change_proposed` (status `pending`) and moved once to `applied` or `cancelled` by
-- `change_applied` / `change_cancelled`, which also set `resolved_height`/`resolved_at_ns`.
CREATE TABLE governance_changes (
    contract TEXT NOT NULL,
    change_id BIGINT NOT NULL,
    change TEXT NOT NULL,               -- the proposed change as JSON text
    proposed_by TEXT NOT NULL,
    applies_at_ns BIGINT NOT NULL,      -- earliest block time at which it may be applied
    proposed_seq BIGINT NOT NULL,       -- position of `change_proposed` in the chain
    proposed_height BIGINT NOT NULL,
    proposed_at_ns BIGINT NOT NULL,
    proposed_receipt TEXT NOT NULL,
    status TEXT NOT NULL,               -- pending | applied | cancelled
    resolved_height BIGINT,             -- where it was applied or cancelled
    resolved_at_ns BIGINT,
    PRIMARY KEY (contract, change_id)
);
-- /v1/governance lists newest first (by proposed_seq), optionally of one contract and status.
CREATE INDEX governance_changes_seq ON governance_changes (proposed_seq);
CREATE INDEX governance_changes_contract ON governance_changes (contract, proposed_seq);
CREATE INDEX governance_changes_status ON governance_changes (status, proposed_seq);
