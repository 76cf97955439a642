//! The web UI's pages and assets. Templates are compiled into the binary (askama) and
//! escape every value by default; the stylesheet and the one script are embedded too, so
//! the appliance needs nothing from outside (no fonts, scripts or CDNs) and the pages can
//! run under a strict Content Security Policy (no inline script or style).

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
            chrome: pages::Chrome { user: "ana".into(), csrf: "t0k3n".into(), active: "search" },
            query: "<script>alert(1)</script>".into(),
            purpose: "operations".into(),
            purposes: vec!["operations".into()],
            results: vec![pages::PassageView {
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
    }

    #[test]
    fn assets_are_embedded() {
        assert!(asset("app.css").is_some() && asset("app.js").is_some() && asset("../Cargo.toml").is_none());
    }
}
