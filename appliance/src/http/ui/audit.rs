//! The Audit page: the records, filterable (newest first), each one's detail with its hash
//! checked, Verify (the whole chain and the signed checkpoints), and export links (the
//! `/v1/audit/export` file). Reading the trail is itself recorded, as from the API.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;

use super::{csrf_of, error_page, forged, html, signed_in, status_of, url_escape, when, Person};
use crate::audit::{review, Action, Filter, Record};
use crate::http::State;

/// The signed-in person if they may read the audit trail; otherwise the page saying so.
async fn auditor(state: &State, req: &HttpRequest) -> std::result::Result<Person, HttpResponse> {
    let person = signed_in(state, req).await?;
    let user = person.name().to_string();
    match state.run(move |ctx| async move { review::authorize_reader(&ctx, &user).await }).await {
        Ok(()) => Ok(person),
        Err(e) => Err(error_page(status_of(&e), "Not allowed", e.0.to_string())),
    }
}

#[derive(Deserialize, Default)]
pub(super) struct AuditQuery {
    #[serde(default)]
    actor: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    decision: String,
    #[serde(default)]
    object: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
}

fn day(field: &str, text: &str, end: bool) -> std::result::Result<Option<DateTime<Utc>>, String> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    let date = NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").map_err(|_| format!("{field}: {text:?} is not a date (YYYY-MM-DD)."))?;
    let date = if end { date.succ_opt().unwrap_or(date) } else { date };
    Ok(date.and_hms_opt(0, 0, 0).map(|t| t.and_utc()))
}

impl AuditQuery {
    fn filter(&self) -> std::result::Result<Filter, String> {
        let some = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
        let action = some(&self.action).map(|a| a.parse::<Action>()).transpose().map_err(|e| format!("Action: {e}"))?;
        Ok(Filter {
            actor: some(&self.actor),
            action,
            decision: some(&self.decision),
            object: some(&self.object),
            since: day("From", &self.since, false)?,
            until: day("To", &self.until, true)?,
            limit: Some(200),
            newest_first: true,
            ..Default::default()
        })
    }

    /// The filters as `&name=value` pairs for the export links (dates as RFC 3339).
    fn export_query(&self, filter: &Filter) -> String {
        let mut q = String::new();
        for (k, v) in [("actor", &self.actor), ("action", &self.action), ("decision", &self.decision), ("object", &self.object)] {
            if !v.trim().is_empty() {
                q.push_str(&format!("&{k}={}", url_escape(v.trim())));
            }
        }
        for (k, t) in [("since", filter.since), ("until", filter.until)] {
            if let Some(t) = t {
                q.push_str(&format!("&{k}={}", url_escape(&t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))));
            }
        }
        q
    }
}

fn row(r: &Record) -> ::web::admin::RecordRow {
    ::web::admin::RecordRow {
        seq: r.seq,
        at: when(&r.at),
        actor: r.actor.clone(),
        action: r.action.clone(),
        object: r.object.clone().unwrap_or_default(),
        decision: r.decision.clone().unwrap_or_default(),
    }
}

async fn audit_page(state: &State, person: &Person, query: &AuditQuery, verification: Option<::web::admin::VerificationView>) -> HttpResponse {
    let mut page = ::web::admin::Audit {
        chrome: person.chrome("audit"),
        filters: ::web::admin::AuditFilters {
            actor: query.actor.clone(),
            action: query.action.clone(),
            decision: query.decision.clone(),
            object: query.object.clone(),
            since: query.since.clone(),
            until: query.until.clone(),
        },
        actions: Action::ALL.iter().map(|a| a.as_str()).collect(),
        records: Vec::new(),
        verification,
        export_query: String::new(),
        error: None,
    };
    let filter = match query.filter() {
        Ok(f) => f,
        Err(e) => {
            page.error = Some(e);
            return html(StatusCode::BAD_REQUEST, &page);
        }
    };
    page.export_query = query.export_query(&filter);
    let user = person.name().to_string();
    match state.run(move |ctx| async move { review::query(&ctx, &user, &filter, None).await }).await {
        Ok(rows) => {
            page.records = rows.iter().map(row).collect();
            html(StatusCode::OK, &page)
        }
        Err(e) => {
            page.error = Some(e.0.to_string());
            html(status_of(&e), &page)
        }
    }
}

pub(super) async fn audit(state: web::Data<State>, req: HttpRequest, query: web::Query<AuditQuery>) -> HttpResponse {
    match auditor(&state, &req).await {
        Ok(person) => audit_page(&state, &person, &query, None).await,
        Err(r) => r,
    }
}

pub(super) async fn verify(state: web::Data<State>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let person = match auditor(&state, &req).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    if !person.sent_csrf(&csrf_of(&body)) {
        return forged("Not verified");
    }
    let user = person.name().to_string();
    let view = match state.run(move |ctx| async move { review::verify(&ctx, &user).await }).await {
        Ok(v) => ::web::admin::VerificationView {
            ok: v.ok(),
            records: v.records,
            head_seq: v.head_seq,
            checkpoints: v.checkpoints,
            problem: match (&v.broken, v.bad_checkpoints.len()) {
                (Some((seq, why)), _) => format!("record #{seq}: {why}"),
                (None, n) if n > 0 => format!("{n} checkpoint lines are not validly signed by this installation"),
                _ => String::new(),
            },
        },
        Err(e) => return error_page(status_of(&e), "The chain could not be verified", e.0.to_string()),
    };
    audit_page(&state, &person, &AuditQuery::default(), Some(view)).await
}

pub(super) async fn record(state: web::Data<State>, req: HttpRequest, seq: web::Path<String>) -> HttpResponse {
    let person = match auditor(&state, &req).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let Ok(seq) = seq.parse::<i64>() else {
        return error_page(StatusCode::BAD_REQUEST, "No such record", "An audit record is named by its sequence number.");
    };
    let user = person.name().to_string();
    let filter = Filter { after_seq: Some(seq - 1), limit: Some(1), ..Default::default() };
    match state.run(move |ctx| async move { review::query(&ctx, &user, &filter, None).await }).await {
        Ok(rows) => match rows.into_iter().find(|r| r.seq == seq) {
            Some(r) => html(
                StatusCode::OK,
                &::web::admin::AuditRecord {
                    chrome: person.chrome("audit"),
                    record: row(&r),
                    details: serde_json::to_string_pretty(&r.details).unwrap_or_default(),
                    hash_ok: r.expected_hash() == r.hash,
                    prev_hash: r.prev_hash,
                    hash: r.hash,
                },
            ),
            None => error_page(StatusCode::NOT_FOUND, "No such record", format!("There is no audit record #{seq} (it may have been purged after export).")),
        },
        Err(e) => error_page(status_of(&e), "The record could not be read", e.0.to_string()),
    }
}
