-- A reindex on a Qdrant cluster copies PostgreSQL's passages into a new collection while
-- the replicas keep writing through the alias to the old one. While a rebuild is
-- registered here, every change to a document's passages in the indexes is noted in
-- index_changes (after PostgreSQL holds it), and the rebuild replays those notes into the
-- new collection once the alias points at it, so nothing written meanwhile is lost.
CREATE TABLE index_rebuilds (
    id          BIGSERIAL PRIMARY KEY,
    started_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    backend     TEXT NOT NULL
);
CREATE TABLE index_changes (
    seq          BIGSERIAL PRIMARY KEY,
    document_id  UUID NOT NULL,
    at           TIMESTAMPTZ NOT NULL DEFAULT now()
);
