//! The keyword index: BM25 over chunk text and document title with tantivy's English
//! stemming analyser, and raw-token filter fields (groups, region, labels) so a filtered
//! search never scores a chunk outside the filter.
//!
//! The analyser is Lucene's English one (as Anserini uses for BEIR's BM25 baselines):
//! simple tokenizer, lowercase, Lucene's English stop words, Snowball English stemming.
//!
//! One writer per index directory (tantivy's own lock); readers reload after each commit
//! so a search sees what was just written.

use std::path::Path;
use std::sync::Mutex;

use tantivy::collector::{Count, TopDocs};
use tantivy::query::{BooleanQuery, ConstScoreQuery, FuzzyTermQuery, Occur, Query, QueryParser, TermQuery, TermSetQuery};
use tantivy::schema::{Field, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing, TextOptions, Value};
use tantivy::tokenizer::{Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, StopWordFilter, TextAnalyzer};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};
use uuid::Uuid;

use super::filter::{SearchFilter, indexed_groups, indexed_region};
use super::{Hit, IndexedChunk, KeywordIndex};
use crate::error::{Error, Result};

fn err(e: impl std::fmt::Display) -> Error {
    Error::Index(format!("keyword index: {e}"))
}

#[derive(Clone, Copy)]
struct Fields {
    chunk_id: Field,
    document_id: Field,
    title: Field,
    text: Field,
    groups: Field,
    region: Field,
    labels: Field,
}

/// tantivy-backed [`KeywordIndex`].
pub struct TantivyIndex {
    reader: IndexReader,
    writer: Mutex<IndexWriter>,
    fields: Fields,
    parser: QueryParser,
}

/// Name of the English analyser in the schema.
const ANALYZER: &str = "sanctum_en";

pub(crate) fn analyzer() -> TextAnalyzer {
    let builder = TextAnalyzer::builder(SimpleTokenizer::default()).filter(RemoveLongFilter::limit(40)).filter(LowerCaser);
    match StopWordFilter::new(Language::English) {
        Some(stop) => builder.filter(stop).filter(Stemmer::new(Language::English)).build(),
        None => builder.filter(Stemmer::new(Language::English)).build(),
    }
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let stemmed = TextOptions::default()
        .set_indexing_options(TextFieldIndexing::default().set_tokenizer(ANALYZER).set_index_option(IndexRecordOption::WithFreqsAndPositions));
    let fields = Fields {
        chunk_id: b.add_text_field("chunk_id", STRING | STORED),
        document_id: b.add_text_field("document_id", STRING | STORED),
        title: b.add_text_field("title", stemmed.clone()),
        text: b.add_text_field("text", stemmed),
        groups: b.add_text_field("groups", STRING),
        region: b.add_text_field("region", STRING),
        labels: b.add_text_field("labels", STRING),
    };
    (b.build(), fields)
}

