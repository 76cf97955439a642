-- Where each person comes from: `local` (a password here, or none), `oidc` (an OpenID
-- Connect provider, by issuer and subject) or `ldap` (a directory, by URL and entry DN),
-- with the mapping that produced their roles, groups and region at the last sign-in.
ALTER TABLE users
    ADD COLUMN source    TEXT NOT NULL DEFAULT 'local' CHECK (source IN ('local', 'oidc', 'ldap')),
    ADD COLUMN issuer    TEXT,
    ADD COLUMN subject   TEXT,
    ADD COLUMN mapping   JSONB,
    ADD COLUMN synced_at TIMESTAMPTZ;
CREATE UNIQUE INDEX users_directory_identity ON users (source, issuer, subject) WHERE source <> 'local';

-- One OpenID Connect sign-in in flight: the browser holds `state` (a cookie), the appliance
-- the nonce and the PKCE verifier. Each is used once and expires after ten minutes.
CREATE TABLE oidc_flows (
    state_hash  TEXT PRIMARY KEY,
    nonce       TEXT NOT NULL,
    verifier    TEXT NOT NULL,
    next        TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    used_at     TIMESTAMPTZ
);

-- ID-token nonces already accepted (a replayed ID token is refused).
CREATE TABLE oidc_nonces (
    nonce_hash  TEXT PRIMARY KEY,
    at          TIMESTAMPTZ NOT NULL DEFAULT now()
);
