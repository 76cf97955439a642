-- Sources kept in sync (local or mounted folders; file shares): each file of a source is
-- one document, keyed by (source, path) instead of by content, so that the same file in
-- two places (with different permissions) stays two documents. Uploads keep their
-- content-addressed uniqueness.

CREATE TABLE sources (
    name        TEXT PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('folder')),
    settings    JSONB NOT NULL,                -- the [[sources]] entry (no secrets)
    origin      TEXT NOT NULL CHECK (origin IN ('config', 'admin')),
    created_by  TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- One row per sync run: who or what started it, what it found and did.
CREATE TABLE source_runs (
    id           BIGSERIAL PRIMARY KEY,
    source       TEXT NOT NULL REFERENCES sources (name) ON DELETE CASCADE,
    trigger      TEXT NOT NULL,                -- schedule, cli, api, web
    actor        TEXT NOT NULL,
    state        TEXT NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'done', 'failed')),
    started_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at  TIMESTAMPTZ,
    counts       JSONB NOT NULL DEFAULT '{}',  -- seen, added, changed, moved, removed, ...
    problems     JSONB NOT NULL DEFAULT '[]',  -- [{"path": ..., "reason": ...}] (first 200)
    error        TEXT                          -- why the run itself failed
);
CREATE INDEX source_runs_source ON source_runs (source, id DESC);

ALTER TABLE documents ADD COLUMN source_name TEXT REFERENCES sources (name);
ALTER TABLE documents ADD COLUMN source_path TEXT;      -- relative to the source's root
ALTER TABLE documents ADD COLUMN source_size BIGINT;    -- as listed, to skip unchanged files
ALTER TABLE documents ADD COLUMN source_mtime_ns BIGINT;
ALTER TABLE documents ADD CONSTRAINT documents_source_path_present CHECK ((source_name IS NULL) = (source_path IS NULL));

ALTER TABLE documents DROP CONSTRAINT documents_sha256_key;
CREATE UNIQUE INDEX documents_upload_sha256 ON documents (sha256) WHERE source_name IS NULL;
CREATE INDEX documents_sha256 ON documents (sha256);
CREATE UNIQUE INDEX documents_source_path ON documents (source_name, source_path) WHERE source_name IS NOT NULL;
