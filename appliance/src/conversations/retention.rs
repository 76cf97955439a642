//! Conversations are kept only as long as the configuration says (`[conversations]`):
//! `retention_days` for every conversation, `hashed_retention_days` for one with a turn
//! whose text the `audit` policy decision keeps only as a hash (by default: one that touched
//! PHI). Each purged conversation leaves a `conversation.purge` record, written in the same
//! transaction as the deletion: no purge without its record.

use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use crate::app::Sanctum;
use crate::audit::{Action, Entry};
use crate::config::ConversationsConfig;
use crate::error::Result;

/// The actor of the hourly purge by `sanctum serve`.
pub const SCHEDULED: &str = "sanctum (retention)";

#[derive(Debug, Clone, Serialize)]
pub struct Purged {
    pub id: Uuid,
    pub owner: String,
    pub turns: i64,
    /// Why: `retention_days` or `hashed_retention_days`.
    pub rule: &'static str,
}

/// Days after its last use that a conversation is kept: (every one, one with hashed text);
/// None: kept.
fn limits(config: &ConversationsConfig) -> (Option<u32>, Option<u32>) {
    let all = (config.retention_days > 0).then_some(config.retention_days);
    let hashed = (config.hashed_retention_days > 0).then_some(config.hashed_retention_days).or(all);
    (all, hashed)
}

/// Purges the conversations past their retention, as `actor`; what was purged.
pub async fn purge(ctx: &Sanctum, actor: &str) -> Result<Vec<Purged>> {
    let (all, hashed) = limits(&ctx.config.conversations);
    if all.is_none() && hashed.is_none() {
        return Ok(Vec::new());
    }
    let mut tx = ctx.pool().begin().await?;
    let rows: Vec<(Uuid, String, i64, bool, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
        "SELECT c.id, c.owner,
                (SELECT count(*) FROM conversation_turns t WHERE t.conversation_id = c.id),
                EXISTS (SELECT 1 FROM conversation_turns t WHERE t.conversation_id = c.id AND t.question IS NULL),
                c.updated_at
         FROM conversations c
         WHERE ($1::int IS NOT NULL AND c.updated_at < now() - make_interval(days => $1::int))
            OR ($2::int IS NOT NULL AND c.updated_at < now() - make_interval(days => $2::int)
                AND EXISTS (SELECT 1 FROM conversation_turns t WHERE t.conversation_id = c.id AND t.question IS NULL))
         ORDER BY c.updated_at",
    )
    .bind(all.map(|d| d as i32))
    .bind(hashed.map(|d| d as i32))
    .fetch_all(&mut *tx)
    .await?;
    let mut purged = Vec::with_capacity(rows.len());
    for (id, owner, turns, has_hashed, updated_at) in rows {
        // (one continued since it was read is kept)
        let deleted = sqlx::query("DELETE FROM conversations WHERE id = $1 AND updated_at = $2").bind(id).bind(updated_at).execute(&mut *tx).await?;
        if deleted.rows_affected() == 0 {
            continue;
        }
        let by_hash = has_hashed && hashed.is_some() && (all.is_none() || hashed < all);
        let (rule, days) = if by_hash { ("hashed_retention_days", hashed) } else { ("retention_days", all) };
        let entry = Entry::new(actor, Action::ConversationPurge).object(id.to_string()).decision("ok").details(json!({ "owner": owner, "turns": turns, "rule": rule, "days": days }));
        crate::audit::append(&mut tx, &entry).await?;
        purged.push(Purged { id, owner, turns, rule });
    }
    tx.commit().await?;
    Ok(purged)
}

/// Purges hourly while `sanctum serve` runs (and once at start); a failure is logged and
/// tried again at the next hour.
pub async fn purge_periodically(ctx: std::sync::Arc<Sanctum>) {
    let mut ticks = tokio::time::interval(std::time::Duration::from_secs(3600));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match purge(&ctx, SCHEDULED).await {
            Ok(purged) if !purged.is_empty() => tracing::info!(conversations = purged.len(), "conversations past their retention purged"),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "the conversation retention purge failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashed_text_falls_back_to_the_general_limit() {
        let c = |retention_days, hashed_retention_days| ConversationsConfig { retention_days, hashed_retention_days };
        assert_eq!(limits(&c(0, 30)), (None, Some(30)));
        assert_eq!(limits(&c(365, 0)), (Some(365), Some(365)));
        assert_eq!(limits(&c(0, 0)), (None, None));
        assert_eq!(limits(&c(90, 7)), (Some(90), Some(7)));
    }
}
