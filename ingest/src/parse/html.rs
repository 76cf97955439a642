//! HTML via scraper (html5ever): `<title>` (or the first `<h1>`) is the title, `h1`-`h6`
//! are headings, block elements end a block, and script, style and other non-content
//! elements are dropped.

use scraper::{ElementRef, Html, Node};

use crate::{DocumentBuilder, ParsedDocument};

const SKIP: &[&str] = &["script", "style", "noscript", "template", "head", "svg", "iframe", "object", "button", "select"];
const BLOCK: &[&str] = &[
    "p", "div", "li", "ul", "ol", "pre", "blockquote", "tr", "table", "section", "article", "header",
    "footer", "main", "nav", "aside", "dd", "dt", "dl", "figure", "figcaption", "form", "address", "br", "hr",
];

pub(super) fn parse(text: &str) -> ParsedDocument {
    let html = Html::parse_document(text);
    let mut b = DocumentBuilder::new();
    if let Ok(sel) = scraper::Selector::parse("title") {
        if let Some(t) = html.select(&sel).next() {
            b.title(&t.text().collect::<String>());
        }
    }
    let mut buf = String::new();
    walk(html.root_element(), &mut b, &mut buf);
    flush(&mut b, &mut buf);
    b.finish()
}

fn walk(el: ElementRef<'_>, b: &mut DocumentBuilder, buf: &mut String) {
    for child in el.children() {
        match child.value() {
            Node::Text(t) => buf.push_str(t),
            Node::Element(e) => {
                let name = e.name();
                if SKIP.contains(&name) {
                    continue;
                }
                let Some(child_el) = ElementRef::wrap(child) else { continue };
                if matches!(name, "h1" | "h2" | "h3" | "h4" | "h5" | "h6") {
                    flush(b, buf);
                    let heading: String = child_el.text().collect();
                    if name == "h1" {
                        b.title(&heading);
                    }
                    b.heading(&heading);
                } else if BLOCK.contains(&name) {
                    flush(b, buf);
                    walk(child_el, b, buf);
                    flush(b, buf);
                } else {
                    if matches!(name, "td" | "th") && !buf.trim().is_empty() {
                        buf.push_str(" | ");
                    }
                    walk(child_el, b, buf);
                    buf.push(' ');
                }
            }
            _ => {}
        }
    }
}

fn flush(b: &mut DocumentBuilder, buf: &mut String) {
    b.paragraph(buf);
    buf.clear();
}
