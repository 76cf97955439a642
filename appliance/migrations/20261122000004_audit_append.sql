-- One round trip per audit record: the lock, the previous record, the chained hash and the
-- insert in one function, in the caller's transaction (or its own). The caller computes
-- the digest of the record's content (canonical JSON, see audit/mod.rs); the chain hash is
-- sha256(prev_hash || ':' || seq || ':' || digest), hex.
CREATE FUNCTION audit_append(p_at TIMESTAMPTZ, p_actor TEXT, p_action TEXT, p_object TEXT, p_decision TEXT, p_details JSONB, p_digest TEXT)
    RETURNS TABLE (out_seq BIGINT, out_prev TEXT, out_hash TEXT)
    LANGUAGE plpgsql AS $$
DECLARE
    last_seq  BIGINT;
    last_hash TEXT;
BEGIN
    -- the same key as audit::LOCK ("SANCAUD")
    PERFORM pg_advisory_xact_lock(23434227458594116);
    SELECT a.seq, a.hash INTO last_seq, last_hash FROM audit a ORDER BY a.seq DESC LIMIT 1;
    IF last_seq IS NULL THEN
        last_seq := 0;
        last_hash := repeat('0', 64);
    END IF;
    out_seq := last_seq + 1;
    out_prev := last_hash;
    out_hash := encode(sha256(convert_to(last_hash || ':' || out_seq::text || ':' || p_digest, 'UTF8')), 'hex');
    INSERT INTO audit (seq, at, actor, action, object, decision, details, prev_hash, hash)
        VALUES (out_seq, p_at, p_actor, p_action, p_object, p_decision, p_details, out_prev, out_hash);
    RETURN NEXT;
END;
$$;
