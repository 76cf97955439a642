//! The vector index: qdrant-edge embedded in the process, on disk under the data
//! directory, cosine distance, with the same filter fields as the keyword index kept in
//! the payload (and indexed as keywords) so filters are applied inside the HNSW search.
//!
//! qdrant-edge builds its HNSW graph only when `optimize()` is called; until then search is
//! exact over plain segments. Ingest calls [`VectorIndex::optimize`] after each drained
//! queue, reindex after the rebuild. One process per shard directory (the WAL lock).

use std::path::Path;

use qdrant_edge::{
    CreateIndex, Distance, Memory, EdgeConfigBuilder, EdgeShard, EdgeVectorParamsBuilder, FieldIndexOperations,
    Filter, PayloadFieldSchema, PayloadSchemaType, PointId, PointInsertOperations, PointOperations, PointStruct,
    QueryRequestBuilder, QueryEnum, NamedQuery, ScoringQuery, SearchParams, UpdateOperation, VectorInternal,
    WithPayloadInterface,
};
use uuid::Uuid;

use super::filter::{SearchFilter, indexed_groups, indexed_region};
use super::{Hit, IndexedChunk, VectorIndex};
use crate::error::{Error, Result};

const VECTOR: &str = "dense";

fn err(e: impl std::fmt::Display) -> Error {
    Error::Index(format!("vector index: {e}"))
}

/// qdrant-edge-backed [`VectorIndex`].
pub struct EdgeIndex {
    shard: EdgeShard,
}

impl EdgeIndex {
    /// Opens the shard in `dir`, creating it for `dimension`-sized vectors if absent.
    pub fn open(dir: &Path, dimension: usize) -> Result<EdgeIndex> {
        let exists = dir.join("edge_config.json").exists();
        let shard = if exists {
            EdgeShard::load(dir, None).map_err(|e| open_err(dir, e))?
        } else {
            let config = EdgeConfigBuilder::new()
                .vector(VECTOR, EdgeVectorParamsBuilder::new(dimension, Distance::Cosine).build())
                .payload_memory(Memory::Cached)
                .build();
            let shard = EdgeShard::new(dir, config).map_err(|e| open_err(dir, e))?;
            for field in ["document_id", "groups", "region", "labels"] {
                shard
                    .update(UpdateOperation::FieldIndexOperation(FieldIndexOperations::CreateIndex(CreateIndex {
                        field_name: field.parse().map_err(|_| err(format!("bad field {field}")))?,
                        field_schema: Some(PayloadFieldSchema::FieldType(PayloadSchemaType::Keyword)),
                    })))
                    .map_err(err)?;
            }
            shard
        };
        let index = EdgeIndex { shard };
        let stored = index.shard.config().vectors.get(VECTOR).map(|v| v.size);
        if stored != Some(dimension) {
            return Err(Error::Index(format!(
                "vector index {} holds {}-dimensional vectors but the embedding model makes {dimension}; run `sanctum reindex`",
                dir.display(),
                stored.map(|s| s.to_string()).unwrap_or_else(|| "no".into())
            )));
        }
        Ok(index)
    }

    fn filter(filter: &SearchFilter) -> Result<Option<Filter>> {
        if filter.is_empty() {
            return Ok(None);
        }
        let mut must = Vec::new();
        if let Some(g) = &filter.groups {
            must.push(serde_json::json!({"key": "groups", "match": {"any": SearchFilter::with_any(g)}}));
        }
        if let Some(r) = &filter.regions {
            must.push(serde_json::json!({"key": "region", "match": {"any": SearchFilter::with_any(r)}}));
        }
        let mut must_not = Vec::new();
        if !filter.exclude_labels.is_empty() {
            must_not.push(serde_json::json!({"key": "labels", "match": {"any": filter.exclude_labels}}));
        }
        if !filter.withheld_labels.is_empty() {
            // not (a withheld label and not redactable): a nested filter
            let mut withheld = serde_json::json!({"must": [{"key": "labels", "match": {"any": filter.withheld_labels}}]});
            if let Some(r) = &filter.redactable_label {
                withheld["must_not"] = serde_json::json!([{"key": "labels", "match": {"value": r}}]);
            }
            must_not.push(withheld);
        }
        let json = serde_json::json!({"must": must, "must_not": must_not});
        serde_json::from_value(json).map(Some).map_err(err)
    }

