//! BM25 as sparse vectors, for a vector engine that scores keywords (the Qdrant backend).
//!
//! A passage's vector holds, for each analysed term of each field, BM25's saturated term
//! frequency `tf (k1 + 1) / (tf + k1 (1 - b + b len / avg_len))`; the engine multiplies by
//! the dimension's IDF (`Modifier::Idf`: `ln(1 + (N - n + 0.5) / (n + 0.5))`, Lucene's), so
//! a dot product with the query's term counts is the BM25 score. As the keyword index
//! scores the title and the text as two fields, each with its own statistics, a term has
//! one dimension in the text and another in the title (its own IDF), and a query asks for
//! both: the score is the sum of the two fields' BM25, as tantivy's. Terms come from the
//! same analyser as the embedded keyword index (Lucene English: lowercase, stop words,
//! Snowball stemming), so both backends match the same words and rank them alike.
//!
//! A term's dimension is its FNV-1a 32-bit hash (in the title: the hash of the field's
//! name, a NUL and the term, which no analysed term can equal): stable across processes
//! and versions, with no vocabulary to share between replicas (two terms colliding add
//! up, as rare as a 32-bit collision among a corpus's terms).

use std::collections::BTreeMap;

use super::keyword::analyzer;

/// BM25's term-frequency saturation.
pub const K1: f32 = 1.2;
/// BM25's length normalisation.
pub const B: f32 = 0.75;
/// The average title length in terms (titles are short and their spread small).
const AVG_TITLE_LEN: f32 = 8.0;

fn fnv1a(h: u32, bytes: &[u8]) -> u32 {
    bytes.iter().fold(h, |h, b| (h ^ u32::from(*b)).wrapping_mul(0x0100_0193))
}

/// The dimension of `term` in the text: FNV-1a, 32 bits.
pub fn term_index(term: &str) -> u32 {
    fnv1a(0x811c_9dc5, term.as_bytes())
}

/// The dimension of `term` in the title.
pub fn title_index(term: &str) -> u32 {
    fnv1a(fnv1a(0x811c_9dc5, b"title\0"), term.as_bytes())
}

/// Both dimensions of `term` (text, title): what a search for it asks for.
pub fn term_dimensions(term: &str) -> [u32; 2] {
    [term_index(term), title_index(term)]
}

/// The analysed terms of `text`, in order, repeats included.
pub fn terms(text: &str) -> Vec<String> {
    let mut analyzer = analyzer();
    let mut stream = analyzer.token_stream(text);
    let mut out = Vec::new();
    while stream.advance() {
        out.push(stream.token().text.clone());
    }
    out
}

/// A sparse vector: indices ascending, no repeats.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sparse {
    pub indices: Vec<u32>,
    pub values: Vec<f32>,
}

impl Sparse {
    fn from_map(m: BTreeMap<u32, f32>) -> Sparse {
        let (indices, values) = m.into_iter().unzip();
        Sparse { indices, values }
    }

    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }
}

fn saturate(into: &mut BTreeMap<u32, f32>, terms: &[String], avg_len: f32, dimension: fn(&str) -> u32) {
    let mut tf: BTreeMap<u32, f32> = BTreeMap::new();
    for t in terms {
        *tf.entry(dimension(t)).or_default() += 1.0;
    }
    let norm = K1 * (1.0 - B + B * terms.len() as f32 / avg_len);
    for (i, f) in tf {
        *into.entry(i).or_default() += f * (K1 + 1.0) / (f + norm);
    }
}

/// A passage's vector from its document title and its text; `avg_len` is the average
/// passage length in terms.
pub fn passage(title: Option<&str>, text: &str, avg_len: f32) -> Sparse {
    let mut m = BTreeMap::new();
    saturate(&mut m, &terms(text), avg_len, term_index);
    if let Some(t) = title {
        saturate(&mut m, &terms(t), AVG_TITLE_LEN, title_index);
    }
    Sparse::from_map(m)
}

/// A query's vector: each term's count in the query, in the text's and the title's
/// dimension.
pub fn query(text: &str) -> Sparse {
    let mut m = BTreeMap::new();
    for t in terms(text) {
        for d in term_dimensions(&t) {
            *m.entry(d).or_default() += 1.0;
        }
    }
    Sparse::from_map(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        assert_eq!(term_index(""), 0x811c_9dc5);
        assert_eq!(term_index("a"), 0xe40c_292c);
        assert_eq!(term_index("foobar"), 0xbf9c_f968);
    }

    #[test]
    fn terms_are_the_keyword_index_terms() {
        assert_eq!(terms("The Nurses washing their hands"), vec!["nurs", "wash", "hand"]);
    }

    #[test]
    fn weights_saturate_and_normalise_by_length() {
        let one = passage(None, "hand", 1.0);
        assert_eq!(one.indices, vec![term_index("hand")]);
        // tf 1 at average length: (k1 + 1) / (1 + k1) = 1
        assert!((one.values[0] - 1.0).abs() < 1e-6);
        let three = passage(None, "hand hand hand", 3.0);
        let expected = 3.0 * (K1 + 1.0) / (3.0 + K1);
        assert!((three.values[0] - expected).abs() < 1e-6);
        // a longer passage weighs the same count less
        let long = passage(None, "hand wash soap water alcohol", 1.0);
        let i = long.indices.iter().position(|&x| x == term_index("hand")).unwrap();
        assert!(long.values[i] < 1.0);
        // the title's terms are a field of their own: their own dimensions and length
        let titled = passage(Some("Hand hygiene"), "hand", 1.0);
        let at = |d: u32| titled.values[titled.indices.iter().position(|&x| x == d).unwrap()];
        assert!((at(term_index("hand")) - 1.0).abs() < 1e-6, "the text's weight is unchanged");
        let title_weight = (K1 + 1.0) / (1.0 + K1 * (1.0 - B + B * 2.0 / AVG_TITLE_LEN));
        assert!((at(title_index("hand")) - title_weight).abs() < 1e-6);
        assert!((at(title_index("hygien")) - title_weight).abs() < 1e-6);
        assert!(!titled.indices.contains(&term_index("hygien")), "a title word is not in the text");
        assert!(titled.indices.windows(2).all(|w| w[0] < w[1]));
        assert_ne!(title_index("hand"), term_index("hand"));
    }

    #[test]
    fn a_query_counts_its_terms_and_drops_stop_words() {
        let q = query("the hands, the hands and soap");
        assert_eq!(q.indices.len(), 4, "hand and soap, each in the text and the title");
        for d in term_dimensions("hand") {
            let i = q.indices.iter().position(|&x| x == d).unwrap();
            assert_eq!(q.values[i], 2.0);
        }
        assert!(query("the and of").is_empty());
    }
}
