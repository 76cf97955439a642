-- API tokens for internal systems: random, shown once, stored as a sha256 hash, scoped,
-- optionally expiring; revocation takes effect on the next request.
CREATE TABLE api_tokens (
    id           BIGSERIAL PRIMARY KEY,
    user_name    TEXT NOT NULL REFERENCES users (name),
    label        TEXT NOT NULL,
    hash         TEXT NOT NULL,
    scopes       TEXT[] NOT NULL,
    created_by   TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at   TIMESTAMPTZ,
    revoked_at   TIMESTAMPTZ,
    last_used_at TIMESTAMPTZ
);
CREATE INDEX api_tokens_user ON api_tokens (user_name);
