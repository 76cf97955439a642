//! An OpenID Connect provider: its discovery document and signing keys (fetched through the
//! egress client, kept, and fetched again when a token names a key not yet known: at most
//! once per [`REFRESH_AT_MOST_EVERY`], not once per request), and the verification of the
//! tokens it signs (ID tokens for the web sign-in, JWT access tokens for the API) with
//! `jsonwebtoken`: signature, `alg` (asymmetric algorithms the configuration lists only:
//! never `none`, never HMAC with a public key), `iss`, `aud`, `exp`/`nbf` with the
//! configured clock skew.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use crate::config::OidcConfig;
use crate::egress::EgressClient;
use crate::error::{Error, Result};

/// Tokens naming an unknown key trigger a fetch of the keys at most this often (a rotated
/// key is found at once; a flood of forged key ids costs one fetch per interval).
pub const REFRESH_AT_MOST_EVERY: Duration = Duration::from_secs(10);

/// The provider's endpoints, from its discovery document.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub issuer: String,
    pub authorization: String,
    pub token: String,
    pub jwks: String,
    pub end_session: Option<String>,
}

struct Known {
    endpoints: Endpoints,
    keys: Vec<Jwk>,
    /// When an unknown key last made the keys be fetched again.
    refreshed: Option<Instant>,
}

pub struct Provider {
    pub config: OidcConfig,
    egress: Arc<EgressClient>,
    known: tokio::sync::RwLock<Option<Arc<Known>>>,
    /// One fetch at a time.
    fetching: tokio::sync::Mutex<()>,
}

impl Provider {
    /// The egress client the provider is reached through.
    pub fn egress(&self) -> &EgressClient {
        &self.egress
    }
}

/// Why a token was refused: the stable reason recorded in the audit log, and the message.
#[derive(Debug, Clone)]
pub struct Refused {
    pub reason: &'static str,
    pub message: String,
}

impl Refused {
    fn new(reason: &'static str, message: impl Into<String>) -> Refused {
        Refused { reason, message: message.into() }
    }
}

/// A verified token's claims.
pub type Claims = serde_json::Map<String, Value>;

impl Provider {
    pub fn new(config: OidcConfig, egress: Arc<EgressClient>) -> Provider {
        Provider { config, egress, known: tokio::sync::RwLock::new(None), fetching: tokio::sync::Mutex::new(()) }
    }

    /// A provider whose endpoints and keys are already known (nothing is fetched until a
    /// token names another key): for measuring verification alone.
    pub fn preloaded(config: OidcConfig, egress: Arc<EgressClient>, endpoints: Endpoints, keys: Vec<Jwk>) -> Provider {
        let known = Known { endpoints, keys, refreshed: None };
        Provider { config, egress, known: tokio::sync::RwLock::new(Some(Arc::new(known))), fetching: tokio::sync::Mutex::new(()) }
    }

    /// The issuer's discovery document and keys, fetched now (at start, and whenever they
    /// are not known yet).
    pub async fn discover(&self) -> Result<Endpoints> {
        if let Some(k) = self.known.read().await.clone() {
            return Ok(k.endpoints.clone());
        }
        let _one = self.fetching.lock().await;
        if let Some(k) = self.known.read().await.clone() {
            return Ok(k.endpoints.clone());
        }
        let issuer = self.config.issuer.trim_end_matches('/');
        let url = format!("{issuer}/.well-known/openid-configuration");
        let doc = self.egress.get_json(&url, "OpenID Connect discovery").await?;
        let field = |name: &str| doc.get(name).and_then(Value::as_str).map(str::to_string);
        let bad = |message: String| Error::Upstream { url: url.clone(), message };
        let endpoints = Endpoints {
            issuer: field("issuer").ok_or_else(|| bad("the discovery document has no issuer".into()))?,
            authorization: field("authorization_endpoint").ok_or_else(|| bad("no authorization_endpoint".into()))?,
            token: field("token_endpoint").ok_or_else(|| bad("no token_endpoint".into()))?,
            jwks: field("jwks_uri").ok_or_else(|| bad("no jwks_uri".into()))?,
            end_session: field("end_session_endpoint"),
        };
        // OpenID Connect Discovery 4.3: the issuer in the document is the one configured
        if endpoints.issuer.trim_end_matches('/') != issuer {
            return Err(bad(format!("the document names issuer {:?}, not the configured {:?}", endpoints.issuer, self.config.issuer)));
        }
        let keys = self.fetch_keys(&endpoints.jwks).await?;
        *self.known.write().await = Some(Arc::new(Known { endpoints: endpoints.clone(), keys, refreshed: None }));
        Ok(endpoints)
    }

