//! Markdown via pulldown-cmark: headings become section headings (the first level-1
//! heading is the title); paragraphs, list items, quotes, code blocks and table rows
//! become blocks.

use pulldown_cmark::{Event, HeadingLevel, Parser, Tag, TagEnd};

use crate::{DocumentBuilder, ParsedDocument};

pub(super) fn parse(text: &str) -> ParsedDocument {
    let mut b = DocumentBuilder::new();
    let mut buf = String::new();
    let mut heading: Option<HeadingLevel> = None;
    let options = pulldown_cmark::Options::ENABLE_TABLES;
    for event in Parser::new_ext(text, options) {
        match event {
            Event::Start(Tag::Heading { level, .. }) => {
                flush(&mut b, &mut buf);
                heading = Some(level);
            }
            Event::End(TagEnd::Heading(_)) => {
                if heading == Some(HeadingLevel::H1) {
                    b.title(&buf);
                }
                b.heading(&buf);
                buf.clear();
                heading = None;
            }
            Event::Start(Tag::Paragraph | Tag::Item | Tag::CodeBlock(_) | Tag::TableRow | Tag::TableHead) => {
                flush(&mut b, &mut buf)
            }
            Event::End(
                TagEnd::Paragraph | TagEnd::Item | TagEnd::CodeBlock | TagEnd::TableRow | TagEnd::TableHead,
            ) => flush(&mut b, &mut buf),
            Event::End(TagEnd::TableCell) => buf.push_str(" | "),
            Event::Text(t) | Event::Code(t) | Event::InlineHtml(t) | Event::Html(t) => buf.push_str(&t),
            Event::SoftBreak | Event::HardBreak => buf.push(' '),
            _ => {}
        }
    }
    flush(&mut b, &mut buf);
    b.finish()
}

fn flush(b: &mut DocumentBuilder, buf: &mut String) {
    let text = buf.trim().trim_end_matches('|').trim();
    if !text.is_empty() {
        b.paragraph(text);
    }
    buf.clear();
}
