//! Conversations: a user's questions and answers, turn by turn, in PostgreSQL. A follow-up
//! is rewritten into a standalone question from the conversation (see `rewrite`) before
//! retrieval, and the standalone question is what the policy and the audit log see. Only
//! the owner reads a conversation (anyone else is told it does not exist); text is kept
//! only where the `audit` decision lets the audit log keep it, otherwise as its keyed hash;
//! a turn keeps its passages by id, and reopening a conversation reads them again under the
//! policy in force, withholding the answer of a turn written from what the owner may no
//! longer see. REST, web and CLI call these functions.

pub mod retention;
pub mod rewrite;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use crate::access::{self, Caller};
use crate::answer::{Answer, AskRequest, TokenSink};
use crate::app::Sanctum;
use crate::audit::{Action, Entry};
use crate::error::{Error, Result};
use rewrite::{Exchange, Rewrite};

/// Longest title, in characters.
const TITLE_CHARS: usize = 200;
/// Most turns a conversation holds; a longer one is refused (start a new one).
pub const MAX_TURNS: i64 = 200;
/// Longest question, in characters.
pub const MAX_QUESTION_CHARS: usize = 4000;
/// Tokens the rewrite prompt may use.
pub const REWRITE_BUDGET: usize = 768;

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Conversation {
    pub id: Uuid,
    pub title: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub turns: i64,
}

/// A passage a turn gave the model, as seen now.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct TurnSource {
    pub number: usize,
    pub chunk_id: Uuid,
    pub document_id: Uuid,
    pub document_name: String,
    pub title: Option<String>,
    /// The policy in force still lets the owner see it (set when read).
    #[serde(default)]
    pub visible: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Turn {
    pub seq: i32,
    /// The question as typed (None: kept only as a hash).
    pub asked: Option<String>,
    /// The standalone question that was answered (None: kept only as a hash).
    pub question: Option<String>,
    /// How the standalone question was found: `as_written`, `model`, `joined`.
    pub rewrite: String,
    /// None when kept only as a hash, or withheld.
    pub answer: Option<String>,
    /// The answer was written from a passage the owner may no longer see: it is not shown.
    pub withheld: bool,
    /// The text touched content whose text the policy keeps only as a hash.
    pub kept_as_hash: bool,
    pub sources: Vec<TurnSource>,
    pub cited: Vec<i32>,
    pub no_evidence: bool,
    pub ungrounded: bool,
    pub model: Option<serde_json::Value>,
    pub audit_records: Vec<i64>,
    pub created_at: DateTime<Utc>,
    pub feedback: Option<Feedback>,
}

/// The owner's judgement of an answer.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Feedback {
    pub helpful: bool,
    /// The answer it should have given (at most 4,000 characters).
    pub correction: Option<String>,
    /// Anything else (at most 1,000 characters).
    pub note: Option<String>,
}

/// Longest note, in characters.
const NOTE_CHARS: usize = 1000;

/// A conversation with its turns.
#[derive(Debug, Clone, Serialize)]
pub struct Thread {
    pub conversation: Conversation,
    pub turns: Vec<Turn>,
}

/// What a new turn gives back: the question answered and the answer.
#[derive(Debug, Clone, Serialize)]
pub struct Asked {
    pub conversation: Uuid,
    pub seq: i32,
    pub rewrite: Rewrite,
    pub answer: Answer,
}

fn check_title(title: &str) -> Result<String> {
    let t = title.trim();
    if t.is_empty() || t.chars().count() > TITLE_CHARS || t.chars().any(char::is_control) {
        return Err(Error::invalid("title", format!("expected 1 to {TITLE_CHARS} characters without control characters")));
    }
    Ok(t.to_string())
}

/// A title from the first question: its first words.
fn title_from(question: &str) -> String {
    let words: Vec<&str> = question.split_whitespace().take(10).collect();
    let t = words.join(" ");
    if t.chars().count() > 80 { t.chars().take(80).collect::<String>() + "…" } else { t }
}

