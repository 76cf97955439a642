//! Directory sign-in end to end over HTTPS, on the real binary, with real servers started
//! on loopback over TLS with the test's CA: an OpenID Provider (`oidc-provider`) and an
//! OpenLDAP directory (`slapd`) seeded with people and nested groups.
//!
//! - LDAP: a directory password signs in; the groups (nested ones too) map to the roles and
//!   groups the policies decide on, and search shows what those allow; wrong passwords are
//!   throttled like local ones; filter metacharacters and over-long names are refused;
//!   someone in no mapped group gets no role and no access; with the directory down the
//!   error says so and the local break-glass administrator still signs in.
//! - The provider's JWT access tokens on the API: accepted with the mapped groups, and
//!   refused, each with an audit record, when unsigned (`alg: none`), HMAC-signed with the
//!   public key, signed by another key, for another audience or issuer, expired, without
//!   the scope, or naming an unknown key (one fetch of the keys, not one per request); a
//!   rotated key is picked up.
//! - A provider whose certificate is not trusted, and one the egress policy does not allow
//!   (no connection is made: the listener sees none).
//! - The web sign-in's ID token, as a hostile provider's token endpoint hands it over: forged
//!   (`alg: none`, HMAC with the public key, another key, an unknown key), misdirected (another
//!   audience or issuer), expired, without this sign-in's nonce or replayed from an earlier
//!   sign-in; and a state used twice. Each is refused in the appliance's own flow, recorded.
//! - Directory users cannot get a local password.

mod support;

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use support::directory::{self as dir, Provider, Slapd};
use support::{free_port, sanctum, token};

const ADMIN_PASSWORD: &str = "break-glass password 2026";

fn client(pem: &[u8]) -> reqwest::Client {
    reqwest::Client::builder().add_root_certificate(reqwest::Certificate::from_pem(pem).unwrap()).timeout(Duration::from_secs(120)).build().unwrap()
}

fn people() -> Value {
    json!({ "nina": { "preferred_username": "nina", "name": "Nina", "groups": ["icu-nurses"], "region": "us" } })
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// A token signed with `key` (PKCS#8 PEM) as `kid`, with `claims`.
fn signed(key: &std::path::Path, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_ec_pem(&std::fs::read(key).unwrap()).unwrap()).unwrap()
}

