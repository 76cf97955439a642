//! `sanctum bench auth`: what it costs to accept a request's credential, per request: a
//! Sanctum API token (a database read of the token and its digest) next to an identity
//! provider's JWT access token (ES256 signature, claims, scope mapping, and the person's
//! groups mapped and checked against their stored attributes: a read, and a write only
//! when they changed). The provider's keys are already known, as they are after the
//! first request; the first request of a new person (provisioning) is reported apart.

use std::sync::Arc;
use std::time::Instant;

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};

use crate::app::Sanctum;
use crate::config::{Config, DirectoryMapping, OidcConfig};
use crate::directory::{bearer, oidc};
use crate::error::{Error, Result};
use crate::tokens::{self, Scope};
use crate::users::{self, UserFields};

pub struct Options {
    pub requests: usize,
}

const ISSUER: &str = "https://idp.bench.internal";
const AUDIENCE: &str = "https://sanctum.bench.internal";

fn summary(mut ms: Vec<f64>) -> serde_json::Value {
    let mean = ms.iter().sum::<f64>() / ms.len().max(1) as f64;
    serde_json::json!({ "p50_ms": super::percentile(&mut ms, 50.0), "p99_ms": super::percentile(&mut ms, 99.0), "mean_ms": mean })
}

pub async fn run(base: &Config, opts: &Options, log: &(dyn Fn(&str) + Sync)) -> Result<serde_json::Value> {
    let mut base = base.clone();
    base.directory.mappings = vec![DirectoryMapping { group: "icu-nurses".into(), roles: vec!["clinician".into()], groups: vec!["icu".into()], region: Some("us".into()) }];
    super::with_fresh_appliance(&base, None, false, log, |ctx| async move { run_in(&ctx, opts, log).await }).await
}

async fn run_in(ctx: &Arc<Sanctum>, opts: &Options, log: &(dyn Fn(&str) + Sync)) -> Result<serde_json::Value> {
    let n = opts.requests.max(10);
    // a Sanctum API token
    let fields = UserFields { roles: Some(vec!["clinician".into()]), region: Some(Some("us".into())), groups: Some(vec!["icu".into()]), ..Default::default() };
    users::add(ctx, "bench", "bench-service", true, &fields).await?;
    let (_, api_token) = tokens::create(ctx, "bench", "bench-service", "bench", &[Scope::Search], None, None).await?;
    // a provider whose key is known, and a token it signed
    let key = rcgen::KeyPair::generate().map_err(|e| Error::Internal(e.to_string()))?;
    let encoding = EncodingKey::from_ec_pem(key.serialize_pem().as_bytes()).map_err(|e| Error::Internal(e.to_string()))?;
    let mut jwk = Jwk::from_encoding_key(&encoding, Algorithm::ES256).map_err(|e| Error::Internal(e.to_string()))?;
    jwk.common.key_id = Some("bench".into());
    let config = OidcConfig {
        issuer: ISSUER.into(),
        client_id: "sanctum".into(),
        algorithms: vec!["ES256".into()],
        api_audience: Some(AUDIENCE.into()),
        api_scopes: [("sanctum.search".to_string(), "search".to_string())].into(),
        ..Default::default()
    };
    let endpoints = oidc::Endpoints { issuer: ISSUER.into(), authorization: format!("{ISSUER}/auth"), token: format!("{ISSUER}/token"), jwks: format!("{ISSUER}/jwks"), end_session: None };
    let provider = oidc::Provider::preloaded(config, ctx.egress.clone(), endpoints, vec![jwk]);
    let now = chrono::Utc::now().timestamp();
    let claims = serde_json::json!({ "iss": ISSUER, "aud": AUDIENCE, "sub": "ehr-system", "preferred_username": "ehr-system",
        "groups": ["icu-nurses"], "scope": "sanctum.search", "iat": now, "exp": now + 3600 });
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("bench".into());
    let jwt = jsonwebtoken::encode(&header, &claims, &encoding).map_err(|e| Error::Internal(e.to_string()))?;

    let started = Instant::now();
    let first = bearer::authenticate_with(ctx, &provider, &jwt, Some(Scope::Search)).await?;
    let provision_ms = started.elapsed().as_secs_f64() * 1000.0;
    log(&format!("provisioned {first} from the token in {provision_ms:.2} ms; {n} requests each"));
    let (mut api, mut provider_jwt, mut verify) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        let s = Instant::now();
        tokens::authenticate_for(ctx, &api_token, Some(Scope::Search)).await?;
        api.push(s.elapsed().as_secs_f64() * 1000.0);
        let s = Instant::now();
        bearer::authenticate_with(ctx, &provider, &jwt, Some(Scope::Search)).await?;
        provider_jwt.push(s.elapsed().as_secs_f64() * 1000.0);
        let s = Instant::now();
        provider.verify(&jwt, AUDIENCE).await.map_err(|r| Error::Internal(r.message))?;
        verify.push(s.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(serde_json::json!({
        "bench": "auth",
        "requests": n,
        "api_token": summary(api),
        "provider_jwt": summary(provider_jwt),
        "provider_jwt_verify_only": summary(verify),
        "provider_jwt_first_request_ms": provision_ms,
        "algorithm": "ES256",
    }))
}