fn not_found(id: Uuid) -> Error {
    Error::NotFound { what: "conversation", id: id.to_string() }
}

/// The conversation `id` if `owner` owns it; otherwise "not found", whether or not it
/// exists (another user's conversation is not revealed).
async fn owned(ctx: &Sanctum, owner: &str, id: Uuid) -> Result<Conversation> {
    sqlx::query_as::<_, Conversation>(
        "SELECT c.id, c.title, c.created_at, c.updated_at, (SELECT count(*) FROM conversation_turns t WHERE t.conversation_id = c.id) AS turns
         FROM conversations c WHERE c.id = $1 AND c.owner = $2",
    )
    .bind(id)
    .bind(owner)
    .fetch_optional(ctx.pool())
    .await?
    .ok_or_else(|| not_found(id))
}

/// Starts a conversation for `caller`, recorded.
pub async fn create(ctx: &Sanctum, caller: &Caller, title: Option<&str>) -> Result<Conversation> {
    let title = match title {
        Some(t) => check_title(t)?,
        None => "New conversation".to_string(),
    };
    crate::users::principal(ctx, &caller.user).await?;
    let id = Uuid::new_v4();
    let mut tx = ctx.pool().begin().await?;
    sqlx::query("INSERT INTO conversations (id, owner, title) VALUES ($1, $2, $3)").bind(id).bind(&caller.user).bind(&title).execute(&mut *tx).await?;
    let entry = Entry::new(&caller.user, Action::ConversationCreate).object(id.to_string()).decision("allow").details(json!({ "via": caller.via, "token": caller.token }));
    crate::audit::append(&mut tx, &entry).await?;
    tx.commit().await?;
    owned(ctx, &caller.user, id).await
}

/// `owner`'s conversations, most recently used first.
pub async fn list(ctx: &Sanctum, owner: &str) -> Result<Vec<Conversation>> {
    Ok(sqlx::query_as::<_, Conversation>(
        "SELECT c.id, c.title, c.created_at, c.updated_at, (SELECT count(*) FROM conversation_turns t WHERE t.conversation_id = c.id) AS turns
         FROM conversations c WHERE c.owner = $1 ORDER BY c.updated_at DESC, c.id",
    )
    .bind(owner)
    .fetch_all(ctx.pool())
    .await?)
}

/// Renames a conversation of `caller`'s, recorded.
pub async fn rename(ctx: &Sanctum, caller: &Caller, id: Uuid, title: &str) -> Result<Conversation> {
    let title = check_title(title)?;
    owned(ctx, &caller.user, id).await?;
    let mut tx = ctx.pool().begin().await?;
    sqlx::query("UPDATE conversations SET title = $2, updated_at = now() WHERE id = $1").bind(id).bind(&title).execute(&mut *tx).await?;
    let entry = Entry::new(&caller.user, Action::ConversationRename).object(id.to_string()).decision("allow").details(json!({ "via": caller.via, "token": caller.token }));
    crate::audit::append(&mut tx, &entry).await?;
    tx.commit().await?;
    owned(ctx, &caller.user, id).await
}

/// Deletes a conversation of `caller`'s with its turns, recorded; an attempt on one that is
/// not theirs is recorded as refused and answered "not found".
pub async fn delete(ctx: &Sanctum, caller: &Caller, id: Uuid) -> Result<()> {
    if owned(ctx, &caller.user, id).await.is_err() {
        let entry = Entry::new(&caller.user, Action::ConversationDelete).object(id.to_string()).decision("deny").details(json!({ "via": caller.via, "token": caller.token, "error": "not_found" }));
        return Err(ctx.auditor.refusal(ctx.pool(), entry, not_found(id)).await);
    }
    let mut tx = ctx.pool().begin().await?;
    let turns: i64 = sqlx::query_scalar("SELECT count(*) FROM conversation_turns WHERE conversation_id = $1").bind(id).fetch_one(&mut *tx).await?;
    sqlx::query("DELETE FROM conversations WHERE id = $1").bind(id).execute(&mut *tx).await?;
    let entry = Entry::new(&caller.user, Action::ConversationDelete).object(id.to_string()).decision("allow").details(json!({ "via": caller.via, "token": caller.token, "turns": turns }));
    crate::audit::append(&mut tx, &entry).await?;
    tx.commit().await?;
    Ok(())
}

