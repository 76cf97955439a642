//! Escalation, the small-model router: when the answer model's answer cites nothing, or it
//! says the documents do not say although a passage given was strongly similar to the
//! question, the same question and passages may be re-asked of a larger model (a second
//! model file here, or an on-prem GPU host behind the `http` backend). Whether it may is
//! the `escalate` policy decision's (principal, purpose, passages, target), and a remote
//! host is also an `egress` decision; a denial, a policy set without the rule, or a failure
//! of the larger model leaves the first answer standing. What happened travels with the
//! answer and into its audit record.

use policies::{Decision, DocumentAttrs, Principal};
use serde::Serialize;

use super::ask::Answer;
use super::citations::is_no_answer;
use super::generate::ModelInfo;
use crate::config::{AnswerBackend, EscalationConfig};
use crate::retrieve::Passage;

/// What escalation did for one answer.
#[derive(Debug, Clone, Serialize)]
pub struct Escalation {
    /// `ungrounded` (the first answer cited nothing) or `declined` (it said the documents
    /// do not say, with strong evidence given).
    pub reason: &'static str,
    /// The model whose answer was re-asked.
    pub from: Option<ModelInfo>,
    /// The larger model, as the policy saw it (`model`, `backend`, `local`, `origin`).
    pub to: serde_json::Value,
    /// The `escalate` decision allowed it.
    pub allowed: bool,
    /// Why it was denied (the policy's words), or why the larger model failed.
    pub reasons: Vec<String>,
    /// The larger model answered: its answer replaced the first.
    pub answered: bool,
    /// What escalating added, in milliseconds (decision and the larger model).
    pub added_ms: f64,
}

/// Why `first` should be re-asked of the larger model, if it should.
pub fn reason(config: &EscalationConfig, first: &Answer) -> Option<&'static str> {
    if !config.enabled || first.no_evidence {
        return None;
    }
    if config.on_ungrounded && first.ungrounded {
        return Some("ungrounded");
    }
    let strongest = first.sources.iter().filter_map(|s| s.similarity).fold(f32::NEG_INFINITY, f32::max);
    let declined = is_no_answer(&first.text) || first.text.to_ascii_lowercase().contains("do not say");
    if config.on_declined && declined && strongest >= config.strong_evidence {
        return Some("declined");
    }
    None
}

/// The larger model as the policy sees it: local (a model file here: nothing leaves the
/// appliance) or a host, by origin (`scheme://host:port`, as the egress decision names it).
pub fn target(config: &EscalationConfig) -> serde_json::Value {
    match (&config.backend, &config.http) {
        (AnswerBackend::Http, Some(http)) => {
            let origin = reqwest::Url::parse(&http.endpoint)
                .ok()
                .and_then(|u| Some(format!("{}://{}:{}", u.scheme(), u.host_str()?.to_ascii_lowercase(), u.port_or_known_default()?)))
                .unwrap_or_else(|| http.endpoint.clone());
            serde_json::json!({ "model": http.model, "backend": "http", "local": false, "origin": origin })
        }
        (backend, _) => serde_json::json!({ "model": config.model, "backend": backend, "local": true }),
    }
}

/// The `escalate` decision for `principal` with `evidence`; a policy failure (a set
/// without the rule included) is a denial naming it.
pub fn decide(auth: &policies::AuthorizedQuery, principal: &Principal, target: &serde_json::Value, evidence: &[Passage], reason: &str) -> Decision {
    let docs: Vec<DocumentAttrs> = evidence.iter().map(|p| DocumentAttrs { groups: p.groups.clone(), region: p.region.clone(), labels: p.labels.clone() }).collect();
    match auth.engine().escalate(principal, auth.purpose(), target, &docs, reason) {
        Ok(d) => d,
        Err(e) => Decision { allow: false, redact: false, reasons: vec![e.to_string()] },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HttpGeneratorConfig;

    fn answer(text: &str, ungrounded: bool, similarity: f32) -> Answer {
        let mut a = super::super::ask::no_evidence(0.0);
        a.no_evidence = false;
        a.text = text.into();
        a.ungrounded = ungrounded;
        a.sources = vec![super::super::ask::Source {
            number: 1,
            document_id: uuid::Uuid::nil(),
            chunk_id: uuid::Uuid::nil(),
            document_name: "d.md".into(),
            source_id: None,
            title: None,
            heading: None,
            page_start: None,
            page_end: None,
            char_start: 0,
            char_end: 1,
            similarity: Some(similarity),
            text: "t".into(),
        }];
        a
    }

    #[test]
    fn what_is_escalated() {
        let on = EscalationConfig { enabled: true, model: "big.gguf".into(), ..EscalationConfig::default() };
        assert_eq!(reason(&on, &answer("Two visitors.", true, 0.2)), Some("ungrounded"));
        assert_eq!(reason(&on, &answer("The documents do not say.", false, 0.7)), Some("declined"));
        assert_eq!(reason(&on, &answer("The documents do not say.", false, 0.3)), None, "weak evidence: declining is right");
        assert_eq!(reason(&on, &answer("Two visitors [1].", false, 0.9)), None, "a grounded answer stays");
        assert_eq!(reason(&EscalationConfig::default(), &answer("Two visitors.", true, 0.9)), None, "off by default");
        let mut none = answer("x", true, 0.9);
        none.no_evidence = true;
        assert_eq!(reason(&on, &none), None, "no evidence: nothing to re-ask with");
        let only_declined = EscalationConfig { on_ungrounded: false, ..on.clone() };
        assert_eq!(reason(&only_declined, &answer("Two visitors.", true, 0.9)), None);
    }

    #[test]
    fn targets_name_the_host_as_the_egress_decision_does() {
        let local = EscalationConfig { enabled: true, model: "big.gguf".into(), ..EscalationConfig::default() };
        assert_eq!(target(&local), serde_json::json!({ "model": "big.gguf", "backend": "llama_cpp", "local": true }));
        let http = HttpGeneratorConfig { endpoint: "https://GPU1.internal/".into(), model: "large".into(), api_key_env: None, context_tokens: 8192 };
        let remote = EscalationConfig { enabled: true, backend: AnswerBackend::Http, http: Some(http), ..EscalationConfig::default() };
        assert_eq!(target(&remote), serde_json::json!({ "model": "large", "backend": "http", "local": false, "origin": "https://gpu1.internal:443" }));
    }
}
