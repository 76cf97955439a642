-- Principals, versioned policy sets, and the identifiers found in documents.

-- Users and API clients with the attributes policies decide on.
CREATE TABLE users (
    name        TEXT PRIMARY KEY,
    kind        TEXT NOT NULL DEFAULT 'user' CHECK (kind IN ('user', 'service')),
    roles       TEXT[] NOT NULL,
    region      TEXT,
    groups      TEXT[] NOT NULL DEFAULT '{}',
    disabled    BOOLEAN NOT NULL DEFAULT false,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Every policy set ever stored; never updated or deleted.
CREATE TABLE policy_versions (
    version       BIGSERIAL PRIMARY KEY,
    digest        TEXT NOT NULL,              -- sha256 over the files
    files         JSONB NOT NULL,             -- {"hipaa.rego": "...", "data.json": "...", ...}
    author        TEXT NOT NULL,
    comment       TEXT,
    tests_passed  INT NOT NULL,
    tests_total   INT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Which version was made active, when and by whom; the latest row is the active version.
CREATE TABLE policy_activations (
    id          BIGSERIAL PRIMARY KEY,
    version     BIGINT NOT NULL REFERENCES policy_versions (version),
    action      TEXT NOT NULL CHECK (action IN ('seed', 'activate', 'rollback')),
    actor       TEXT NOT NULL,
    at          TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Identifiers (HIPAA Safe Harbor) found in a document's text at ingest: [{kind, start, end}]
-- in characters of documents.text, so a passage can be redacted.
ALTER TABLE documents ADD COLUMN identifiers JSONB NOT NULL DEFAULT '[]';