/// A turn as stored.
#[derive(sqlx::FromRow)]
struct TurnRecord {
    seq: i32,
    asked: Option<String>,
    question: Option<String>,
    rewrite: String,
    answer: Option<String>,
    sources: serde_json::Value,
    cited: Vec<i32>,
    no_evidence: bool,
    ungrounded: bool,
    model: Option<serde_json::Value>,
    audit_records: Vec<i64>,
    created_at: DateTime<Utc>,
    helpful: Option<bool>,
    correction: Option<String>,
    note: Option<String>,
}

async fn turn_rows(ctx: &Sanctum, id: Uuid) -> Result<Vec<TurnRecord>> {
    Ok(sqlx::query_as(
        "SELECT seq, asked, question, rewrite, answer, sources, cited, no_evidence, ungrounded, model, audit_records, created_at, helpful, correction, note
         FROM conversation_turns WHERE conversation_id = $1 ORDER BY seq",
    )
    .bind(id)
    .fetch_all(ctx.pool())
    .await?)
}

/// A conversation of `caller`'s with its turns. Each passage a turn cited is read again
/// under the policy in force (the `retrieve` decision for `caller` now): one the owner may
/// no longer see is marked, and the answer that cited it withheld.
pub async fn get(ctx: &Sanctum, caller: &Caller, id: Uuid) -> Result<Thread> {
    let conversation = owned(ctx, &caller.user, id).await?;
    let rows = turn_rows(ctx, id).await?;
    let (_, auth) = access::authorize(ctx, caller, Action::PassageRead, "").await?;
    let mut turns = Vec::with_capacity(rows.len());
    for r in rows {
        let seq = r.seq;
        let mut sources: Vec<TurnSource> = serde_json::from_value(r.sources).map_err(|e| Error::Internal(format!("conversation {id} turn {seq}: sources: {e}")))?;
        for s in &mut sources {
            s.visible = crate::retrieve::passage(&ctx.detector, ctx.pool(), &auth, s.chunk_id).await.is_ok();
            if !s.visible {
                // not even its name: the owner may no longer know it exists
                s.document_name.clear();
                s.title = None;
            }
        }
        // the answer was written from every passage given, cited or not
        let withheld = sources.iter().any(|s| !s.visible);
        turns.push(Turn {
            seq,
            asked: r.asked,
            kept_as_hash: r.question.is_none(),
            question: r.question,
            rewrite: r.rewrite,
            answer: if withheld { None } else { r.answer },
            withheld,
            sources,
            cited: r.cited,
            no_evidence: r.no_evidence,
            ungrounded: r.ungrounded,
            model: r.model,
            audit_records: r.audit_records,
            created_at: r.created_at,
            feedback: r.helpful.map(|helpful| Feedback { helpful, correction: r.correction, note: r.note }),
        });
    }
    Ok(Thread { conversation, turns })
}

/// The exchanges a follow-up is rewritten from: the readable turns, oldest first (a turn
/// kept only as a hash, or whose answer is withheld now, is left out).
async fn history(ctx: &Sanctum, caller: &Caller, id: Uuid) -> Result<Vec<Exchange>> {
    let thread = get(ctx, caller, id).await?;
    Ok(thread
        .turns
        .into_iter()
        .filter_map(|t| Some(Exchange { question: t.question?, answer: t.answer? }))
        .collect())
}

/// The standalone question for `follow_up` after `history` (oldest first; a conversation's
/// turns, or an OpenAI client's own messages), by the answer model.
pub async fn standalone(ctx: &Sanctum, history: &[Exchange], follow_up: &str) -> Result<Rewrite> {
    if history.is_empty() {
        return Ok(rewrite::standalone_first(follow_up));
    }
    let generator = ctx.generator().await?;
    rewrite::standalone(generator.as_ref(), history, follow_up, REWRITE_BUDGET).await
}

