//! PostgreSQL: the connection pool, migrations, and the repositories over the tables
//! (documents, ingest jobs, chunks). With no `database_url` configured, the embedded
//! supervisor starts a private cluster under the data directory first.

pub mod chunks;
pub mod documents;
pub mod embedded;
pub mod jobs;

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};

use crate::config::Config;
use crate::error::{Error, Result};

pub use embedded::EmbeddedPostgres;

/// The database in use: a pool, and the embedded cluster when Sanctum runs its own.
pub struct Database {
    pub pool: PgPool,
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
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await
            .map_err(|e| Error::Database(format!("cannot connect to PostgreSQL: {e}")))?;
        MIGRATOR.run(&pool).await.map_err(|e| Error::Database(format!("migrating the database failed: {e}")))?;
        Ok(Database { pool, embedded })
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