impl TantivyIndex {
    /// Opens the index in `dir`, creating it if absent.
    pub fn open(dir: &Path) -> Result<TantivyIndex> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let (schema, fields) = schema();
        let directory = tantivy::directory::MmapDirectory::open(dir).map_err(err)?;
        let index = match Index::open_or_create(directory, schema.clone()) {
            Ok(index) => index,
            Err(tantivy::TantivyError::SchemaError(e)) => {
                // An index written with an older schema: it is derived state, so start it
                // afresh; `sanctum doctor` then reports it empty and `sanctum reindex` refills it.
                tracing::warn!("keyword index schema changed ({e}); recreating it empty, run `sanctum reindex`");
                std::fs::remove_dir_all(dir).map_err(|e| Error::io(dir, e))?;
                std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
                let directory = tantivy::directory::MmapDirectory::open(dir).map_err(err)?;
                Index::create(directory, schema, Default::default()).map_err(err)?
            }
            Err(e) => return Err(err(e)),
        };
        index.tokenizers().register(ANALYZER, analyzer());
        let writer = index.writer(64 << 20).map_err(|e| match e {
            tantivy::TantivyError::LockFailure(..) => Error::DataDirInUse(dir.to_path_buf()),
            e => err(e),
        })?;
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into().map_err(err)?;
        let mut parser = QueryParser::for_index(&index, vec![fields.title, fields.text]);
        parser.set_field_boost(fields.title, 1.0);
        Ok(TantivyIndex { reader, writer: Mutex::new(writer), fields, parser })
    }

    /// For each analysed term, whether a chunk within `filter` holds it (in its text or
    /// title), or a term within [`super::mentions::edit_distance`] edits of it.
    pub fn mentions(&self, terms: &[String], filter: &SearchFilter) -> Result<Vec<bool>> {
        let f = self.fields;
        let searcher = self.reader.searcher();
        terms
            .iter()
            .map(|t| {
                let edits = super::mentions::edit_distance(t);
                let word = |field: Field| -> Box<dyn Query> {
                    let term = Term::from_field_text(field, t);
                    if edits == 0 { Box::new(TermQuery::new(term, IndexRecordOption::Basic)) } else { Box::new(FuzzyTermQuery::new(term, edits, true)) }
                };
                let either: Box<dyn Query> = Box::new(BooleanQuery::new(vec![(Occur::Should, word(f.title)), (Occur::Should, word(f.text))]));
                let mut clauses = vec![(Occur::Must, either)];
                clauses.extend(self.filter_clauses(filter));
                Ok(searcher.search(&BooleanQuery::new(clauses), &Count).map_err(err)? > 0)
            })
            .collect()
    }

    fn filter_clauses(&self, filter: &SearchFilter) -> Vec<(Occur, Box<dyn Query>)> {
        let f = self.fields;
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        // A required clause scoring 0: it restricts the matches without changing BM25.
        let set = |field: Field, values: &[String]| -> Box<dyn Query> {
            let terms = TermSetQuery::new(SearchFilter::with_any(values).iter().map(|v| Term::from_field_text(field, v)));
            Box::new(ConstScoreQuery::new(Box::new(terms), 0.0))
        };
        if let Some(groups) = &filter.groups {
            clauses.push((Occur::Must, set(f.groups, groups)));
        }
        if let Some(regions) = &filter.regions {
            clauses.push((Occur::Must, set(f.region, regions)));
        }
        let label = |l: &str| -> Box<dyn Query> { Box::new(TermQuery::new(Term::from_field_text(f.labels, l), IndexRecordOption::Basic)) };
        for l in &filter.exclude_labels {
            clauses.push((Occur::MustNot, label(l)));
        }
        for l in &filter.withheld_labels {
            // not (withheld label and not redactable)
            let mut withheld = vec![(Occur::Must, label(l))];
            if let Some(r) = &filter.redactable_label {
                withheld.push((Occur::MustNot, label(r)));
            }
            clauses.push((Occur::MustNot, Box::new(BooleanQuery::new(withheld))));
        }
        clauses
    }
}

impl KeywordIndex for TantivyIndex {
    fn replace(&self, documents: &[Uuid], chunks: &[IndexedChunk]) -> Result<()> {
        let f = self.fields;
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        for d in documents {
            writer.delete_term(Term::from_field_text(f.document_id, &d.to_string()));
        }
        for c in chunks {
            let mut doc = TantivyDocument::default();
            doc.add_text(f.chunk_id, c.id.to_string());
            doc.add_text(f.document_id, c.document_id.to_string());
            if let Some(t) = &c.title {
                doc.add_text(f.title, t);
            }
            doc.add_text(f.text, &c.text);
            for g in indexed_groups(&c.groups) {
                doc.add_text(f.groups, g);
            }
            doc.add_text(f.region, indexed_region(c.region.as_deref()));
            for l in &c.labels {
                doc.add_text(f.labels, l);
            }
            writer.add_document(doc).map_err(err)?;
        }
        writer.commit().map_err(err)?;
        drop(writer);
        self.reader.reload().map_err(err)
    }

    fn delete_documents(&self, documents: &[Uuid]) -> Result<()> {
        self.replace(documents, &[])
    }

    fn clear(&self) -> Result<()> {
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        writer.delete_all_documents().map_err(err)?;
        writer.commit().map_err(err)?;
        drop(writer);
        self.reader.reload().map_err(err)
    }

    fn search(&self, query: &str, filter: &SearchFilter, limit: usize) -> Result<Vec<Hit>> {
        let (parsed, _errors) = self.parser.parse_query_lenient(query);
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![(Occur::Must, parsed)];
        clauses.extend(self.filter_clauses(filter));
        let query = BooleanQuery::new(clauses);
        let searcher = self.reader.searcher();
        let top = searcher.search(&query, &TopDocs::with_limit(limit).order_by_score()).map_err(err)?;
        let mut hits = Vec::with_capacity(top.len());
        for (score, addr) in top {
            let doc: TantivyDocument = searcher.doc(addr).map_err(err)?;
            let get = |field| {
                doc.get_first(field)
                    .and_then(|v| v.as_str())
                    .and_then(|s| Uuid::parse_str(s).ok())
                    .ok_or_else(|| err("a stored id is missing"))
            };
            hits.push(Hit { chunk_id: get(self.fields.chunk_id)?, document_id: get(self.fields.document_id)?, score });
        }
        Ok(hits)
    }

    fn count(&self) -> Result<u64> {
        Ok(self.reader.searcher().num_docs())
    }
}
