//! The web UI's pages and assets. Templates are compiled into the binary (askama) and
//! escape every value by default; the stylesheet and the one script are embedded too, so
//! the appliance needs nothing from outside (no fonts, scripts or CDNs) and the pages can
//! run under a strict Content Security Policy (no inline script or style).

pub mod admin;
pub mod pages;

/// An embedded asset and its content type, by file name.
pub fn asset(name: &str) -> Option<(&'static [u8], &'static str)> {
    match name {
        "app.css" => Some((include_bytes!("../static/app.css"), "text/css; charset=utf-8")),
        "app.js" => Some((include_bytes!("../static/app.js"), "text/javascript; charset=utf-8")),
        _ => None,
    }
}

/// The Content Security Policy every page is served with.
pub const CONTENT_SECURITY_POLICY: &str =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

#[cfg(test)]
mod tests {
    use super::*;
    use askama::Template;

    #[test]
    fn every_value_is_escaped() {
        let page = pages::Search {
            chrome: pages::Chrome { user: "ana".into(), csrf: "t0k3n".into(), active: "search", admin: false, auditor: false },
            query: "<script>alert(1)</script>".into(),
            purpose: "operations".into(),
            purposes: vec!["operations".into()],
            filters: pages::SearchFilters { mode: "hybrid".into(), k: 8, ..Default::default() },
            results: vec![pages::PassageView {
                href: "/ui/passages/1?q=%3Cscript%3E".into(),
                title: "<img src=x onerror=alert(1)>".into(),
                document_name: "a.md".into(),
                text: "<b>bold</b>".into(),
                labels: vec!["phi".into()],
                redacted: true,
                pages: None,
                score: "0.5".into(),
            }],
            searched: true,
            error: None,
        };
        let html = page.render().unwrap();
        // askama writes < and > as numeric references
        assert!(!html.contains("<script>alert") && html.contains("&#60;script&#62;alert(1)&#60;/script&#62;"), "{html}");
        assert!(!html.contains("<img src=x") && html.contains("&#60;img src=x") && !html.contains("<b>bold"), "{html}");
        assert!(!html.contains(" style=") && !html.contains("onclick"), "no inline style or handlers");
        assert!(!html.contains("/ui/policies"), "no admin links for an analyst");
    }

    #[test]
    fn the_editor_marks_the_failing_line() {
        let chrome = pages::Chrome { user: "pat".into(), csrf: "t".into(), active: "policies", admin: true, auditor: true };
        let page = admin::PolicyEditor {
            chrome,
            files: vec!["a.rego".into()],
            file: "a.rego".into(),
            content: "package a\n\nallow if {\n".into(),
            gutter: (1..=4).map(|n| admin::GutterLine { number: n, bad: n == 3 }).collect(),
            comment: String::new(),
            validation: Some(admin::ValidationView {
                ok: false,
                errors: vec![admin::DiagnosticView { file: "a.rego".into(), line: 3, col: 10, message: "unexpected end of file".into() }],
                tests: Vec::new(),
                passed: 0,
                coverage: Vec::new(),
            }),
            diff: None,
            activatable: false,
            notice: None,
            error: None,
        };
        let html = page.render().unwrap();
        assert!(html.contains(r#"<span id="L3" class="bad">3</span>"#), "{html}");
        assert!(html.contains("a.rego line 3, column 10</a>: unexpected end of file"), "{html}");
        assert!(html.contains(r#"id="activate" disabled"#), "{html}");
        assert!(html.contains("/ui/policies") && html.contains("/ui/audit"), "admin links shown");
    }

    #[test]
    fn the_chat_thread_escapes_and_withholds() {
        let chrome = pages::Chrome { user: "ana".into(), csrf: "t".into(), active: "chat", admin: false, auditor: false };
        let turn = |seq: i32, withheld: bool| pages::TurnView {
            seq,
            asked: Some("<script>alert(1)</script> and for children?".into()),
            rewritten: Some("May children visit intensive care?".into()),
            answer: (!withheld).then(|| "Children under 12 with an adult [1].".to_string()),
            withheld,
            kept_as_hash: false,
            sources: vec![pages::SourceLink { number: 1, href: "/ui/passages/x?q=a".into(), title: "<img src=x onerror=alert(1)>".into(), withheld, cited: true }],
            model: "Answered by m.gguf.".into(),
            feedback: (seq == 1).then(|| "helpful".to_string()),
            correction: None,
        };
        let page = pages::Chat {
            chrome,
            purposes: vec!["operations".into()],
            purpose: "operations".into(),
            conversations: vec![pages::ConversationLink { id: "c1".into(), title: "<b>ICU</b>".into(), turns: 2, updated: "2026-12-03 10:00:00".into(), current: true }],
            thread: Some(pages::ThreadView { id: "c1".into(), title: "<b>ICU</b>".into(), turns: vec![turn(1, false), turn(2, true)] }),
            notices: Vec::new(),
            error: None,
        };
        let html = page.render().unwrap();
        assert!(!html.contains("<script>alert") && !html.contains("<img src=x") && !html.contains("<b>ICU"), "{html}");
        assert!(html.contains("Asked as: <q>May children visit intensive care?</q>"), "{html}");
        assert!(html.contains("Children under 12 with an adult [1]."), "{html}");
        assert!(html.contains("This answer is withheld") && html.contains("[1] withheld"), "{html}");
        assert_eq!(html.matches("Children under 12").count(), 1, "the withheld turn's answer is not in the page");
        assert!(html.contains("You said: helpful") && html.contains(r#"aria-label="Not helpful (turn 2)""#), "{html}");
        assert!(html.contains(r#"id="chat-form" class="query" data-conversation="c1""#), "{html}");
        assert!(!html.contains(" style=") && !html.contains("onclick"), "no inline style or handlers");
    }

    #[test]
    fn assets_are_embedded() {
        assert!(asset("app.css").is_some() && asset("app.js").is_some() && asset("../Cargo.toml").is_none());
    }
}
