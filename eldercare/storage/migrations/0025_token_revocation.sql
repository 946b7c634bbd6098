-- Issue 7 (security audit M5): a token can be revoked before it expires (logout). Every
-- request and every open websocket checks its token id against this table and the user's
-- row (disabled, role or scope changed). Rows past expires_at are of no further use.
CREATE TABLE revoked_tokens (
    jti         text PRIMARY KEY,
    username    text NOT NULL,
    revoked_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL
);
CREATE INDEX revoked_tokens_expiry ON revoked_tokens (expires_at);
