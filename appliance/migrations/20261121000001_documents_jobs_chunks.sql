-- Documents, their durable ingest jobs, and their chunks. PostgreSQL is the source of
-- truth: both search indexes can be rebuilt from these tables (`sanctum reindex`).

CREATE TABLE documents (
    id          UUID PRIMARY KEY,
    sha256      TEXT NOT NULL UNIQUE,          -- content address of the stored original
    name        TEXT NOT NULL,                 -- file name, or corpus file for records
    source_id   TEXT,                          -- id inside the source (BEIR _id)
    format      TEXT NOT NULL,
    size_bytes  BIGINT NOT NULL,
    title       TEXT,
    groups      TEXT[] NOT NULL DEFAULT '{}',  -- who may see it (policy input)
    region      TEXT,                          -- where the data must stay (policy input)
    labels      TEXT[] NOT NULL DEFAULT '{}',  -- phi, pii, confidential, ...
    state       TEXT NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'indexed', 'failed')),
    text        TEXT,                          -- normalised text, once parsed
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    indexed_at  TIMESTAMPTZ
);
CREATE INDEX documents_source_id ON documents (source_id);

CREATE TABLE ingest_jobs (
    id           BIGSERIAL PRIMARY KEY,
    document_id  UUID NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    state        TEXT NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'running', 'done', 'failed')),
    attempts     INT NOT NULL DEFAULT 0,
    error        TEXT,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at   TIMESTAMPTZ,
    finished_at  TIMESTAMPTZ
);
CREATE INDEX ingest_jobs_pending ON ingest_jobs (id) WHERE state IN ('queued', 'running');
CREATE INDEX ingest_jobs_document ON ingest_jobs (document_id);

CREATE TABLE chunks (
    id           UUID PRIMARY KEY,             -- derived from (document, ordinal): idempotent
    document_id  UUID NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    ordinal      INT NOT NULL,
    text         TEXT NOT NULL,
    char_start   INT NOT NULL,
    char_end     INT NOT NULL,
    heading      TEXT,
    page_start   INT,
    page_end     INT,
    token_count  INT NOT NULL,
    embedding    REAL[] NOT NULL,              -- kept so reindex needs no re-embedding
    UNIQUE (document_id, ordinal)
);
