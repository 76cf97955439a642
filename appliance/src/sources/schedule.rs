//! Scheduled syncs while `serve` runs: once a minute, every source whose `every_minutes`
//! have passed since its last run started is synced (by the appliance, `sanctum`), and
//! the ingest worker is woken for what it queued. A source another process is syncing
//! is skipped until the next tick.

use std::sync::Arc;
use std::time::Duration;

use crate::app::Sanctum;
use crate::error::{Error, Result};

/// Runs until the process ends.
pub async fn run_periodically(ctx: Arc<Sanctum>, wake: Arc<tokio::sync::Notify>) {
    let mut ticks = tokio::time::interval(Duration::from_secs(60));
    loop {
        ticks.tick().await;
        match due(&ctx).await {
            Ok(names) => {
                for name in names {
                    match super::sync(&ctx, "sanctum", &name, "schedule").await {
                        Ok(report) if !report.jobs.is_empty() => wake.notify_one(),
                        Ok(_) | Err(Error::Conflict(_)) => {}
                        Err(e) => tracing::warn!(code = e.code(), source = %name, "a scheduled sync failed"),
                    }
                }
            }
            Err(e) => tracing::warn!(code = e.code(), "the sync schedule could not be read"),
        }
    }
}

/// The sources whose next scheduled run is due.
async fn due(ctx: &Sanctum) -> Result<Vec<String>> {
    super::register_configured(ctx).await?;
    Ok(sqlx::query_scalar(
        "SELECT s.name FROM sources s
         WHERE (s.settings->>'every_minutes')::int > 0
           AND NOT EXISTS (SELECT 1 FROM source_runs r WHERE r.source = s.name
                             AND r.started_at > now() - make_interval(mins => (s.settings->>'every_minutes')::int))
         ORDER BY s.name",
    )
    .fetch_all(ctx.pool())
    .await?)
}
