//! PostgreSQL: the connection pool, migrations, and the repositories over the tables
//! (documents, ingest jobs, chunks). With no `database_url` configured, the embedded
//! supervisor starts a private cluster under the data directory first.

pub mod chunks;
pub mod documents;
pub mod embedded;
pub mod jobs;
pub mod rebuilds;
pub mod roles;

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Executor, PgConnection, PgPool};

use crate::config::Config;
use crate::error::{Error, Result};

pub use embedded::EmbeddedPostgres;

/// The database in use: a pool, and the embedded cluster when Sanctum runs its own.
pub struct Database {
    /// Connections running as the application role (see [`roles`]).
    pub pool: PgPool,
    options: PgConnectOptions,
    embedded: Option<EmbeddedPostgres>,
}

impl Database {
    /// Connects (starting the embedded cluster if no URL is configured) and migrates.
    pub async fn open(config: &Config) -> Result<Database> {
        let (options, embedded) = match config.database_url() {
            Some(url) => {
                let options: PgConnectOptions =
                    url.parse().map_err(|e| Error::Config(format!("database_url is not a valid PostgreSQL URL: {e}")))?;
                (options, None)
            }
            None => {
                let pg = EmbeddedPostgres::start(config).await?;
                (pg.connect_options(), Some(pg))
            }
        };
        let options = options.log_statements(tracing::log::LevelFilter::Trace);
        let connect_err = |e: sqlx::Error| Error::Database(format!("cannot connect to PostgreSQL: {e}"));
        // migrations and grants as the configured user, who owns the tables
        let mut owner = PgConnection::connect_with(&options).await.map_err(connect_err)?;
        MIGRATOR.run(&mut owner).await.map_err(|e| Error::Database(format!("migrating the database failed: {e}")))?;
        roles::apply(&mut owner).await?;
        owner.close().await.ok();
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute("SET ROLE sanctum_app").await?;
                    Ok(())
                })
            })
            .connect_with(options.clone())
            .await
            .map_err(connect_err)?;
        Ok(Database { pool, options, embedded })
    }

    /// A connection as the configured user (the tables' owner), not the application role:
    /// for administration and for tests that play an intruder with owner rights.
    pub async fn owner_connection(&self) -> Result<PgConnection> {
        PgConnection::connect_with(&self.options).await.map_err(|e| Error::Database(format!("cannot connect to PostgreSQL: {e}")))
    }

    pub fn is_embedded(&self) -> bool {
        self.embedded.is_some()
    }

    /// Closes the pool and stops the embedded cluster if this process started it.
    pub async fn close(self) -> Result<()> {
        self.pool.close().await;
        if let Some(pg) = self.embedded {
            pg.stop().await?;
        }
        Ok(())
    }
}

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