fn b64(v: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldap_sign_in_and_provider_tokens_over_https() {
    let tmp = support::tempdir();
    let pki = dir::pki(tmp.path());
    let k1 = dir::signing_key(tmp.path(), "k1");
    let k2 = dir::signing_key(tmp.path(), "k2");
    let port = free_port();
    let base = format!("https://localhost:{port}");
    let mut provider = Provider::start(tmp.path(), &pki, &[&k1], &base, &people());
    let mut ldap = Slapd::start(tmp.path(), &pki);
    let config = support::write_config(tmp.path(), &dir::sanctum_config(tmp.path(), port, &provider, &ldap, &pki));
    sanctum(&config, &["user", "add", "root-admin", "--roles", "admin,auditor"]);
    let out = std::process::Command::new(support::bin()).arg("--config").arg(&config).args(["user", "password", "root-admin"]).env("SANCTUM_PASSWORD", ADMIN_PASSWORD).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let audit_token = token(&config, "root-admin", "audit,admin");
    dir::documents(tmp.path(), &config);
    let (_server, _) = support::serve(&config);
    let http = client(&std::fs::read(tmp.path().join("data/tls/cert.pem")).unwrap());
    let url = |p: &str| format!("https://127.0.0.1:{port}{p}");
    let login = |name: &str, password: &str| {
        let http = http.clone();
        let (name, password, u) = (name.to_string(), password.to_string(), url("/v1/login"));
        async move {
            let r = http.post(u).json(&json!({ "name": name, "password": password })).send().await.unwrap();
            let cookie = r.headers().get("set-cookie").and_then(|v| v.to_str().ok()).map(|c| c.split(';').next().unwrap().to_string());
            (r.status().as_u16(), r.json::<Value>().await.unwrap(), cookie)
        }
    };
    let search = |auth: Vec<(&'static str, String)>, query: &str| {
        let http = http.clone();
        let (q, u) = (query.to_string(), url("/v1/search"));
        async move {
            let mut r = http.post(u);
            for (k, v) in auth {
                r = r.header(k, v);
            }
            let r = r.header("X-Purpose-Of-Use", "treatment").json(&json!({ "query": q, "k": 5 })).send().await.unwrap();
            let status = r.status().as_u16();
            let v: Value = r.json().await.unwrap();
            let names: Vec<String> = v["passages"].as_array().map(|a| a.iter().map(|p| p["document_name"].as_str().unwrap().to_string()).collect()).unwrap_or_default();
            (status, names, v)
        }
    };
    let me = |auth: Vec<(&'static str, String)>| {
        let http = http.clone();
        let u = url("/v1/me");
        async move {
            let mut r = http.get(u);
            for (k, v) in auth {
                r = r.header(k, v);
            }
            let r = r.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let refusals = || {
        let http = http.clone();
        let (u, t) = (url("/v1/audit?action=auth.fail&limit=1000"), audit_token.clone());
        async move {
            let v: Value = http.get(u).bearer_auth(t).send().await.unwrap().json().await.unwrap();
            v["records"].as_array().unwrap().iter().map(|r| r["details"]["reason"].as_str().unwrap_or("").to_string()).collect::<Vec<_>>()
        }
    };

    // LDAP: the directory password; icu-nurses (direct) and clinical-staff (nested) map
    let (status, body, cookie) = login("lena", dir::LDAP_PASSWORDS[0].1).await;
    assert_eq!(status, 200, "{body}");
    let cookie = vec![("cookie", cookie.unwrap()), ("x-csrf-token", body["csrf"].as_str().unwrap().to_string())];
    let (_, who) = me(cookie.clone()).await;
    assert_eq!(who["user"]["source"], "ldap", "{who}");
    assert_eq!(who["user"]["roles"], json!(["clinician"]), "{who}");
    assert_eq!(who["user"]["groups"], json!(["clinical", "icu"]), "the nested group clinical-staff maps too: {who}");
    assert_eq!(who["user"]["region"], "us", "from the directory's l attribute: {who}");
    let matched = &who["user"]["mapping"]["mapping"]["matched"];
    assert_eq!(matched.as_array().unwrap().len(), 2, "{who}");
    let (status, found, v) = search(cookie.clone(), "How often is sedation depth assessed in intensive care?").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(found.first().map(String::as_str), Some("icu-sedation-protocol.md"), "{v}");

    // someone in no mapped group: no role, no access, said plainly
    let (status, body, _) = login("omar", dir::LDAP_PASSWORDS[1].1).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("maps to a role"), "{body}");

    // hostile names: refused before the directory is asked, and recorded
    for name in ["*)(uid=*))(|(uid=*", &"a".repeat(4096)] {
        let (status, body, _) = login(name, "whatever").await;
        assert_eq!(status, 400, "{name:.40}: {body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("is not a user name"), "{body}");
    }
    // wrong directory passwords are throttled like local ones (login_max_failures = 5)
    for _ in 0..5 {
        let (status, body, _) = login("lena", "not her password").await;
        assert_eq!(status, 401, "{body}");
    }
    let (status, body, _) = login("lena", dir::LDAP_PASSWORDS[0].1).await;
    assert_eq!(status, 429, "throttled even with the right password: {body}");

    // the provider's access token (client credentials) on the API, mapped per request
    let at = provider.client_token(dir::API_CLIENT, "sanctum.search sanctum.ask").await;
    let bearer = |t: &str| vec![("authorization", format!("Bearer {t}"))];
    let (status, who) = me(bearer(&at)).await;
    assert_eq!(status, 200, "{who}");
    assert_eq!((who["user"]["name"].as_str(), who["user"]["source"].as_str()), (Some("ehr-system"), Some("oidc")), "{who}");
    assert_eq!(who["user"]["groups"], json!(["clinical", "icu"]), "{who}");
    let (status, found, v) = search(bearer(&at), "sedation interruption in the intensive care unit").await;
    assert_eq!(status, 200, "{v}");
    assert!(found.iter().any(|n| n == "icu-sedation-protocol.md"), "{v}");
    // a token without the search scope
    let ask_only = provider.client_token(("reporting", "reporting-secret-0123456789"), "sanctum.ask").await;
    let (status, _, v) = search(bearer(&ask_only), "hand hygiene").await;
    assert_eq!(status, 403, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("search scope"), "{v}");

    // forged and misdirected tokens
    let good = json!({ "iss": provider.issuer, "aud": dir::API_AUDIENCE, "sub": "ehr-system", "preferred_username": "ehr-system",
        "groups": ["icu-nurses"], "scope": "sanctum.search", "iat": now(), "exp": now() + 300 });
    let with = |k: &str, v: Value| {
        let mut c = good.clone();
        c[k] = v;
        c
    };
    let (status, _, v) = search(bearer(&signed(&k1.pem, "k1", &good)), "hand hygiene").await;
    assert_eq!(status, 200, "a token the test signs with the provider's key is accepted: {v}");
    let payload = b64(good.to_string().as_bytes());
    let unsigned = format!("{}.{payload}.", b64(br#"{"alg":"none","typ":"JWT"}"#));
    let hmac = {
        use hmac::{KeyInit, Mac};
        let head = b64(br#"{"alg":"HS256","typ":"JWT","kid":"k1"}"#);
        let public = rcgen::KeyPair::from_pem(&std::fs::read_to_string(&k1.pem).unwrap()).unwrap().public_key_der();
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&public).unwrap();
        mac.update(format!("{head}.{payload}").as_bytes());
        format!("{head}.{payload}.{}", b64(&mac.finalize().into_bytes()))
    };
    let cases: Vec<(&str, String, &str)> = vec![
        ("alg none", unsigned, "malformed"),
        ("HMAC with the public key", hmac, "algorithm"),
        ("another key", signed(&k2.pem, "k1", &good), "signature"),
        ("wrong audience", signed(&k1.pem, "k1", &with("aud", json!("https://another.app"))), "audience"),
        ("wrong issuer", signed(&k1.pem, "k1", &with("iss", json!("https://evil.example"))), "issuer"),
        ("expired", signed(&k1.pem, "k1", &with("exp", json!(now() - 600))), "expired"),
    ];
    for (what, t, reason) in &cases {
        let (status, _, v) = search(bearer(t), "hand hygiene").await;
        assert_eq!(status, 401, "{what}: {v}");
        let reasons = refusals().await;
        assert_eq!(reasons.last().map(String::as_str), Some(*reason), "{what}: {reasons:?}");
    }
    // an unknown key: the keys are fetched once more, then the token is refused; a second
    // such token within the interval costs no fetch
    let before = provider.stats().await["jwks"].as_u64().unwrap();
    for kid in ["nobody-1", "nobody-2", "nobody-3"] {
        let (status, _, v) = search(bearer(&signed(&k2.pem, kid, &good)), "hand hygiene").await;
        assert_eq!(status, 401, "{v}");
        assert!(v["error"]["message"].as_str().unwrap().contains("does not publish"), "{v}");
    }
    assert_eq!(provider.stats().await["jwks"].as_u64().unwrap(), before + 1, "one fetch of the keys for three unknown keys");
    // a rotated key: the provider now signs with k2; after the interval the next unknown
    // key is fetched and the token accepted
    provider.rotate(&[&k1, &k2]);
    tokio::time::sleep(sanctum::directory::oidc::REFRESH_AT_MOST_EVERY).await;
    let (status, _, v) = search(bearer(&signed(&k2.pem, "k2", &good)), "hand hygiene").await;
    assert_eq!(status, 200, "a token signed with the rotated-in key: {v}");

    // the directory goes away: a clear error, and the local break-glass administrator still signs in
    ldap.stop();
    let (status, body, _) = login("omar", dir::LDAP_PASSWORDS[1].1).await;
    assert_eq!(status, 502, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("local accounts can still sign in"), "{body}");
    let (status, body, _) = login("root-admin", ADMIN_PASSWORD).await;
    assert_eq!(status, 200, "break-glass: {body}");

    let reasons = refusals().await;
    for r in ["invalid_name", "unmapped", "wrong password", "throttled", "scope", "unknown_key", "directory_unreachable"] {
        assert!(reasons.iter().any(|x| x == r), "no refusal recorded for {r}: {reasons:?}");
    }
}

/// The egress policy decides before any connection, and an untrusted certificate refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_outside_the_egress_policy_or_with_an_untrusted_certificate_is_refused() {
    use sanctum::app::Sanctum;
    use sanctum::config::{DirectoryConfig, OidcConfig};
    let tmp = support::tempdir();
    let pki = dir::pki(tmp.path());
    let k1 = dir::signing_key(tmp.path(), "k1");
    let provider = Provider::start(tmp.path(), &pki, &[&k1], "https://localhost:1", &people());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let unlisted = format!("https://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let oidc = |issuer: &str| OidcConfig {
        issuer: issuer.into(),
        client_id: "sanctum".into(),
        redirect_url: "https://localhost:1/ui/oidc/callback".into(),
        ..Default::default()
    };

    // not in egress.allow: refused by the egress decision, and no connection is opened
    let mut c = support::config(&tmp.path().join("one"));
    c.egress.allow = vec![provider.issuer.clone()];
    c.egress.ca_file = Some(pki.ca.clone());
    c.directory = DirectoryConfig { oidc: Some(oidc(&unlisted)), ..Default::default() };
    c.directory.mappings = vec![sanctum::config::DirectoryMapping { group: "icu-nurses".into(), roles: vec!["clinician".into()], groups: vec!["icu".into()], region: None }];
    let ctx = Sanctum::open(c).await.unwrap();
    let err = sanctum::directory::flow::start(&ctx, "/ui/search").await.err().unwrap();
    assert!(err.to_string().contains("not a named endpoint"), "{err}");
    assert!(err.to_string().contains("local accounts can still sign in"), "{err}");
    // a directory user's password is the directory's: none can be set here
    let person = sanctum::directory::Person {
        source: sanctum::directory::Source::Oidc,
        issuer: unlisted.clone(),
        subject: "nina-sub".into(),
        name: "nina".into(),
        groups: vec!["ICU-Nurses".into()],
        region: None,
    };
    let user = sanctum::directory::provision(&ctx, &person, "oidc").await.unwrap();
    assert_eq!((user.roles.clone(), user.groups.clone(), user.source.as_str()), (vec!["clinician".to_string()], vec!["icu".to_string()], "oidc"));
    let err = sanctum::auth::set_password(&ctx, "admin", "nina", "a local password 2026").await.unwrap_err();
    assert!(err.to_string().contains("changed there, not here"), "{err}");
    // nor can a local account of the same name be taken over by a directory identity
    sanctum::users::add(&ctx, "admin", "cole", false, &sanctum::users::UserFields { roles: Some(vec!["admin".into()]), ..Default::default() }).await.unwrap();
    let err = sanctum::directory::provision(&ctx, &sanctum::directory::Person { name: "cole".into(), subject: "cole-sub".into(), ..person.clone() }, "oidc").await.unwrap_err();
    assert!(err.to_string().contains("already belongs to a local account"), "{err}");
    assert_eq!(listener.accept().err().map(|e| e.kind()), Some(std::io::ErrorKind::WouldBlock), "a connection reached the listener");
    ctx.close().await.unwrap();

    // allowed, but its certificate chains to a CA this appliance does not trust
    let mut c = support::config(&tmp.path().join("two"));
    c.egress.allow = vec![provider.issuer.clone()];
    c.directory = DirectoryConfig { oidc: Some(oidc(&provider.issuer)), ..Default::default() };
    let ctx = Sanctum::open(c).await.unwrap();
    let err = sanctum::directory::flow::start(&ctx, "/ui/search").await.err().unwrap();
    assert_eq!(err.code(), "upstream_error", "{err}");
    assert!(err.to_string().to_lowercase().contains("certificate"), "{err}");
    assert_eq!(provider.stats().await["token"], 0);
    ctx.close().await.unwrap();
}

/// One web sign-in against the forger: the flow starts, the token endpoint will answer with
/// `token(nonce)`, and the provider sends the browser back with a code.
async fn sign_in_with(ctx: &sanctum::app::Sanctum, forger: &dir::Forger, token: impl FnOnce(&str) -> String) -> (String, sanctum::error::Result<String>) {
    use sanctum::directory::flow;
    let started = flow::start(ctx, "/ui/search").await.unwrap();
    let url = reqwest::Url::parse(&started.location).unwrap();
    let nonce = url.query_pairs().find(|(k, _)| k == "nonce").map(|(_, v)| v.to_string()).unwrap();
    assert!(url.query_pairs().any(|(k, v)| k == "code_challenge_method" && v == "S256"), "{url}");
    forger.set_id_token(&token(&nonce));
    let back = flow::Callback { code: Some("a-code".into()), state: Some(started.state.clone()), ..Default::default() };
    let done = flow::finish(ctx, Some(&started.state), &back, "127.0.0.1").await.map(|(session, _, _)| session.user_name);
    (started.state, done)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_misdirected_or_replayed_id_tokens_are_refused_at_sign_in() {
    use sanctum::app::Sanctum;
    use sanctum::config::{DirectoryConfig, DirectoryMapping, OidcConfig};
    use sanctum::directory::flow;
    let tmp = support::tempdir();
    let pki = dir::pki(tmp.path());
    let k1 = dir::signing_key(tmp.path(), "k1");
    let k2 = dir::signing_key(tmp.path(), "k2");
    let forger = dir::Forger::start(tmp.path(), &pki, &k1);
    let mut c = support::config(&tmp.path().join("data"));
    c.egress.allow = vec![forger.issuer.clone()];
    c.egress.ca_file = Some(pki.ca.clone());
    c.directory = DirectoryConfig {
        oidc: Some(OidcConfig {
            issuer: forger.issuer.clone(),
            client_id: "sanctum".into(),
            redirect_url: "https://localhost:1/ui/oidc/callback".into(),
            algorithms: vec!["ES256".into()],
            ..Default::default()
        }),
        ldap: None,
        mappings: vec![DirectoryMapping { group: "icu-nurses".into(), roles: vec!["clinician".into()], groups: vec!["icu".into()], region: Some("us".into()) }],
    };
    let ctx = Sanctum::open(c).await.unwrap();
    let issuer = forger.issuer.clone();
    let claims = move |nonce: &str| json!({ "iss": issuer, "aud": "sanctum", "sub": "nina-sub", "preferred_username": "nina",
        "groups": ["icu-nurses"], "nonce": nonce, "iat": now(), "exp": now() + 300 });
    let with = |c: Value, k: &str, v: Value| {
        let mut c = c;
        c[k] = v;
        c
    };

    // a well-made ID token signs nina in
    let mut first_token = String::new();
    let (state, done) = sign_in_with(&ctx, &forger, |n| {
        first_token = signed(&k1.pem, "k1", &claims(n));
        first_token.clone()
    })
    .await;
    assert_eq!(done.unwrap(), "nina");
    // the same state again
    let again = flow::Callback { code: Some("a-code".into()), state: Some(state.clone()), ..Default::default() };
    let err = flow::finish(&ctx, Some(&state), &again, "127.0.0.1").await.err().unwrap();
    assert!(err.to_string().contains("already used"), "{err}");

    let b64v = |v: &Value| b64(v.to_string().as_bytes());
    let hmac = |c: &Value| {
        use hmac::{KeyInit, Mac};
        let (head, payload) = (b64v(&json!({"alg": "HS256", "typ": "JWT", "kid": "k1"})), b64v(c));
        let public = rcgen::KeyPair::from_pem(&std::fs::read_to_string(&k1.pem).unwrap()).unwrap().public_key_der();
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&public).unwrap();
        mac.update(format!("{head}.{payload}").as_bytes());
        format!("{head}.{payload}.{}", b64(&mac.finalize().into_bytes()))
    };
    type Forge<'a> = Box<dyn Fn(&str) -> String + 'a>;
    let cases: Vec<(&str, Forge, &str)> = vec![
        ("replayed from the first sign-in", Box::new(|_| first_token.clone()), "nonce is not this sign-in's"),
        ("without a nonce", Box::new(|n| signed(&k1.pem, "k1", &with(claims(n), "nonce", Value::Null))), "nonce is not this sign-in's"),
        ("alg none", Box::new(|n| format!("{}.{}.", b64v(&json!({"alg": "none"})), b64v(&claims(n)))), "not a signed JWT"),
        ("HMAC with the public key", Box::new(|n| hmac(&claims(n))), "does not allow"),
        ("another key", Box::new(|n| signed(&k2.pem, "k1", &claims(n))), "signature does not verify"),
        ("an unknown key", Box::new(|n| signed(&k2.pem, "k9", &claims(n))), "does not publish"),
        ("another audience", Box::new(|n| signed(&k1.pem, "k1", &with(claims(n), "aud", json!("another-app")))), "another audience"),
        ("another issuer", Box::new(|n| signed(&k1.pem, "k1", &with(claims(n), "iss", json!("https://evil.example")))), "another issuer"),
        ("expired", Box::new(|n| signed(&k1.pem, "k1", &with(claims(n), "exp", json!(now() - 600)))), "expired"),
    ];
    for (what, forge, says) in &cases {
        let (_, done) = sign_in_with(&ctx, &forger, forge).await;
        let err = done.err().unwrap_or_else(|| panic!("{what}: accepted"));
        assert_eq!(err.code(), "unauthorized", "{what}: {err}");
        assert!(err.to_string().contains(says), "{what}: {err}");
    }
    let reasons: Vec<String> = sqlx::query_scalar("SELECT details->>'reason' FROM audit WHERE action = 'auth.fail' AND details->>'via' = 'oidc' ORDER BY seq")
        .fetch_all(ctx.pool())
        .await
        .unwrap();
    assert_eq!(
        reasons,
        ["state_replayed", "nonce", "nonce", "malformed", "algorithm", "signature", "unknown_key", "audience", "issuer", "expired"],
        "every refusal is recorded with its reason"
    );
    ctx.close().await.unwrap();
}
