-- The audit log, continued: retention's purge, lookup indexes, and the application role.

-- Deletion is allowed only inside audit_purge(), which retention calls after exporting
-- the records and writing a signed purge marker outside the database.
CREATE OR REPLACE FUNCTION audit_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('sanctum.audit_purge', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'the audit log is append-only: % is not allowed', TG_OP;
END;
$$;

CREATE FUNCTION audit_purge(through BIGINT) RETURNS BIGINT
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    n BIGINT;
BEGIN
    IF through >= (SELECT max(seq) FROM audit) THEN
        RAISE EXCEPTION 'the last audit record is never purged';
    END IF;
    PERFORM set_config('sanctum.audit_purge', 'on', true);
    DELETE FROM audit WHERE seq <= through;
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM set_config('sanctum.audit_purge', 'off', true);
    RETURN n;
END;
$$;
REVOKE ALL ON FUNCTION audit_purge(BIGINT) FROM PUBLIC;

-- The configuration last recorded (config.change records hold before and after; this keeps
-- "before" when old records have been purged).
CREATE TABLE config_snapshot (
    id          BOOLEAN PRIMARY KEY DEFAULT true CHECK (id),
    snapshot    JSONB NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Who submitted each document (the audit log has the details).
ALTER TABLE documents ADD COLUMN uploaded_by TEXT;

CREATE INDEX audit_action ON audit (action, seq);
CREATE INDEX audit_actor ON audit (actor, seq);
CREATE INDEX audit_at ON audit (at);

-- The role the application runs as (SET ROLE after connecting): it may insert and read the
-- audit log but not change or delete it (the grants are applied on every start, see
-- db::roles). Roles are cluster-wide: another database may have created it already.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'sanctum_app') THEN
        CREATE ROLE sanctum_app NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation OR insufficient_privilege THEN
    -- without CREATEROLE, an administrator creates it (db::roles says how)
    NULL;
END;
$$;
