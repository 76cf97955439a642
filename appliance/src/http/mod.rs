//! `sanctum serve`: the REST API for internal systems, on actix-web over rustls. Handlers
//! are thin: they take the caller's token, call the same service function the CLI calls,
//! and turn the result (or the one error type) into JSON.
//!
//! The appliance (its database pool, indexes and models) lives on the main tokio runtime;
//! actix runs each worker on a runtime of its own, so handlers hand the service call to the
//! main runtime and await its result there.

pub mod adapters;
pub mod admin;
pub mod api;
pub mod conversations;
pub mod deadline;
pub mod documents;
pub mod error;
pub mod metrics;
pub mod openai;
pub mod openapi;
pub mod policies;
pub mod session;
pub mod sources;
pub mod tls;
pub mod ui;

use std::future::Future;
use std::sync::Arc;

use actix_web::{web, App, HttpServer};
use tokio::sync::Semaphore;

use crate::app::Sanctum;
use crate::error::{Error, Result};
use error::ApiError;

/// What every handler shares.
#[derive(Clone)]
pub struct State {
    pub ctx: Arc<Sanctum>,
    main: tokio::runtime::Handle,
    search_permits: Arc<Semaphore>,
    ask_permits: Arc<Semaphore>,
    pub metrics: Arc<metrics::Metrics>,
    /// Wakes the ingest worker (after an upload).
    ingest: Arc<tokio::sync::Notify>,
}

impl State {
    pub fn new(ctx: Arc<Sanctum>) -> State {
        let h = &ctx.config.http;
        State {
            search_permits: Arc::new(Semaphore::new(h.search_concurrency)),
            ask_permits: Arc::new(Semaphore::new(h.ask_concurrency)),
            main: tokio::runtime::Handle::current(),
            metrics: Arc::new(metrics::Metrics::default()),
            ingest: Arc::new(tokio::sync::Notify::new()),
            ctx,
        }
    }

    /// Runs `work` on the main runtime (where the pool and indexes live).
    pub async fn run<T, F, Fut>(&self, work: F) -> std::result::Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Sanctum>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T>> + Send + 'static,
    {
        let ctx = self.ctx.clone();
        self.main
            .spawn(async move { work(ctx).await })
            .await
            .map_err(|e| ApiError(Error::Internal(format!("the request task failed: {e}"))))?
            .map_err(ApiError)
    }

    /// Tells the ingest worker there are new jobs.
    pub fn ingest_wanted(&self) {
        self.ingest.notify_one();
    }

    /// A place among the searches running now, or 503 at once when there is none.
    pub fn search_permit(&self) -> std::result::Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        self.search_permits.clone().try_acquire_owned().map_err(|_| ApiError(Error::Overloaded("too many searches are running; retry shortly".into())))
    }

    pub fn ask_permit(&self) -> std::result::Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        self.ask_permits.clone().try_acquire_owned().map_err(|_| ApiError(Error::Overloaded("too many questions are being answered; retry shortly".into())))
    }
}

/// A server bound and ready to run.
pub struct Started {
    /// The addresses bound (`127.0.0.1:8443`).
    pub addrs: Vec<std::net::SocketAddr>,
    pub cert: Option<tls::ServerCert>,
    /// Stops the server (gracefully with `stop(true)`).
    pub handle: actix_web::dev::ServerHandle,
    server: actix_web::dev::Server,
    worker: tokio::task::JoinHandle<()>,
    /// The timed audit checkpoint (`audit.checkpoint_interval_s`).
    checkpoints: tokio::task::JoinHandle<()>,
    /// The hourly conversation retention purge (`[conversations]`).
    retention: tokio::task::JoinHandle<()>,
    /// Scheduled syncs of sources (`[[sources]]`).
    syncs: tokio::task::JoinHandle<()>,
}

impl Started {
    /// Serves until stopped (SIGINT, SIGTERM, or the handle), finishing requests in flight
    /// (up to `http.shutdown_timeout_s`).
    pub async fn run(self) -> Result<()> {
        let served = self.server.await.map_err(|e| Error::Internal(format!("the HTTP server stopped: {e}")));
        // a job cut short stays `running` and is queued again at the next start
        self.worker.abort();
        let _ = self.worker.await;
        // the closing checkpoint (Sanctum::close) signs what is left
        self.checkpoints.abort();
        let _ = self.checkpoints.await;
        self.retention.abort();
        let _ = self.retention.await;
        self.syncs.abort();
        let _ = self.syncs.await;
        served
    }
}

