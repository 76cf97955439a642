-- Job leases (several `sanctum serve` replicas on one database): a running job is held by
-- one worker (claimed_by, with where that worker runs in `claimer`: host, boot, pid
-- namespace, pid and start time, so a process on the same machine can tell that it died)
-- until lease_until; the worker extends the lease while it works, and a job whose lease
-- expired, or whose worker is known dead, is queued again. Jobs left running by an earlier
-- version have no lease: they count as expired.
ALTER TABLE ingest_jobs ADD COLUMN claimed_by TEXT;
ALTER TABLE ingest_jobs ADD COLUMN claimer JSONB;
ALTER TABLE ingest_jobs ADD COLUMN lease_until TIMESTAMPTZ;
CREATE INDEX ingest_jobs_leases ON ingest_jobs (lease_until) WHERE state = 'running';
