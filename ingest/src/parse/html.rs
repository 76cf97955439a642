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

/// What is left to do on the explicit stack: visit a node, or finish an element once its
/// children are done.
enum Step<'a> {
    Visit(ego_tree::NodeRef<'a, Node>),
    /// After a block element: end the block.
    Flush,
    /// After an inline element: keep its text apart from the next.
    Space,
}

/// Walks the tree with an explicit stack instead of recursion, so that no nesting depth
/// (20,000 nested `<div>`s is 220 KB) can overflow the thread's stack.
fn walk(root: ElementRef<'_>, b: &mut DocumentBuilder, buf: &mut String) {
    let mut stack: Vec<Step<'_>> = root.children().rev().map(Step::Visit).collect();
    while let Some(step) = stack.pop() {
        let node = match step {
            Step::Flush => {
                flush(b, buf);
                continue;
            }
            Step::Space => {
                buf.push(' ');
                continue;
            }
            Step::Visit(node) => node,
        };
        match node.value() {
            Node::Text(t) => buf.push_str(t),
            Node::Element(e) => {
                let name = e.name();
                if SKIP.contains(&name) {
                    continue;
                }
                let Some(el) = ElementRef::wrap(node) else { continue };
                if matches!(name, "h1" | "h2" | "h3" | "h4" | "h5" | "h6") {
                    flush(b, buf);
                    let heading: String = el.text().collect();
                    if name == "h1" {
                        b.title(&heading);
                    }
                    b.heading(&heading);
                    continue;
                }
                if BLOCK.contains(&name) {
                    flush(b, buf);
                    stack.push(Step::Flush);
                } else {
                    if matches!(name, "td" | "th") && !buf.trim().is_empty() {
                        buf.push_str(" | ");
                    }
                    stack.push(Step::Space);
                }
                stack.extend(node.children().rev().map(Step::Visit));
            }
            _ => {}
        }
    }
}

fn flush(b: &mut DocumentBuilder, buf: &mut String) {
    b.paragraph(buf);
    buf.clear();
}
