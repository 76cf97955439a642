//! The Qdrant cluster backend (`search.backend = "qdrant"`): one collection holds, per
//! passage, the dense embedding (`dense`, cosine) and a BM25 sparse vector (`bm25`, with
//! the engine's IDF modifier; see [`super::sparse`]), and the policy payload (`groups`,
//! `region`, `labels`, `document_id`) with keyword payload indexes. Point id = chunk id, so
//! writing a passage twice leaves one point.
//!
//! A search is one request (a Query API batch): a sparse and a dense search, each under the
//! scope filter (so a passage outside the caller's scope is never scored, exactly as in the
//! embedded indexes); their rankings are fused by reciprocal rank fusion with Sanctum's `k`
//! in the appliance (see [`search_requests`] for why not in the engine).
//!
//! Searches and writes go through an alias (`search.qdrant.collection`); `sanctum reindex`
//! fills a new collection and moves the alias in one request, so searches never see a
//! half-built index.
//!
//! The peers are the appliance's own infrastructure (like PostgreSQL): requests go to the
//! configured endpoints only, to the first that answers, and move to the next when a peer
//! stops answering.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use qdrant_client::qdrant::{
    self, AliasOperations, ChangeAliases, Condition, CountPointsBuilder, CreateAlias, CreateCollectionBuilder, CreateFieldIndexCollectionBuilder,
    DeleteAlias, DeleteCollectionBuilder, DeletePointsBuilder, Distance, FieldType, Filter, GetCollectionInfoRequest, HealthCheckRequest,
    ListAliasesRequest, Modifier, NamedVectors, PointStruct, PrefetchQueryBuilder, Query, QueryBatchPointsBuilder, QueryPointsBuilder, ReadConsistencyType, RrfBuilder,
    SparseVectorParamsBuilder, SparseVectorsConfigBuilder, UpsertPointsBuilder, Vector, VectorInput, VectorParamsBuilder, VectorsConfigBuilder,
    WriteOrderingType, alias_operations::Action, collections_client::CollectionsClient, points_client::PointsClient,
    qdrant_client::QdrantClient,
};
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Request, Status};
use uuid::Uuid;

use super::filter::{SearchFilter, indexed_groups, indexed_region};
use super::sparse::{self, Sparse};
use super::{Hit, IndexedChunk, Mode, RankedHit};
use crate::config::{QdrantConfig, QdrantFusion, ReadConsistency};
use crate::error::{Error, Result};

/// The named vectors of a point.
pub const DENSE: &str = "dense";
pub const BM25: &str = "bm25";
/// Points per upsert request.
const BATCH: usize = 256;

fn err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Index(format!("qdrant: {what}: {e}"))
}

/// One peer: its endpoint and the (lazily connected) channel to it.
struct Peer {
    url: String,
    channel: Channel,
}

/// The cluster's peers with failover between them.
pub struct Peers {
    peers: Vec<Peer>,
    /// The peer that answered last: requests start there.
    preferred: AtomicUsize,
    api_key: Option<AsciiMetadataValue>,
}

/// Whether an error means "this peer cannot answer now" (try the next), rather than an
/// answer (a refusal, a bad request) that another peer would give too.
fn is_unreachable(s: &Status) -> bool {
    matches!(s.code(), Code::Unavailable | Code::Cancelled | Code::DeadlineExceeded | Code::Unknown)
}

