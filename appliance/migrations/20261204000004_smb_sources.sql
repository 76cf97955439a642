-- SMB shares as sources: a file's groups come from its security descriptor (the share's
-- ACL mapped through the source's acl_map), read at every sync. The server's change time
-- is kept beside size and modification time.
ALTER TABLE sources DROP CONSTRAINT sources_kind_check;
ALTER TABLE sources ADD CONSTRAINT sources_kind_check CHECK (kind IN ('folder', 'smb'));
ALTER TABLE documents ADD COLUMN source_change_ns BIGINT;
-- the security identifiers the file's ACL let read it when it was last read (smb sources
-- with an acl_map): what its groups were mapped from
ALTER TABLE documents ADD COLUMN source_readers TEXT[];
