//! BM25 as sparse vectors, for a vector engine that scores keywords (the Qdrant backend).
//!
//! A passage's vector holds, for each analysed term, BM25's saturated term frequency
//! `tf (k1 + 1) / (tf + k1 (1 - b + b len / avg_len))`, summed over the title and the text
//! as the keyword index scores both fields; the engine multiplies by the term's IDF
//! (`Modifier::Idf`: `ln(1 + (N - n + 0.5) / (n + 0.5))`, Lucene's), so a dot product with
//! the query's term counts is the BM25 score. Terms come from the same analyser as the
//! embedded keyword index (Lucene English: lowercase, stop words, Snowball stemming), so
//! both backends match the same words.
//!
//! A term's dimension is its FNV-1a 32-bit hash: stable across processes and versions,
//! with no vocabulary to share between replicas (two terms colliding add up, as rare as
//! a 32-bit collision among a corpus's terms).

use std::collections::BTreeMap;

use super::keyword::analyzer;

/// BM25's term-frequency saturation.
pub const K1: f32 = 1.2;
/// BM25's length normalisation.
pub const B: f32 = 0.75;
/// The average title length in terms (titles are short and their spread small).
const AVG_TITLE_LEN: f32 = 8.0;

/// The dimension of `term`: FNV-1a, 32 bits.
pub fn term_index(term: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in term.as_bytes() {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
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

fn saturate(into: &mut BTreeMap<u32, f32>, terms: &[String], avg_len: f32) {
    let mut tf: BTreeMap<u32, f32> = BTreeMap::new();
    for t in terms {
        *tf.entry(term_index(t)).or_default() += 1.0;
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
    saturate(&mut m, &terms(text), avg_len);
    if let Some(t) = title {
        saturate(&mut m, &terms(t), AVG_TITLE_LEN);
    }
    Sparse::from_map(m)
}

/// A query's vector: each term's count in the query.
pub fn query(text: &str) -> Sparse {
    let mut m = BTreeMap::new();
    for t in terms(text) {
        *m.entry(term_index(&t)).or_default() += 1.0;
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
        // the title adds its own saturated frequency
        let titled = passage(Some("Hand hygiene"), "hand", 1.0);
        let i = titled.indices.iter().position(|&x| x == term_index("hand")).unwrap();
        assert!(titled.values[i] > 1.0);
        assert!(titled.indices.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn a_query_counts_its_terms_and_drops_stop_words() {
        let q = query("the hands, the hands and soap");
        assert_eq!(q.indices.len(), 2);
        let i = q.indices.iter().position(|&x| x == term_index("hand")).unwrap();
        assert_eq!(q.values[i], 2.0);
        assert!(query("the and of").is_empty());
    }
}