/// Binds the server (and starts the ingest worker) without serving yet.
pub async fn start(ctx: Arc<Sanctum>) -> Result<Started> {
    let config = ctx.config.http.clone();
    // the first search should not pay for loading the models
    ctx.engine().await?;
    let state = State::new(ctx.clone());
    // the identity provider's discovery document and keys, fetched now rather than at the
    // first sign-in (a provider that is down is tried again then; local sign-in works meanwhile)
    if ctx.directory.oidc.is_some() {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            if let Some(p) = &ctx.directory.oidc {
                if let Err(e) = p.discover().await {
                    tracing::warn!(code = e.code(), "the identity provider could not be reached at start; it is tried again at the next sign-in");
                }
            }
        });
    }
    let worker = tokio::spawn(ingest_worker(ctx.clone(), state.ingest.clone()));
    let wake = state.ingest.clone();
    let json_limit = config.max_body_bytes;
    let server = HttpServer::new(move || {
        App::new()
            .wrap(actix_web::middleware::from_fn(deadline::bodies_in_time))
            .wrap(actix_web::middleware::ErrorHandlers::new().handler(actix_web::http::StatusCode::PAYLOAD_TOO_LARGE, too_large))
            .wrap(actix_web::middleware::from_fn(observe))
            .app_data(web::Data::new(state.clone()))
            .app_data(web::PayloadConfig::new(json_limit))
            .app_data(web::QueryConfig::default().error_handler(api::query_error))
            .configure(api::routes)
            .configure(ui::routes)
    })
    .on_connect(tls::on_connect)
    .workers(config.workers)
    .shutdown_timeout(config.shutdown_timeout_s);
    let bind_err = |e: std::io::Error| Error::Config(format!("http.bind {}: {e}", config.bind));
    let (server, cert) = if config.tls {
        let cert = tls::server_cert(&ctx.config)?;
        let rustls = tls::rustls_config(&cert, config.client_ca_file.as_deref())?;
        (server.bind_rustls_0_23(&config.bind, rustls).map_err(bind_err)?, Some(cert))
    } else {
        (server.bind(&config.bind).map_err(bind_err)?, None)
    };
    let addrs = server.addrs();
    let server = server.run();
    let checkpoints = tokio::spawn(crate::audit::record::checkpoint_periodically(ctx.clone()));
    let retention = tokio::spawn(crate::conversations::retention::purge_periodically(ctx.clone()));
    let syncs = tokio::spawn(crate::sources::schedule::run_periodically(ctx.clone(), wake));
    Ok(Started { addrs, cert, handle: server.handle(), server, worker, checkpoints, retention, syncs })
}

/// Serves until SIGINT or SIGTERM, then finishes requests in flight (up to
/// `http.shutdown_timeout_s`). `on_ready` is told the address and the certificate.
pub async fn serve(ctx: Arc<Sanctum>, on_ready: impl FnOnce(&str, Option<&tls::ServerCert>)) -> Result<()> {
    let started = start(ctx).await?;
    let addrs: Vec<String> = started.addrs.iter().map(|a| a.to_string()).collect();
    on_ready(&addrs.join(", "), started.cert.as_ref());
    started.run().await
}

/// Indexes queued documents while the server runs: woken by uploads, and every few
/// seconds for jobs queued otherwise. Failures are the jobs' (recorded there); a fault of
/// the worker itself is logged by its code and retried.
async fn ingest_worker(ctx: Arc<Sanctum>, wake: Arc<tokio::sync::Notify>) {
    loop {
        if let Err(e) = crate::library::run_until_idle(&ctx, &|_| {}).await {
            tracing::warn!(code = e.code(), "the ingest worker stopped on an error; retrying shortly");
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
        }
    }
}

/// Counts every request by route pattern (not path: no ids or text in the labels) and status.
/// A URL holding a NUL character (`%00`, which PostgreSQL cannot store) is refused here.
async fn observe<B: actix_web::body::MessageBody>(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<B>,
) -> std::result::Result<actix_web::dev::ServiceResponse<actix_web::body::EitherBody<B>>, actix_web::Error> {
    let started = std::time::Instant::now();
    let route = req.match_pattern().unwrap_or_else(|| "(unmatched)".into());
    let method = req.method().to_string();
    let metrics = req.app_data::<web::Data<State>>().map(|s| s.metrics.clone());
    let res = if req.uri().path().contains("%00") || req.query_string().contains("%00") {
        let (r, _) = req.into_parts();
        let refused = actix_web::ResponseError::error_response(&ApiError(Error::invalid("url", "contains a NUL character (%00)")));
        actix_web::dev::ServiceResponse::new(r, refused).map_into_right_body()
    } else {
        next.call(req).await?.map_into_left_body()
    };
    if let Some(m) = metrics {
        m.observe(&method, &route, res.status().as_u16(), started.elapsed());
    }
    Ok(res)
}

/// A body over `http.max_body_bytes` gets the one error shape too (actix answers it itself).
fn too_large<B>(res: actix_web::dev::ServiceResponse<B>) -> actix_web::Result<actix_web::middleware::ErrorHandlerResponse<B>> {
    let limit = res.request().app_data::<web::Data<State>>().map(|s| s.ctx.config.http.max_body_bytes).unwrap_or_default();
    let (req, _) = res.into_parts();
    let body = ApiError(Error::invalid("body", format!("the request body is larger than http.max_body_bytes ({limit} bytes)"))).body();
    let response = actix_web::HttpResponse::PayloadTooLarge().json(body);
    Ok(actix_web::middleware::ErrorHandlerResponse::Response(actix_web::dev::ServiceResponse::new(req, response).map_into_right_body()))
}