/// Asks `asked` in conversation `id` of `caller`'s: rewritten into a standalone question
/// from the conversation so far, answered by the audited `ask` (the standalone question is
/// what the policy and the audit log see, with the conversation named in both records),
/// streamed to `sink`, and stored as the next turn. `rewritten` hears the standalone
/// question before retrieval (a page shows it while the answer streams); `stop` ends the
/// answer early with its error (a credential revoked while it streams).
pub async fn ask(
    ctx: &Sanctum,
    caller: &Caller,
    id: Uuid,
    asked: &str,
    max_tokens: Option<usize>,
    rewritten: &mut (dyn FnMut(&Rewrite) + Send),
    sink: TokenSink<'_>,
    stop: impl std::future::Future<Output = Error> + Send,
) -> Result<Asked> {
    if asked.trim().is_empty() {
        return Err(Error::invalid("question", "must not be empty"));
    }
    if asked.chars().count() > MAX_QUESTION_CHARS {
        return Err(Error::invalid("question", format!("longer than {MAX_QUESTION_CHARS} characters")));
    }
    let conversation = owned(ctx, &caller.user, id).await?;
    if conversation.turns >= MAX_TURNS {
        return Err(Error::invalid("conversation", format!("it has {MAX_TURNS} turns, the most one holds: start a new conversation")));
    }
    let history = history(ctx, caller, id).await?;
    let rewrite = standalone(ctx, &history, asked).await?;
    rewritten(&rewrite);
    let request = AskRequest { question: rewrite.question.clone(), passages: None, max_tokens };
    let context = json!({ "id": id, "turn": conversation.turns + 1, "rewrite": rewrite.method, "asked": ctx.auditor.text(asked, true) });
    let answer = access::ask_within(ctx, caller, &request, context, sink, stop).await?;
    let seq = store_turn(ctx, id, asked, &rewrite, &answer, conversation.turns == 0).await?;
    Ok(Asked { conversation: id, seq, rewrite, answer })
}

/// Records `caller`'s feedback on turn `seq` of conversation `id` (replacing earlier
/// feedback on it): stored with the turn, its text kept like the turn's own (otherwise only
/// hashed), and recorded in the audit log. Approved and corrected answers can become
/// training data.
pub async fn feedback(ctx: &Sanctum, caller: &Caller, id: Uuid, seq: i32, given: &Feedback) -> Result<()> {
    let correction = given.correction.as_deref().map(str::trim).filter(|c| !c.is_empty());
    let note = given.note.as_deref().map(str::trim).filter(|n| !n.is_empty());
    if correction.is_some_and(|c| c.chars().count() > MAX_QUESTION_CHARS) {
        return Err(Error::invalid("correction", format!("longer than {MAX_QUESTION_CHARS} characters")));
    }
    if note.is_some_and(|n| n.chars().count() > NOTE_CHARS) {
        return Err(Error::invalid("note", format!("longer than {NOTE_CHARS} characters")));
    }
    owned(ctx, &caller.user, id).await?;
    let kept: Option<(Option<String>,)> = sqlx::query_as("SELECT question FROM conversation_turns WHERE conversation_id = $1 AND seq = $2").bind(id).bind(seq).fetch_optional(ctx.pool()).await?;
    let Some((question,)) = kept else {
        return Err(Error::NotFound { what: "turn", id: format!("{id}/{seq}") });
    };
    let keep = question.is_some();
    let mut tx = ctx.pool().begin().await?;
    sqlx::query(
        "UPDATE conversation_turns SET helpful = $3, correction = $4, correction_hmac = $5, note = $6, note_hmac = $7, feedback_at = now()
         WHERE conversation_id = $1 AND seq = $2",
    )
    .bind(id)
    .bind(seq)
    .bind(given.helpful)
    .bind(correction.filter(|_| keep))
    .bind(correction.map(|c| ctx.auditor.text_hash(c)))
    .bind(note.filter(|_| keep))
    .bind(note.map(|n| ctx.auditor.text_hash(n)))
    .execute(&mut *tx)
    .await?;
    let entry = Entry::new(&caller.user, Action::ConversationFeedback).object(format!("{id}/{seq}")).decision("ok").details(json!({
        "via": caller.via, "token": caller.token, "helpful": given.helpful, "corrected": correction.is_some(), "noted": note.is_some(),
    }));
    crate::audit::append(&mut tx, &entry).await?;
    tx.commit().await?;
    Ok(())
}

