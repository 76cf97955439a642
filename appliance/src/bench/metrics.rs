//! IR metrics over document rankings, as BEIR reports them (pytrec_eval's definitions:
//! linear gain nDCG, recall at a cut-off, reciprocal rank within a cut-off).

use std::collections::HashMap;

/// nDCG@k of `ranking` (document ids, best first) against graded judgements.
pub fn ndcg_at(ranking: &[String], qrels: &HashMap<String, i32>, k: usize) -> f64 {
    let dcg: f64 = ranking
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, d)| qrels.get(d).copied().unwrap_or(0).max(0) as f64 / (i as f64 + 2.0).log2())
        .sum();
    let mut ideal: Vec<i32> = qrels.values().copied().filter(|r| *r > 0).collect();
    ideal.sort_unstable_by(|a, b| b.cmp(a));
    let idcg: f64 = ideal.iter().take(k).enumerate().map(|(i, r)| *r as f64 / (i as f64 + 2.0).log2()).sum();
    if idcg == 0.0 { 0.0 } else { dcg / idcg }
}

pub fn recall_at(ranking: &[String], qrels: &HashMap<String, i32>, k: usize) -> f64 {
    let relevant = qrels.values().filter(|r| **r > 0).count();
    if relevant == 0 {
        return 0.0;
    }
    let found = ranking.iter().take(k).filter(|d| qrels.get(*d).is_some_and(|r| *r > 0)).count();
    found as f64 / relevant as f64
}

pub fn mrr_at(ranking: &[String], qrels: &HashMap<String, i32>, k: usize) -> f64 {
    ranking
        .iter()
        .take(k)
        .position(|d| qrels.get(d).is_some_and(|r| *r > 0))
        .map_or(0.0, |p| 1.0 / (p as f64 + 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, i32)]) -> HashMap<String, i32> {
        pairs.iter().map(|(d, r)| (d.to_string(), *r)).collect()
    }
    fn r(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn perfect_and_shifted_rankings() {
        let qrels = q(&[("a", 1), ("b", 1)]);
        assert!((ndcg_at(&r(&["a", "b", "c"]), &qrels, 10) - 1.0).abs() < 1e-12);
        // relevant at ranks 2 and 3: (1/log2 3 + 1/log2 4) / (1 + 1/log2 3)
        let expected = (1.0 / 3f64.log2() + 0.5) / (1.0 + 1.0 / 3f64.log2());
        assert!((ndcg_at(&r(&["x", "a", "b"]), &qrels, 10) - expected).abs() < 1e-12);
        assert_eq!(recall_at(&r(&["x", "a"]), &qrels, 100), 0.5);
        assert_eq!(mrr_at(&r(&["x", "y", "b"]), &qrels, 10), 1.0 / 3.0);
        assert_eq!(mrr_at(&r(&["x", "y", "b"]), &qrels, 2), 0.0);
        assert_eq!(ndcg_at(&r(&["x"]), &q(&[]), 10), 0.0);
    }
}
