-- Which answer adapter is active: the latest row wins; a row without a name restores the
-- base model. Every activation is also an audit record (`adapter.activate`).
CREATE TABLE adapter_activations (
    id BIGSERIAL PRIMARY KEY,
    name TEXT,
    adapter_sha256 TEXT,
    base TEXT NOT NULL,
    actor TEXT NOT NULL,
    at TIMESTAMPTZ NOT NULL DEFAULT now()
);