impl Peers {
    /// Channels to every peer of `config` (connected on first use, so a peer that is down
    /// at start does not stop the appliance).
    pub fn connect(config: &QdrantConfig) -> Result<Peers> {
        // tonic's TLS asks rustls for the process's provider, and this build links two
        // (ring through tonic, aws-lc-rs for everything else): name the one the appliance
        // uses, or the first https:// peer would panic (a provider already set stays).
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let tls = match &config.ca_file {
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| Error::io(path, e))?;
                Some(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)))
            }
            None => Some(ClientTlsConfig::new().with_native_roots()),
        };
        let timeout = Duration::from_secs(config.timeout_s);
        let mut peers = Vec::with_capacity(config.peers.len());
        for url in &config.peers {
            let url = url.trim_end_matches('/').to_string();
            let mut endpoint = Endpoint::from_shared(url.clone())
                .map_err(|e| Error::Config(format!("search.qdrant.peers: {url:?}: {e}")))?
                .timeout(timeout)
                .connect_timeout(timeout.min(Duration::from_secs(3)));
            if url.starts_with("https://") {
                if let Some(tls) = &tls {
                    endpoint = endpoint.tls_config(tls.clone()).map_err(|e| Error::Config(format!("search.qdrant: TLS for {url}: {e}")))?;
                }
            }
            peers.push(Peer { url, channel: endpoint.connect_lazy() });
        }
        let api_key = match &config.api_key_file {
            Some(path) => {
                let key = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
                let key = key.trim();
                if key.is_empty() {
                    return Err(Error::Config(format!("search.qdrant.api_key_file {}: the file is empty", path.display())));
                }
                Some(MetadataValue::try_from(key).map_err(|_| Error::Config(format!("search.qdrant.api_key_file {}: the key holds characters a header cannot", path.display())))?)
            }
            None => None,
        };
        Ok(Peers { peers, preferred: AtomicUsize::new(0), api_key })
    }

    fn request<M>(&self, message: M) -> Request<M> {
        let mut r = Request::new(message);
        if let Some(key) = &self.api_key {
            r.metadata_mut().insert("api-key", key.clone());
        }
        r
    }

    /// Sends `message` through `call` on the preferred peer, then on each other peer while
    /// they cannot be reached. Writes are idempotent (points by id), so repeating one is safe.
    async fn call<M: Clone, T, F, Fut>(&self, what: &str, message: &M, call: F) -> Result<T>
    where
        F: Fn(Channel, Request<M>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, Status>>,
    {
        let n = self.peers.len();
        let first = self.preferred.load(Ordering::Relaxed) % n;
        let mut failures = Vec::new();
        // every peer, then every peer once more after a pause (a broken connection is
        // re-established on its next use)
        for i in 0..2 * n {
            if i == n {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            let at = (first + i) % n;
            let peer = &self.peers[at];
            match call(peer.channel.clone(), self.request(message.clone())).await {
                Ok(response) => {
                    if at != first {
                        self.preferred.store(at, Ordering::Relaxed);
                        tracing::warn!(peer = %peer.url, "qdrant: a peer did not answer; requests now go to this one");
                    }
                    return Ok(response.into_inner());
                }
                Err(s) if is_unreachable(&s) => failures.push(format!("{}: {}", peer.url, s.message())),
                Err(s) => return Err(err(what, format!("{}: {:?}: {}", peer.url, s.code(), s.message()))),
            }
        }
        Err(err(what, format!("no peer answered ({})", failures.join("; "))))
    }

    pub fn urls(&self) -> Vec<String> {
        self.peers.iter().map(|p| p.url.clone()).collect()
    }

    /// Each peer's version, or why it did not answer (each asked directly, no failover).
    pub async fn health(&self) -> Vec<(String, std::result::Result<String, String>)> {
        let mut out = Vec::new();
        for p in &self.peers {
            let r = QdrantClient::new(p.channel.clone()).health_check(self.request(HealthCheckRequest {})).await;
            out.push((p.url.clone(), r.map(|r| r.into_inner().version).map_err(|s| s.message().to_string())));
        }
        out
    }
}

/// A collection (through its alias) on the cluster.
pub struct QdrantIndex {
    peers: Arc<Peers>,
    /// The alias (or, while a rebuild fills it, the new collection's own name).
    name: String,
    config: QdrantConfig,
    dimension: usize,
}

/// How a replica of a shard stands, as `doctor` reports it.
#[derive(Debug, Clone)]
pub struct ClusterState {
    pub peers: Vec<(String, std::result::Result<String, String>)>,
    /// The collection the alias points at.
    pub collection: String,
    pub status: String,
    pub points: u64,
    pub shards: u32,
    pub replication_factor: u32,
    pub dense_size: u64,
    /// (shard, peer, state) of every replica that is not active.
    pub unhealthy_replicas: Vec<(u32, u64, String)>,
    pub replicas: usize,
}

impl QdrantIndex {
    /// The index behind `config.collection`, creating the collection and the alias if the
    /// cluster has none; refuses a collection whose dense vectors have another dimension.
    pub async fn open(config: &QdrantConfig, dimension: usize) -> Result<QdrantIndex> {
        let peers = Arc::new(Peers::connect(config)?);
        let index = QdrantIndex { peers, name: config.collection.clone(), config: config.clone(), dimension };
        match index.aliased().await? {
            Some(collection) => index.check_dimension(&collection).await?,
            None => {
                // Replicas starting at once all get here: they create the one collection
                // of a fixed name (the cluster refuses all but the first) and all point the
                // alias at it (the same request from each). Aliasing a name of their own
                // would not do: Qdrant's CreateAlias replaces an existing alias silently.
                let first = format!("{}_first", index.config.collection);
                if let Err(e) = index.new_collection(&first).await {
                    if !index.exists(&first).await? {
                        return Err(e);
                    }
                }
                // a collection just created answers once its shards are up
                let deadline = std::time::Instant::now() + Duration::from_secs(index.config.timeout_s.max(10));
                while let Err(e) = index.check_dimension(&first).await {
                    if std::time::Instant::now() > deadline {
                        return Err(e);
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                index.point_alias(&first, None).await?;
            }
        }
        Ok(index)
    }

    /// Whether the cluster can serve: a peer answers, the alias is there, and every shard
    /// of the collection answers at the searches' read consistency (a count goes to every
    /// shard, so a shard with no live replica fails it, as a search would).
    pub async fn ready(&self) -> Result<()> {
        if self.aliased().await?.is_none() {
            return Err(err("alias", format!("no alias {} on the cluster", self.config.collection)));
        }
        let count = CountPointsBuilder::new(&self.name).exact(false).read_consistency(self.read_consistency()).build();
        self.peers.call("count passages on every shard", &count, |ch, r| async move { PointsClient::new(ch).count(r).await }).await?;
        Ok(())
    }

    pub fn peers(&self) -> &Peers {
        &self.peers
    }

    /// The collection the alias points at, if the alias exists.
    async fn aliased(&self) -> Result<Option<String>> {
        let listed = self
            .peers
            .call("list aliases", &ListAliasesRequest {}, |ch, r| async move { CollectionsClient::new(ch).list_aliases(r).await })
            .await?;
        Ok(listed.aliases.into_iter().find(|a| a.alias_name == self.config.collection).map(|a| a.collection_name))
    }

    async fn check_dimension(&self, collection: &str) -> Result<()> {
        let (_, dense, _, _) = self.describe(collection).await?;
        if dense != self.dimension as u64 {
            return Err(Error::Index(format!(
                "qdrant: collection {collection} holds {dense}-dimension vectors but the embedding model makes {}: run `sanctum reindex`",
                self.dimension
            )));
        }
        Ok(())
    }

    /// (status, dense size, shards, replication factor) of `collection`.
    async fn describe(&self, collection: &str) -> Result<(String, u64, u32, u32)> {
        let info = self
            .peers
            .call("collection info", &GetCollectionInfoRequest { collection_name: collection.to_string() }, |ch, r| async move { CollectionsClient::new(ch).get(r).await })
            .await?
            .result
            .ok_or_else(|| err("collection info", "empty answer"))?;
        let status = qdrant::CollectionStatus::try_from(info.status).map(|s| s.as_str_name().to_string()).unwrap_or_else(|_| info.status.to_string());
        let params = info.config.and_then(|c| c.params).unwrap_or_default();
        let dense = params
            .vectors_config
            .and_then(|v| v.config)
            .and_then(|c| match c {
                qdrant::vectors_config::Config::ParamsMap(m) => m.map.get(DENSE).map(|p| p.size),
                qdrant::vectors_config::Config::Params(_) => None,
            })
            .unwrap_or(0);
        Ok((status, dense, params.shard_number, params.replication_factor.unwrap_or(1)))
    }

    /// Whether the cluster holds a collection `name`.
    async fn exists(&self, name: &str) -> Result<bool> {
        let r = self
            .peers
            .call("collection exists", &qdrant::CollectionExistsRequest { collection_name: name.to_string() }, |ch, r| async move {
                CollectionsClient::new(ch).collection_exists(r).await
            })
            .await?;
        Ok(r.result.is_some_and(|e| e.exists))
    }

    /// Creates the empty collection `name` with its payload indexes.
    async fn new_collection(&self, name: &str) -> Result<()> {
        let mut dense = VectorsConfigBuilder::default();
        dense.add_named_vector_params(DENSE, VectorParamsBuilder::new(self.dimension as u64, Distance::Cosine));
        let mut sparse = SparseVectorsConfigBuilder::default();
        sparse.add_named_vector_params(BM25, SparseVectorParamsBuilder::default().modifier(Modifier::Idf));
        let create = CreateCollectionBuilder::new(name)
            .vectors_config(dense)
            .sparse_vectors_config(sparse)
            .shard_number(self.config.shards)
            .replication_factor(self.config.replication_factor)
            .write_consistency_factor(self.config.write_consistency)
            .timeout(self.config.timeout_s.max(60))
            .build();
        self.peers
            .call("create collection", &create, |ch, r| async move { CollectionsClient::new(ch).create(r).await })
            .await?;
        for field in ["groups", "region", "labels", "document_id"] {
            let index = CreateFieldIndexCollectionBuilder::new(name, field, FieldType::Keyword).wait(true).build();
            self.peers
                .call("create payload index", &index, |ch, r| async move { PointsClient::new(ch).create_field_index(r).await })
                .await?;
        }
        Ok(())
    }

    /// Points the alias at `collection` (replacing `previous` in the same request).
    async fn point_alias(&self, collection: &str, previous: Option<&str>) -> Result<()> {
        let mut actions = Vec::new();
        if previous.is_some() {
            actions.push(AliasOperations { action: Some(Action::DeleteAlias(DeleteAlias { alias_name: self.config.collection.clone() })) });
        }
        actions.push(AliasOperations {
            action: Some(Action::CreateAlias(CreateAlias { collection_name: collection.to_string(), alias_name: self.config.collection.clone() })),
        });
        let change = ChangeAliases { actions, timeout: Some(60) };
        self.peers
            .call("move alias", &change, |ch, r| async move { CollectionsClient::new(ch).update_aliases(r).await })
            .await?;
        Ok(())
    }

    async fn drop_collection(&self, collection: &str) -> Result<()> {
        let delete = DeleteCollectionBuilder::new(collection).timeout(60).build();
        self.peers
            .call("delete collection", &delete, |ch, r| async move { CollectionsClient::new(ch).delete(r).await })
            .await?;
        Ok(())
    }

    /// A new, empty collection to rebuild into; [`QdrantIndex::finish_rebuild`] moves the
    /// alias to it.
    pub async fn start_rebuild(&self) -> Result<QdrantIndex> {
        let tag = Uuid::new_v4().simple().to_string();
        let name = format!("{}_{}_{}", self.config.collection, chrono::Utc::now().format("%Y%m%d%H%M%S"), &tag[..8]);
        self.new_collection(&name).await?;
        Ok(QdrantIndex { peers: self.peers.clone(), name, config: self.config.clone(), dimension: self.dimension })
    }

    /// Moves the alias to the rebuilt collection in one request and drops the one it left.
    pub async fn finish_rebuild(&self, rebuilt: &QdrantIndex) -> Result<()> {
        let previous = self.aliased().await?;
        self.point_alias(&rebuilt.name, previous.as_deref()).await?;
        if let Some(old) = previous.filter(|o| *o != rebuilt.name) {
            if let Err(e) = self.drop_collection(&old).await {
                tracing::warn!(collection = %old, error = %e, "qdrant: the collection the alias left could not be dropped");
            }
        }
        Ok(())
    }

    fn write_ordering(&self) -> qdrant::WriteOrdering {
        qdrant::WriteOrdering { r#type: WriteOrderingType::Medium as i32 }
    }

    fn read_consistency(&self) -> qdrant::read_consistency::Value {
        read_consistency(self.config.read_consistency)
    }

    /// Writes `chunks` (upserts by chunk id), then removes the other points of `documents`:
    /// the documents stay searchable throughout.
    pub async fn replace(&self, documents: &[Uuid], chunks: &[IndexedChunk]) -> Result<()> {
        for batch in chunks.chunks(BATCH) {
            let points: Vec<PointStruct> = batch.iter().map(|c| point(c, self.config.bm25_avg_len)).collect::<Result<_>>()?;
            let upsert = UpsertPointsBuilder::new(&self.name, points).wait(true).ordering(self.write_ordering()).build();
            self.peers
                .call("write passages", &upsert, |ch, r| async move { PointsClient::new(ch).upsert(r).await })
                .await?;
        }
        if !documents.is_empty() {
            let kept: Vec<qdrant::PointId> = chunks.iter().filter(|c| documents.contains(&c.document_id)).map(|c| c.id.to_string().into()).collect();
            let mut stale = Filter::must([Condition::matches("document_id", documents.iter().map(|d| d.to_string()).collect::<Vec<_>>())]);
            if !kept.is_empty() {
                stale.must_not.push(Condition::has_id(kept));
            }
            let delete = DeletePointsBuilder::new(&self.name).points(stale).wait(true).ordering(self.write_ordering()).build();
            self.peers
                .call("remove passages", &delete, |ch, r| async move { PointsClient::new(ch).delete(r).await })
                .await?;
        }
        Ok(())
    }

    /// The exact number of points, read at the configured consistency.
    pub async fn count(&self) -> Result<u64> {
        self.count_at(self.config.read_consistency).await
    }

    pub async fn count_at(&self, consistency: ReadConsistency) -> Result<u64> {
        let count = CountPointsBuilder::new(&self.name).exact(true).read_consistency(read_consistency(consistency)).build();
        let r = self
            .peers
            .call("count passages", &count, |ch, r| async move { PointsClient::new(ch).count(r).await })
            .await?;
        Ok(r.result.map(|c| c.count).unwrap_or(0))
    }

    /// The fused ranking for a query (its text for BM25, its embedding for the dense
    /// search) within `filter`: one request to the cluster.
    pub async fn rank(&self, query: &str, vector: Option<Vec<f32>>, filter: &SearchFilter, mode: Mode, depth: usize, rrf_k: f32) -> Result<Vec<RankedHit>> {
        let (bm25, dense) = search_requests(&self.name, &sparse::query(query), vector, filter, mode, depth);
        if let (QdrantFusion::Engine, Some(b), Some(d)) = (self.config.fusion, &bm25, &dense) {
            let mut fused = engine_fused_request(&self.name, b, d, depth, rrf_k);
            fused.read_consistency = Some(qdrant::ReadConsistency { value: Some(self.read_consistency()) });
            let r = self.peers.call("search", &fused, |ch, r| async move { PointsClient::new(ch).query(r).await }).await?;
            let mut hits = ranked(r.result)?;
            hits.truncate(depth);
            return Ok(hits.iter().map(|h| RankedHit { score: h.score, ..RankedHit::new(h) }).collect());
        }
        let queries: Vec<qdrant::QueryPoints> = bm25.iter().chain(dense.iter()).cloned().collect();
        if queries.is_empty() {
            // nothing to match (a query of stop words only, searched by keywords only)
            return Ok(Vec::new());
        }
        let batch = QueryBatchPointsBuilder::new(&self.name, queries).read_consistency(self.read_consistency()).build();
        let r = self
            .peers
            .call("search", &batch, |ch, r| async move { PointsClient::new(ch).query_batch(r).await })
            .await?;
        let mut lists = r.result.into_iter().map(|b| ranked(b.result).map(|mut hits| {
            hits.truncate(depth);
            hits
        }));
        let bm25 = if bm25.is_some() { lists.next().transpose()?.unwrap_or_default() } else { Vec::new() };
        let dense = if dense.is_some() { lists.next().transpose()?.unwrap_or_default() } else { Vec::new() };
        Ok(match mode {
            Mode::Hybrid => super::fusion::reciprocal_rank_fusion(&bm25, &dense, rrf_k),
            Mode::Bm25 => super::fusion::single(&bm25, false),
            Mode::Dense => super::fusion::single(&dense, true),
        })
    }

    /// For each analysed term, whether a point within `filter` has it in its sparse BM25
    /// vector: one batch of single-term searches, one point each.
    pub async fn mentions(&self, terms: &[String], filter: &SearchFilter) -> Result<Vec<bool>> {
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        let scope = scope_filter(filter);
        let queries: Vec<qdrant::QueryPoints> = terms
            .iter()
            .map(|t| {
                QueryPointsBuilder::new(&self.name)
                    .query(Query::new_nearest(VectorInput::new_sparse(sparse::term_dimensions(t).to_vec(), vec![1.0, 1.0])))
                    .using(BM25)
                    .filter(scope.clone())
                    .limit(1)
                    .build()
            })
            .collect();
        let batch = QueryBatchPointsBuilder::new(&self.name, queries).read_consistency(self.read_consistency()).build();
        let r = self
            .peers
            .call("find mentioned terms", &batch, |ch, r| async move { PointsClient::new(ch).query_batch(r).await })
            .await?;
        if r.result.len() != terms.len() {
            return Err(err("find mentioned terms", format!("{} answers for {} terms", r.result.len(), terms.len())));
        }
        Ok(r.result.iter().map(|b| !b.result.is_empty()).collect())
    }

    /// The cluster as `doctor` reports it.
    pub async fn state(&self) -> Result<ClusterState> {
        let peers = self.peers.health().await;
        let collection = self.aliased().await?.ok_or_else(|| err("alias", format!("no alias {} on the cluster", self.config.collection)))?;
        let (status, dense_size, shards, replication_factor) = self.describe(&collection).await?;
        let points = self.count().await?;
        let info = self
            .peers
            .call("cluster info", &qdrant::CollectionClusterInfoRequest { collection_name: collection.clone() }, |ch, r| async move { CollectionsClient::new(ch).collection_cluster_info(r).await })
            .await?;
        let state_name = |s: i32| qdrant::ReplicaState::try_from(s).map(|s| s.as_str_name().to_string()).unwrap_or_else(|_| s.to_string());
        let mut unhealthy = Vec::new();
        let mut replicas = 0;
        for s in &info.local_shards {
            replicas += 1;
            if s.state != qdrant::ReplicaState::Active as i32 {
                unhealthy.push((s.shard_id, info.peer_id, state_name(s.state)));
            }
        }
        for s in &info.remote_shards {
            replicas += 1;
            if s.state != qdrant::ReplicaState::Active as i32 {
                unhealthy.push((s.shard_id, s.peer_id, state_name(s.state)));
            }
        }
        Ok(ClusterState { peers, collection, status, points, shards, replication_factor, dense_size, unhealthy_replicas: unhealthy, replicas })
    }
}

fn read_consistency(c: ReadConsistency) -> qdrant::read_consistency::Value {
    use qdrant::read_consistency::Value;
    match c {
        ReadConsistency::One => Value::Factor(1),
        ReadConsistency::Majority => Value::Type(ReadConsistencyType::Majority as i32),
        ReadConsistency::Quorum => Value::Type(ReadConsistencyType::Quorum as i32),
        ReadConsistency::All => Value::Type(ReadConsistencyType::All as i32),
    }
}

/// A passage as a point: both vectors and the payload the scope filter reads.
fn point(c: &IndexedChunk, avg_len: f32) -> Result<PointStruct> {
    let s = sparse::passage(c.title.as_deref(), &c.text, avg_len);
    let mut vectors = NamedVectors::default().add_vector(DENSE, Vector::new_dense(c.embedding.clone()));
    if !s.is_empty() {
        vectors = vectors.add_vector(BM25, Vector::new_sparse(s.indices, s.values));
    }
    let payload = serde_json::json!({
        "document_id": c.document_id.to_string(),
        "groups": indexed_groups(&c.groups),
        "region": indexed_region(c.region.as_deref()),
        "labels": c.labels,
    });
    let payload = qdrant_client::Payload::try_from(payload).map_err(|e| err("payload", e))?;
    Ok(PointStruct::new(c.id.to_string(), vectors, payload))
}

/// A result point as a hit: its id (a chunk id) and its payload's document id.
fn hit_of(p: qdrant::ScoredPoint) -> Result<Hit> {
    let chunk_id = match p.id.and_then(|id| id.point_id_options) {
        Some(qdrant::point_id::PointIdOptions::Uuid(s)) => Uuid::parse_str(&s).map_err(|e| err("a point id", e))?,
        other => return Err(err("a point id", format!("expected a chunk id, got {other:?}"))),
    };
    let document_id = match p.payload.get("document_id").and_then(|v| v.kind.as_ref()) {
        Some(qdrant::value::Kind::StringValue(s)) => Uuid::parse_str(s).map_err(|e| err("a point's document_id", e))?,
        _ => return Err(err("a point's payload", format!("point {chunk_id} has no document_id"))),
    };
    Ok(Hit { chunk_id, document_id, score: p.score })
}

/// The scope filter: the same restriction as [`SearchFilter::admits`], over the payload
/// as [`point`] writes it (`*` for no groups / no region).
pub fn scope_filter(f: &SearchFilter) -> Filter {
    let mut filter = Filter::default();
    if let Some(groups) = &f.groups {
        filter.must.push(Condition::matches("groups", SearchFilter::with_any(groups)));
    }
    if let Some(regions) = &f.regions {
        filter.must.push(Condition::matches("region", SearchFilter::with_any(regions)));
    }
    if !f.exclude_labels.is_empty() {
        filter.must_not.push(Condition::matches("labels", f.exclude_labels.clone()));
    }
    if !f.withheld_labels.is_empty() {
        // not (a withheld label and not the redactable one)
        let mut withheld = Filter::must([Condition::matches("labels", f.withheld_labels.clone())]);
        if let Some(r) = &f.redactable_label {
            withheld.must_not.push(Condition::matches("labels", vec![r.clone()]));
        }
        filter.must_not.push(withheld.into());
    }
    filter
}

/// The searches of a query, sent together in one batch request: BM25 (the sparse vector)
/// and dense, each under the scope filter and each `depth` deep; `None` for a retriever the
/// mode leaves out or that has nothing to search with (a query of stop words only).
///
/// The two rankings are fused here, by the embedded backend's fusion, rather than by the
/// engine's RRF: the engine orders tied scores arbitrarily (and differently from one replica
/// to the next), so identical passages — boilerplate, repeated notices — came back in a
/// different order from each peer; sorted here by score, then chunk id, every replica
/// returns the same ranking, with each retriever's rank.
pub fn search_requests(
    collection: &str,
    sparse: &Sparse,
    vector: Option<Vec<f32>>,
    filter: &SearchFilter,
    mode: Mode,
    depth: usize,
) -> (Option<qdrant::QueryPoints>, Option<qdrant::QueryPoints>) {
    let scope = scope_filter(filter);
    let request = |using: &str, q: Query| {
        QueryPointsBuilder::new(collection)
            .query(q)
            .using(using)
            .filter(scope.clone())
            .limit(fetched(depth) as u64)
            .with_payload(qdrant::PayloadIncludeSelector { fields: vec!["document_id".into()] })
            .build()
    };
    let bm25 = (mode != Mode::Dense && !sparse.is_empty())
        .then(|| request(BM25, Query::new_nearest(VectorInput::new_sparse(sparse.indices.clone(), sparse.values.clone()))));
    let dense = match (mode, vector) {
        (Mode::Bm25, _) | (_, None) => None,
        (_, Some(v)) => Some(request(DENSE, Query::new_nearest(VectorInput::new_dense(v)))),
    };
    (bm25, dense)
}

/// `search.qdrant.fusion = "engine"`: one query whose prefetches are the sparse and the
/// dense search of [`search_requests`] (each under the scope filter, each as deep), fused
/// by the engine's RRF. Qdrant scores position p (from 0) `1 / (p + k)`, the appliance
/// `1 / (k + rank)` (from 1): the engine's k is Sanctum's plus one.
pub fn engine_fused_request(collection: &str, bm25: &qdrant::QueryPoints, dense: &qdrant::QueryPoints, depth: usize, rrf_k: f32) -> qdrant::QueryPoints {
    let prefetch = |q: &qdrant::QueryPoints| {
        let mut p = PrefetchQueryBuilder::default();
        if let Some(query) = q.query.clone() {
            p = p.query(query);
        }
        if let Some(using) = q.using.clone() {
            p = p.using(using);
        }
        if let Some(filter) = q.filter.clone() {
            p = p.filter(filter);
        }
        p.limit(q.limit.unwrap_or(fetched(depth) as u64)).build()
    };
    QueryPointsBuilder::new(collection)
        .add_prefetch(prefetch(bm25))
        .add_prefetch(prefetch(dense))
        .query(Query::new_rrf(RrfBuilder::with_k(rrf_k.round().max(0.0) as u32 + 1)))
        .limit(fetched(depth) as u64)
        .with_payload(qdrant::PayloadIncludeSelector { fields: vec!["document_id".into()] })
        .build()
}

/// How many results each retriever asks the engine for to keep `depth`: passages tied at
/// the cut are included arbitrarily by the engine (and differently by each replica), so a
/// margin is fetched, ordered here, and cut here.
pub fn fetched(depth: usize) -> usize {
    depth + depth / 4 + 8
}

/// One retriever's results as hits, best first, ties ordered by chunk id. Scores are
/// compared to 5 decimals: replicas of a shard compute the same score in different segment
/// layouts, which can differ in the last bits, and must still rank alike.
fn ranked(points: Vec<qdrant::ScoredPoint>) -> Result<Vec<Hit>> {
    let mut hits: Vec<Hit> = points.into_iter().map(hit_of).collect::<Result<_>>()?;
    let key = |s: f32| (f64::from(s) * 1e5).round();
    hits.sort_by(|a, b| key(b.score).total_cmp(&key(a.score)).then(a.chunk_id.cmp(&b.chunk_id)));
    Ok(hits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use qdrant::condition::ConditionOneOf;
    use qdrant::r#match::MatchValue;
    use std::collections::HashMap;

    /// https:// peers with the site's own CA and an API key: the channel is built with
    /// that CA (rustls's provider chosen, no panic) and every request carries the key.
    #[tokio::test]
    async fn https_peers_take_the_internal_ca_and_the_api_key() {
        let dir = tempfile::tempdir().unwrap();
        let ca = rcgen::generate_simple_self_signed(vec!["qdrant.internal".into()]).unwrap();
        let (ca_file, key_file) = (dir.path().join("ca.pem"), dir.path().join("api-key"));
        std::fs::write(&ca_file, ca.cert.pem()).unwrap();
        std::fs::write(&key_file, "s3cret-key\n").unwrap();
        let config = QdrantConfig {
            peers: vec!["https://qdrant.internal:6334".into(), "https://127.0.0.1:6334/".into()],
            ca_file: Some(ca_file.clone()),
            api_key_file: Some(key_file.clone()),
            ..Default::default()
        };
        let peers = Peers::connect(&config).unwrap();
        assert_eq!(peers.urls(), vec!["https://qdrant.internal:6334", "https://127.0.0.1:6334"]);
        assert_eq!(peers.request(()).metadata().get("api-key").unwrap(), "s3cret-key");
        // an empty key, or a CA file that is not there, is refused naming the file
        std::fs::write(&key_file, "\n").unwrap();
        let e = Peers::connect(&config).err().unwrap().to_string();
        assert!(e.contains("api_key_file") && e.contains("empty"), "{e}");
        let missing = QdrantConfig { ca_file: Some(dir.path().join("nope.pem")), ..config };
        let e = Peers::connect(&missing).err().unwrap().to_string();
        assert!(e.contains("nope.pem"), "{e}");
    }

    /// A payload as [`point`] writes it, for the filter evaluator.
    type TestPayload = HashMap<&'static str, Vec<String>>;

    /// Evaluates a filter as the engine does (keyword conditions, nested filters, has_id
    /// not used here) over a point's payload.
    fn eval(f: &Filter, p: &TestPayload) -> bool {
        f.must.iter().all(|c| cond(c, p)) && !f.must_not.iter().any(|c| cond(c, p)) && (f.should.is_empty() || f.should.iter().any(|c| cond(c, p)))
    }

    fn cond(c: &Condition, p: &TestPayload) -> bool {
        match c.condition_one_of.as_ref().unwrap() {
            ConditionOneOf::Field(fc) => {
                let values = p.get(fc.key.as_str()).cloned().unwrap_or_default();
                match fc.r#match.as_ref().and_then(|m| m.match_value.as_ref()).unwrap() {
                    MatchValue::Keyword(k) => values.contains(k),
                    MatchValue::Keywords(ks) => ks.strings.iter().any(|k| values.contains(k)),
                    other => panic!("unexpected match {other:?}"),
                }
            }
            ConditionOneOf::Filter(inner) => eval(inner, p),
            other => panic!("unexpected condition {other:?}"),
        }
    }

    fn payload(groups: &[String], region: Option<&str>, labels: &[String]) -> TestPayload {
        HashMap::from([("groups", indexed_groups(groups)), ("region", vec![indexed_region(region)]), ("labels", labels.to_vec())])
    }

    /// A small deterministic generator (xorshift) for the randomized comparison.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn subset(&mut self, from: &[&str]) -> Vec<String> {
            from.iter().filter(|_| self.next() % 3 == 0).map(|s| s.to_string()).collect()
        }
        fn pick(&mut self, from: &[&str]) -> Option<String> {
            let i = (self.next() % (from.len() as u64 + 1)) as usize;
            from.get(i).map(|s| s.to_string())
        }
    }

    #[test]
    fn the_scope_filter_admits_exactly_what_the_reference_admits() {
        let groups = ["clinical", "finance", "hr", "research"];
        let regions = ["us", "eu", "uk"];
        let labels = ["phi", "pci", "legal_hold", "secret", "redactable"];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let (mut admitted, mut refused) = (0, 0);
        for _ in 0..4000 {
            let filter = SearchFilter {
                groups: (rng.next() % 4 != 0).then(|| rng.subset(&groups)),
                regions: (rng.next() % 4 != 0).then(|| rng.subset(&regions)),
                exclude_labels: rng.subset(&labels),
                withheld_labels: rng.subset(&labels),
                redactable_label: rng.pick(&labels),
            };
            let q = scope_filter(&filter);
            for _ in 0..8 {
                let (g, r, l) = (rng.subset(&groups), rng.pick(&regions), rng.subset(&labels));
                let expected = filter.admits(&g, r.as_deref(), &l);
                assert_eq!(eval(&q, &payload(&g, r.as_deref(), &l)), expected, "filter {filter:?}, groups {g:?}, region {r:?}, labels {l:?}");
                if expected { admitted += 1 } else { refused += 1 }
            }
        }
        // both outcomes were exercised often
        assert!(admitted > 3000 && refused > 3000, "admitted {admitted}, refused {refused}");
    }

    #[test]
    fn a_hybrid_search_is_a_sparse_and_a_dense_search_under_the_scope_filter() {
        let filter = SearchFilter { groups: Some(vec!["clinical".into()]), regions: Some(vec!["us".into()]), ..Default::default() };
        let (bm25, dense) = search_requests("sanctum", &sparse::query("hand hygiene"), Some(vec![0.5; 4]), &filter, Mode::Hybrid, 100);
        let (bm25, dense) = (bm25.unwrap(), dense.unwrap());
        let expected = scope_filter(&filter);
        for (q, using) in [(&bm25, BM25), (&dense, DENSE)] {
            assert_eq!(q.collection_name, "sanctum");
            assert_eq!(q.using.as_deref(), Some(using));
            assert_eq!(q.filter.as_ref(), Some(&expected), "the scope is applied inside the engine");
            assert_eq!(q.limit, Some(fetched(100) as u64), "a margin past the depth, cut after ordering ties");
            assert!(fetched(100) > 100);
        }
        // the sparse search carries the query's analysed terms
        match bm25.query.as_ref().and_then(|q| q.variant.as_ref()) {
            Some(qdrant::query::Variant::Nearest(v)) => match v.variant.as_ref() {
                Some(qdrant::vector_input::Variant::Sparse(s)) => {
                    let mut expected: Vec<u32> = ["hand", "hygien"].iter().flat_map(|t| sparse::term_dimensions(t)).collect();
                    expected.sort();
                    assert_eq!(s.indices, expected, "each term in the text's and the title's dimension");
                    assert_eq!(s.values, vec![1.0; 4]);
                }
                other => panic!("expected a sparse vector, got {other:?}"),
            },
            other => panic!("expected a nearest query, got {other:?}"),
        }
    }

    /// `fusion = "engine"`: one query, the two searches as prefetches under the scope
    /// filter, fused by the engine's RRF with k such that it scores as the appliance does.
    #[test]
    fn engine_fusion_is_one_query_with_two_scoped_prefetches_and_rrf() {
        let filter = SearchFilter { groups: Some(vec!["clinical".into()]), ..Default::default() };
        let (bm25, dense) = search_requests("sanctum", &sparse::query("hand hygiene"), Some(vec![0.5; 4]), &filter, Mode::Hybrid, 100);
        let (bm25, dense) = (bm25.unwrap(), dense.unwrap());
        let q = engine_fused_request("sanctum", &bm25, &dense, 100, 60.0);
        assert_eq!(q.collection_name, "sanctum");
        assert_eq!(q.prefetch.len(), 2);
        for (p, s) in q.prefetch.iter().zip([&bm25, &dense]) {
            assert_eq!(p.using, s.using);
            assert_eq!(p.query, s.query);
            assert_eq!(p.filter.as_ref(), Some(&scope_filter(&filter)), "each prefetch runs under the scope");
            assert_eq!(p.limit, Some(fetched(100) as u64));
        }
        match q.query.as_ref().and_then(|q| q.variant.as_ref()) {
            Some(qdrant::query::Variant::Rrf(r)) => assert_eq!(r.k, Some(61), "Qdrant's 1/(p + k) from 0 is Sanctum's 1/(k + rank) from 1"),
            other => panic!("expected RRF, got {other:?}"),
        }
        assert_eq!(q.limit, Some(fetched(100) as u64));
        // the engine's scores at k + 1 are the appliance's at k
        let engine = |p: usize, k: u32| 1.0 / ((p + 1) as f32 + k as f32 - 1.0);
        assert_eq!(engine(0, 61), 1.0 / (60.0 + 1.0));
        assert_eq!(engine(9, 61), 1.0 / (60.0 + 10.0));
    }

    #[test]
    fn single_retriever_modes_and_stop_word_queries() {
        let f = SearchFilter::default();
        let (b, d) = search_requests("c", &sparse::query("soap"), Some(vec![0.1; 4]), &f, Mode::Bm25, 10);
        assert!(b.is_some() && d.is_none());
        let (b, d) = search_requests("c", &sparse::query("soap"), Some(vec![0.1; 4]), &f, Mode::Dense, 10);
        assert!(b.is_none() && d.is_some());
        // only stop words: the hybrid search keeps its dense search alone
        let (b, d) = search_requests("c", &sparse::query("the of and"), Some(vec![0.1; 4]), &f, Mode::Hybrid, 10);
        assert!(b.is_none() && d.is_some());
    }

    fn scored(id: u128, score: f32) -> qdrant::ScoredPoint {
        let payload = qdrant_client::Payload::try_from(serde_json::json!({ "document_id": Uuid::from_u128(id + 1000).to_string() })).unwrap();
        qdrant::ScoredPoint { id: Some(Uuid::from_u128(id).to_string().into()), payload: payload.into(), score, ..Default::default() }
    }

    #[test]
    fn tied_scores_are_ordered_by_chunk_id_whatever_order_a_peer_returns() {
        let one = ranked(vec![scored(3, 0.5), scored(1, 0.9), scored(2, 0.5)]).unwrap();
        let other = ranked(vec![scored(2, 0.5), scored(3, 0.5), scored(1, 0.9)]).unwrap();
        assert_eq!(one, other);
        assert_eq!(one.iter().map(|h| h.chunk_id).collect::<Vec<_>>(), [1, 2, 3].map(Uuid::from_u128));
        assert_eq!(one[0].document_id, Uuid::from_u128(1001));
        // scores equal to 5 decimals are ties
        let one = ranked(vec![scored(3, 0.595_599_2), scored(2, 0.595_599_3)]).unwrap();
        let other = ranked(vec![scored(3, 0.595_599_3), scored(2, 0.595_599_2)]).unwrap();
        assert_eq!(one.iter().map(|h| h.chunk_id).collect::<Vec<_>>(), other.iter().map(|h| h.chunk_id).collect::<Vec<_>>());
    }

    #[test]
    fn a_point_carries_both_vectors_and_the_indexed_payload() {
        let c = IndexedChunk {
            id: Uuid::from_u128(7),
            document_id: Uuid::from_u128(8),
            title: Some("Hand hygiene".into()),
            text: "Use soap and water when hands are visibly soiled.".into(),
            groups: vec![],
            region: Some("us".into()),
            labels: vec!["phi".into()],
            embedding: vec![0.25; 4],
        };
        let p = point(&c, 100.0).unwrap();
        assert_eq!(p.id, Some(qdrant::PointId::from(Uuid::from_u128(7).to_string())));
        let json = serde_json::to_value(qdrant_client::Payload::from(p.payload.clone())).unwrap();
        assert_eq!(json["groups"], serde_json::json!(["*"]));
        assert_eq!(json["region"], "us");
        assert_eq!(json["labels"], serde_json::json!(["phi"]));
        assert_eq!(json["document_id"], Uuid::from_u128(8).to_string());
        let named = match p.vectors.and_then(|v| v.vectors_options) {
            Some(qdrant::vectors::VectorsOptions::Vectors(n)) => n.vectors,
            other => panic!("expected named vectors, got {other:?}"),
        };
        assert!(named.contains_key(DENSE) && named.contains_key(BM25));
    }
}