    fn documents_filter(documents: &[Uuid]) -> Result<Filter> {
        let ids: Vec<String> = documents.iter().map(|d| d.to_string()).collect();
        serde_json::from_value(serde_json::json!({"must": [{"key": "document_id", "match": {"any": ids}}]})).map_err(err)
    }

    /// Number of vectors covered by the HNSW graph.
    pub fn indexed_vectors(&self) -> Result<usize> {
        Ok(self.shard.info().map_err(err)?.indexed_vectors_count)
    }
}

fn open_err(dir: &Path, e: impl std::fmt::Display) -> Error {
    let msg = e.to_string();
    if msg.to_ascii_lowercase().contains("lock") {
        Error::DataDirInUse(dir.to_path_buf())
    } else {
        Error::Index(format!("cannot open vector index {}: {msg}", dir.display()))
    }
}

impl VectorIndex for EdgeIndex {
    fn replace(&self, documents: &[Uuid], chunks: &[IndexedChunk]) -> Result<()> {
        if !documents.is_empty() {
            self.shard
                .update(UpdateOperation::PointOperation(PointOperations::DeletePointsByFilter(Self::documents_filter(documents)?)))
                .map_err(err)?;
        }
        for batch in chunks.chunks(256) {
            let points = batch
                .iter()
                .map(|c| {
                    let payload = serde_json::json!({
                        "document_id": c.document_id.to_string(),
                        "groups": indexed_groups(&c.groups),
                        "region": indexed_region(c.region.as_deref()),
                        "labels": c.labels,
                    });
                    let vectors = std::collections::HashMap::from([(VECTOR.to_string(), c.embedding.clone())]);
                    PointStruct::new(PointId::Uuid(c.id), vectors, payload).into()
                })
                .collect();
            self.shard
                .update(UpdateOperation::PointOperation(PointOperations::UpsertPoints(PointInsertOperations::PointsList(points))))
                .map_err(err)?;
        }
        self.shard.flush().map_err(err)
    }

    fn delete_documents(&self, documents: &[Uuid]) -> Result<()> {
        self.replace(documents, &[])
    }

    fn clear(&self) -> Result<()> {
        let all: Filter = serde_json::from_value(serde_json::json!({})).map_err(err)?;
        self.shard.update(UpdateOperation::PointOperation(PointOperations::DeletePointsByFilter(all))).map_err(err)?;
        self.shard.flush().map_err(err)
    }

    fn search(&self, vector: &[f32], filter: &SearchFilter, limit: usize) -> Result<Vec<Hit>> {
        let mut request = QueryRequestBuilder::new(limit)
            .query(ScoringQuery::Vector(QueryEnum::Nearest(NamedQuery::new(VectorInternal::from(vector.to_vec()), VECTOR))))
            .with_payload(WithPayloadInterface::Fields(vec!["document_id".parse().map_err(|_| err("bad field"))?]))
            .params(SearchParams { hnsw_ef: Some(limit.max(128)), ..Default::default() });
        if let Some(f) = Self::filter(filter)? {
            request = request.filter(f);
        }
        let points = self.shard.query(request.build()).map_err(err)?;
        points
            .into_iter()
            .map(|p| {
                let chunk_id = match p.id {
                    PointId::Uuid(u) => u,
                    PointId::NumId(n) => return Err(err(format!("unexpected numeric point id {n}"))),
                };
                let document_id = p
                    .payload
                    .as_ref()
                    .and_then(|pl| pl.0.get("document_id"))
                    .and_then(|v| v.as_str())
                    .and_then(|s| Uuid::parse_str(s).ok())
                    .ok_or_else(|| err("a point lacks its document_id"))?;
                Ok(Hit { chunk_id, document_id, score: p.score })
            })
            .collect()
    }

    fn count(&self) -> Result<u64> {
        Ok(self.shard.info().map_err(err)?.points_count as u64)
    }

    fn optimize(&self) -> Result<()> {
        self.shard.optimize().map_err(err)?;
        Ok(())
    }
}