async fn store_turn(ctx: &Sanctum, id: Uuid, asked: &str, rewrite: &Rewrite, answer: &Answer, first: bool) -> Result<i32> {
    let keep = !answer.text_hash_only;
    let hmac = |t: &str| ctx.auditor.text_hash(t);
    let sources: Vec<TurnSource> = answer
        .sources
        .iter()
        .map(|s| TurnSource { number: s.number, chunk_id: s.chunk_id, document_id: s.document_id, document_name: s.document_name.clone(), title: s.title.clone(), visible: true })
        .collect();
    let cited: Vec<i32> = answer.citations.iter().map(|c| c.number as i32).collect();
    let json = |e: serde_json::Error| Error::Internal(format!("a conversation turn could not be stored: {e}"));
    let sources = serde_json::to_value(&sources).map_err(json)?;
    let mut model = answer.model.as_ref().map(serde_json::to_value).transpose().map_err(json)?;
    // an answer the larger model wrote says so (and which model it replaced)
    if let (Some(serde_json::Value::Object(m)), Some(e)) = (model.as_mut(), answer.escalation.as_ref().filter(|e| e.answered)) {
        m.insert("escalated".into(), json!(true));
        m.insert("escalated_from".into(), serde_json::to_value(&e.from).map_err(json)?);
        m.insert("escalation_reason".into(), json!(e.reason));
    }
    let method = serde_json::to_value(&rewrite.method).map_err(json)?;
    let mut tx = ctx.pool().begin().await?;
    let seq: i32 = sqlx::query_scalar("SELECT coalesce(max(seq), 0) + 1 FROM conversation_turns WHERE conversation_id = $1").bind(id).fetch_one(&mut *tx).await?;
    sqlx::query(
        "INSERT INTO conversation_turns (conversation_id, seq, asked, asked_hmac, question, question_hmac, rewrite, answer, answer_hmac, sources, cited,
            no_evidence, ungrounded, model, audit_records)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
    )
    .bind(id)
    .bind(seq)
    .bind(keep.then_some(asked))
    .bind(hmac(asked))
    .bind(keep.then_some(rewrite.question.as_str()))
    .bind(hmac(&rewrite.question))
    .bind(method.as_str().unwrap_or("model"))
    .bind(keep.then_some(answer.text.as_str()))
    .bind(hmac(&answer.text))
    .bind(sources)
    .bind(&cited)
    .bind(answer.no_evidence)
    .bind(answer.ungrounded)
    .bind(model)
    .bind(&answer.audit_records)
    .execute(&mut *tx)
    .await?;
    // the first question names an untitled conversation (when its text may be kept)
    let title = (first && keep).then(|| title_from(asked));
    sqlx::query("UPDATE conversations SET updated_at = now(), title = CASE WHEN $2::text IS NOT NULL AND title = 'New conversation' THEN $2 ELSE title END WHERE id = $1")
        .bind(id)
        .bind(title)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_checked_and_made() {
        assert_eq!(check_title("  ICU visiting ").unwrap(), "ICU visiting");
        assert!(check_title("").unwrap_err().to_string().contains("title"));
        assert!(check_title("a\u{7}b").is_err());
        assert!(check_title(&"x".repeat(TITLE_CHARS + 1)).is_err());
        assert_eq!(title_from("How many visitors may be at a bedside in intensive care today please?"), "How many visitors may be at a bedside in intensive");
    }
}
