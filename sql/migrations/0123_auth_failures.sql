-- Failed credential checks (auth/limits.py), shared by every API process: one row per failure
-- and key (a source address, a token's prefix). Counted over a sliding window; rows older than the
-- window are pruned by the auth.prune_failures job. Only failures are written: an agent or user
-- with a valid credential costs nothing here.
CREATE UNLOGGED TABLE auth_failures (
    key TEXT NOT NULL,
    at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX idx_auth_failures_key ON auth_failures (key, at);
