//! The application's database role. Migrations run as the configured user (who owns the
//! tables); every pooled connection then switches to `sanctum_app`, which may read and write
//! the tables but only insert into and read the audit log.

use sqlx::{Connection, PgConnection};

use crate::error::{Error, Result};

pub const APP_ROLE: &str = "sanctum_app";

/// Key of the advisory lock serialising grants (two processes opening one database).
const LOCK: i64 = 0x5341_4e43_524f_4c45; // "SANCROLE"

const GRANTS: [&str; 6] = [
    "GRANT USAGE ON SCHEMA public TO sanctum_app",
    "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO sanctum_app",
    "GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO sanctum_app",
    "REVOKE UPDATE, DELETE, TRUNCATE ON audit FROM sanctum_app",
    "GRANT EXECUTE ON FUNCTION audit_purge(BIGINT) TO sanctum_app",
    // again on every start: a restore (pg_restore --no-acl) would leave the default
    "REVOKE ALL ON FUNCTION audit_purge(BIGINT) FROM PUBLIC",
];

/// Grants the role what it needs on the tables as migrated now, and lets the configured
/// user switch to it.
pub async fn apply(conn: &mut PgConnection) -> Result<()> {
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)").bind(APP_ROLE).fetch_one(&mut *conn).await?;
    let user: String = sqlx::query_scalar("SELECT current_user::text").fetch_one(&mut *conn).await?;
    if !exists {
        return Err(Error::Database(format!(
            "the database role {APP_ROLE} is missing and {user} may not create it; as an administrator run: CREATE ROLE {APP_ROLE} NOLOGIN; GRANT {APP_ROLE} TO \"{user}\";"
        )));
    }
    let mut tx = conn.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(LOCK).execute(&mut *tx).await?;
    for sql in GRANTS {
        sqlx::query(sql).execute(&mut *tx).await.map_err(|e| Error::Database(format!("{sql}: {e}")))?;
    }
    let member: bool = sqlx::query_scalar("SELECT pg_has_role(current_user, $1, 'MEMBER')").bind(APP_ROLE).fetch_one(&mut *tx).await?;
    if !member {
        let grant = format!("GRANT {APP_ROLE} TO \"{}\"", user.replace('"', "\"\""));
        sqlx::query(sqlx::AssertSqlSafe(grant.clone())).execute(&mut *tx).await.map_err(|e| {
            Error::Database(format!("{user} cannot switch to the role {APP_ROLE} ({e}); as an administrator run: {grant};"))
        })?;
    }
    tx.commit().await?;
    Ok(())
}