    /// The provider's public signing keys; symmetric (`oct`) keys and keys this build
    /// cannot use are left out.
    async fn fetch_keys(&self, url: &str) -> Result<Vec<Jwk>> {
        let set = self.egress.get_json(url, "OpenID Connect signing keys").await?;
        let keys = set.get("keys").and_then(Value::as_array).ok_or_else(|| Error::Upstream { url: url.to_string(), message: "the key set has no keys".into() })?;
        Ok(keys
            .iter()
            .filter_map(|k| serde_json::from_value::<Jwk>(k.clone()).ok())
            .filter(|k| !matches!(k.algorithm, AlgorithmParameters::OctetKey(_)))
            .collect())
    }

    /// The key `kid` names; when it is unknown, the keys are fetched again once (unless
    /// they were fetched less than [`REFRESH_AT_MOST_EVERY`] ago).
    async fn key(&self, kid: Option<&str>) -> std::result::Result<Jwk, Refused> {
        let unavailable = |e: Error| Refused::new("provider_unreachable", format!("the identity provider's keys could not be fetched: {e}"));
        self.discover().await.map_err(unavailable)?;
        let find = |known: &Known| -> Option<Jwk> {
            match kid {
                Some(kid) => known.keys.iter().find(|k| k.common.key_id.as_deref() == Some(kid)).cloned(),
                // no kid: only a provider with a single key can be understood
                None if known.keys.len() == 1 => known.keys.first().cloned(),
                None => None,
            }
        };
        let known = self.known.read().await.clone().expect("discovered above");
        if let Some(k) = find(&known) {
            return Ok(k);
        }
        let _one = self.fetching.lock().await;
        let current = self.known.read().await.clone().expect("discovered above");
        if let Some(k) = find(&current) {
            return Ok(k);
        }
        if current.refreshed.is_none_or(|t| t.elapsed() >= REFRESH_AT_MOST_EVERY) {
            let keys = self.fetch_keys(&current.endpoints.jwks).await.map_err(unavailable)?;
            let fresh = Arc::new(Known { endpoints: current.endpoints.clone(), keys, refreshed: Some(Instant::now()) });
            *self.known.write().await = Some(fresh.clone());
            if let Some(k) = find(&fresh) {
                return Ok(k);
            }
        }
        Err(Refused::new("unknown_key", format!("the token is signed with key {:?}, which the provider does not publish", kid.unwrap_or("(none named)"))))
    }

    /// Verifies `token` as signed by this provider for `audience`: signature, algorithm,
    /// issuer, audience, expiry and not-before (with the configured skew).
    pub async fn verify(&self, token: &str, audience: &str) -> std::result::Result<Claims, Refused> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| Refused::new("malformed", format!("the token is not a signed JWT this appliance accepts: {e}")))?;
        let allowed: Vec<Algorithm> = self.config.algorithms.iter().filter_map(|a| a.parse().ok()).collect();
        if !allowed.contains(&header.alg) {
            return Err(Refused::new("algorithm", format!("the token is signed with {:?}, which directory.oidc.algorithms does not allow", header.alg)));
        }
        let jwk = self.key(header.kid.as_deref()).await?;
        if let Some(a) = jwk.common.key_algorithm.and_then(|a| a.to_string().parse::<Algorithm>().ok()) {
            if a != header.alg {
                return Err(Refused::new("algorithm", format!("the token says {:?} but its key is for {a:?}", header.alg)));
            }
        }
        let key = DecodingKey::from_jwk(&jwk).map_err(|e| Refused::new("unknown_key", format!("the provider's key cannot be used: {e}")))?;
        let mut v = Validation::new(header.alg);
        v.algorithms = vec![header.alg];
        v.leeway = self.config.clock_skew_s;
        v.validate_nbf = true;
        v.set_issuer(&[self.config.issuer.as_str()]);
        v.set_audience(&[audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, &key, &v).map_err(|e| refusal(&e))?;
        Ok(data.claims)
    }
}

fn refusal(e: &jsonwebtoken::errors::Error) -> Refused {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::InvalidSignature => Refused::new("signature", "the token's signature does not verify with the provider's key"),
        K::ExpiredSignature => Refused::new("expired", "the token has expired"),
        K::ImmatureSignature => Refused::new("not_yet_valid", "the token is not valid yet (nbf)"),
        K::InvalidIssuer => Refused::new("issuer", "the token was issued by another issuer"),
        K::InvalidAudience => Refused::new("audience", "the token is meant for another audience"),
        K::InvalidAlgorithm => Refused::new("algorithm", "the token's algorithm does not match its key"),
        K::MissingRequiredClaim(c) => Refused::new("claims", format!("the token has no {c:?} claim")),
        _ => Refused::new("malformed", format!("the token does not verify: {e}")),
    }
}

/// A claim as a list of strings (a string alone is a list of one).
pub fn strings(claims: &Claims, name: &str) -> Vec<String> {
    match claims.get(name) {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        _ => Vec::new(),
    }
}
