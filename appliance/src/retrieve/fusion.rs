//! Reciprocal rank fusion: each retriever's ranking contributes `1 / (k + rank)` to a
//! chunk's fused score (rank from 1). It needs no score calibration between BM25 and
//! cosine similarity, which is why it is the default way to combine them.

use std::collections::HashMap;

use uuid::Uuid;

use super::{Hit, RankedHit};

/// Fuses `bm25` and `dense` rankings (each best first) into one ranking, best first.
pub fn reciprocal_rank_fusion(bm25: &[Hit], dense: &[Hit], k: f32) -> Vec<RankedHit> {
    let mut fused: HashMap<Uuid, RankedHit> = HashMap::with_capacity(bm25.len() + dense.len());
    for (i, h) in bm25.iter().enumerate() {
        let e = fused.entry(h.chunk_id).or_insert_with(|| RankedHit::new(h));
        e.bm25 = Some((i as u32 + 1, h.score));
        e.score += 1.0 / (k + i as f32 + 1.0);
    }
    for (i, h) in dense.iter().enumerate() {
        let e = fused.entry(h.chunk_id).or_insert_with(|| RankedHit::new(h));
        e.dense = Some((i as u32 + 1, h.score));
        e.score += 1.0 / (k + i as f32 + 1.0);
    }
    let mut out: Vec<RankedHit> = fused.into_values().collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.chunk_id.cmp(&b.chunk_id)));
    out
}

/// One retriever's ranking as a fused ranking (scores are the retriever's own).
pub fn single(hits: &[Hit], dense: bool) -> Vec<RankedHit> {
    hits.iter()
        .enumerate()
        .map(|(i, h)| {
            let mut r = RankedHit::new(h);
            r.score = h.score;
            if dense {
                r.dense = Some((i as u32 + 1, h.score));
            } else {
                r.bm25 = Some((i as u32 + 1, h.score));
            }
            r
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(n: u128, score: f32) -> Hit {
        Hit { chunk_id: Uuid::from_u128(n), document_id: Uuid::from_u128(n + 1000), score }
    }

    #[test]
    fn agreement_beats_a_single_first_place() {
        let bm25 = [hit(1, 9.0), hit(2, 8.0), hit(3, 7.0)];
        let dense = [hit(4, 0.9), hit(2, 0.8), hit(3, 0.7)];
        let fused = reciprocal_rank_fusion(&bm25, &dense, 60.0);
        assert_eq!(fused[0].chunk_id, Uuid::from_u128(2));
        assert_eq!(fused[0].bm25, Some((2, 8.0)));
        assert_eq!(fused[0].dense, Some((2, 0.8)));
        assert_eq!(fused.len(), 4);
        let one = fused.iter().find(|h| h.chunk_id == Uuid::from_u128(1)).unwrap();
        assert!((one.score - 1.0 / 61.0).abs() < 1e-6);
        assert_eq!(one.dense, None);
    }
}
