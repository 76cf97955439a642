//! Directory sign-in in a real browser: Debian's Chromium driven by playwright-core (npm)
//! against the real binary over HTTPS, an OpenID Provider (`oidc-provider`, through its own
//! login page) and an OpenLDAP directory (`slapd`), both on loopback over TLS with the
//! test's CA (see tests/web/directory.js for the steps). The ICU passage is found while
//! the provider says nina is an ICU nurse and is gone after she is moved out of the group
//! and signs in again; the audit log holds the mapping that produced her attributes each
//! time. Screenshots 26-31 go to `$SANCTUM_TEST_OUTPUT/screenshots`.

mod support;

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};
use support::directory::{self as dir, Provider, Slapd};
use support::{free_port, sanctum, token};

const ICU: &str = "ICU sedation protocol";
const HYGIENE: &str = "Hand hygiene standard";
const ADMIN_PASSWORD: &str = "break-glass password 2026";

fn person(groups: &[&str]) -> Value {
    json!({ "preferred_username": "nina", "name": "Nina", "groups": groups, "region": "us" })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_and_directory_sign_in_in_a_real_browser() {
    let (chromium, shots) = support::browser();

    let tmp = support::tempdir();
    let pki = dir::pki(tmp.path());
    let key = dir::signing_key(tmp.path(), "k1");
    let port = free_port();
    let base = format!("https://localhost:{port}");
    let people = json!({ "nina": person(&["icu-nurses", "hospital-staff"]), "victor": { "preferred_username": "victor", "groups": ["visitors"] } });
    let provider = Provider::start(tmp.path(), &pki, &[&key], &base, &people);
    let ldap = Slapd::start(tmp.path(), &pki);
    let config = support::write_config(tmp.path(), &dir::sanctum_config(tmp.path(), port, &provider, &ldap, &pki));
    sanctum(&config, &["user", "add", "auditor", "--roles", "auditor", "--service"]);
    sanctum(&config, &["user", "add", "root-admin", "--roles", "admin"]);
    let out = Command::new(support::bin()).arg("--config").arg(&config).args(["user", "password", "root-admin"]).env("SANCTUM_PASSWORD", ADMIN_PASSWORD).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let audit = token(&config, "auditor", "audit");
    dir::documents(tmp.path(), &config);
    let (_server, _) = support::serve(&config);

    let mut after = people.clone();
    after["nina"] = person(&["hospital-staff"]);
    let out = Command::new("node")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("web/directory.js"))
        .env("NODE_PATH", support::node_modules("playwright-core"))
        .env("BASE", &base)
        .env("SHOTS", &shots)
        .env("CHROMIUM", &chromium)
        .env("PEOPLE_FILE", &provider.people)
        .env("PEOPLE_AFTER", after.to_string())
        .env("LDAP_PASSWORD", dir::LDAP_PASSWORDS[0].1)
        .env("ADMIN_PASSWORD", ADMIN_PASSWORD)
        .output()
        .unwrap();
    let printed = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{printed}");
    let found: Value = serde_json::from_str(printed.lines().find_map(|l| l.strip_prefix("FOUND ")).unwrap_or_else(|| panic!("{printed}"))).unwrap();
    assert_eq!(found["errors"], json!([]), "{found}");

    let titles = |k: &str| found[k].as_array().unwrap_or_else(|| panic!("{k}: {found}")).iter().map(|t| t.as_str().unwrap().to_string()).collect::<Vec<_>>();
    assert_eq!(found["sso_button"], "Sign in with Example Hospital ID", "{found}");
    assert_eq!(found["user"], "nina", "{found}");
    assert!(titles("first").iter().any(|t| t.contains(ICU)), "an ICU nurse finds the ICU protocol: {found}");
    assert!(found["replay_elsewhere"].as_str().unwrap().contains("did not start in this browser"), "{found}");
    assert!(found["replay_here"].as_str().unwrap().contains("already used"), "{found}");
    assert!(found["after_signout"].as_str().unwrap().ends_with("/ui/login"), "{found}");
    let second = titles("second");
    assert!(!second.iter().any(|t| t.contains(ICU)), "moved out of the ICU group, nina no longer sees its protocol: {found}");
    assert!(second.iter().any(|t| t.contains(HYGIENE)), "she still sees what all clinical staff see: {found}");
    assert_eq!(found["ldap_user"], "lena", "{found}");
    assert!(titles("ldap").iter().any(|t| t.contains(ICU)), "{found}");
    let no_access = found["no_access"].as_str().unwrap();
    assert!(no_access.contains("No access") && no_access.contains("maps to a role"), "{no_access}");

    // the People page: where each person comes from, and which directory groups mapped
    let rows: Vec<Vec<String>> = serde_json::from_value(found["people"].clone()).unwrap();
    let row = |name: &str| rows.iter().find(|r| r[0].starts_with(name)).unwrap_or_else(|| panic!("{name} is not listed: {rows:?}")).clone();
    let nina = row("nina");
    assert!(nina[4].starts_with("oidc https://127.0.0.1:"), "{nina:?}");
    assert_eq!(nina[5], "hospital-staff", "{nina:?}");
    let lena = row("lena");
    assert!(lena[4].starts_with("ldap ldaps://127.0.0.1:"), "{lena:?}");
    assert!(lena[5].contains("cn=icu-nurses,ou=groups,dc=example,dc=org") && lena[5].contains("cn=clinical-staff"), "{lena:?}");
    let victor = row("victor");
    assert!(victor[1].is_empty() && victor[5].contains("no mapped group: no access"), "{victor:?}");
    assert!(row("root-admin")[4].starts_with("local, password set"), "{rows:?}");
    let page = found["nina_page"].as_str().unwrap();
    assert!(page.contains("signs in through the directory") && page.contains("hospital-staff"), "{page}");
    let fields: Vec<String> = serde_json::from_value(found["nina_fields"].clone()).unwrap();
    assert!(!fields.iter().any(|f| f == "password" || f == "roles" || f == "groups"), "a directory user's form changes only `disabled`: {fields:?}");

    // the audit log: each sign-in, and the mapping behind each change of nina's attributes
    let pem = std::fs::read(tmp.path().join("data/tls/cert.pem")).unwrap();
    let http = reqwest::Client::builder().add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap()).build().unwrap();
    let records = |action: &'static str| {
        let (http, audit) = (http.clone(), audit.clone());
        async move {
            let v: Value = http.get(format!("https://127.0.0.1:{port}/v1/audit?action={action}&object=nina&limit=100")).bearer_auth(audit).send().await.unwrap().json().await.unwrap();
            v["records"].as_array().unwrap().clone()
        }
    };
    let added = records("user.add").await;
    assert_eq!(added.len(), 1, "{added:?}");
    assert_eq!(added[0]["details"]["after"]["groups"], json!(["clinical", "icu"]), "{added:?}");
    assert_eq!(added[0]["details"]["mapping"]["matched"], json!(["hospital-staff", "icu-nurses"]), "{added:?}");
    let changed = records("user.change").await;
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert_eq!(changed[0]["details"]["before"]["groups"], json!(["clinical", "icu"]), "{changed:?}");
    assert_eq!(changed[0]["details"]["after"]["groups"], json!(["clinical"]), "{changed:?}");
    assert_eq!(changed[0]["details"]["directory_groups"], json!(["hospital-staff"]), "{changed:?}");
    drop(ldap);
}
