-- Local users' passwords (argon2id PHC strings), web sessions and failed sign-ins (for
-- throttling). Session secrets are stored only as their sha256.
ALTER TABLE users ADD COLUMN password_hash TEXT, ADD COLUMN password_changed_at TIMESTAMPTZ;

CREATE TABLE sessions (
    id            BIGSERIAL PRIMARY KEY,
    hash          TEXT NOT NULL UNIQUE,
    user_name     TEXT NOT NULL REFERENCES users (name),
    csrf          TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at    TIMESTAMPTZ NOT NULL,
    ended_at      TIMESTAMPTZ
);
CREATE INDEX sessions_user ON sessions (user_name) WHERE ended_at IS NULL;

CREATE TABLE login_failures (
    user_name  TEXT NOT NULL,
    client     TEXT NOT NULL,
    at         TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX login_failures_user ON login_failures (user_name, at);
CREATE INDEX login_failures_client ON login_failures (client, at);
