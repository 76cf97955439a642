//! The directory tests' real servers, started on loopback over TLS with a CA of the test's
//! own: an OpenID Provider (`oidc-provider` under Node, tests/directory/provider.mjs) and
//! an LDAP directory (OpenLDAP's `slapd` from Debian, seeded with people and nested groups).

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The test's CA and a server certificate for 127.0.0.1 and localhost (PEM files).
pub struct Pki {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub fn pki(dir: &Path) -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.distinguished_name.push(rcgen::DnType::CommonName, "Sanctum directory test CA");
    params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::DigitalSignature, rcgen::KeyUsagePurpose::CrlSign];
    let ca = params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, "127.0.0.1");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    let p = Pki { ca: dir.join("ca.pem"), cert: dir.join("server.pem"), key: dir.join("server.key") };
    std::fs::write(&p.ca, ca.pem()).unwrap();
    std::fs::write(&p.cert, cert.pem()).unwrap();
    std::fs::write(&p.key, key.serialize_pem()).unwrap();
    p
}

/// A P-256 signing key (PKCS#8 PEM) the provider publishes under `kid`; the test can sign
/// tokens with it too.
pub struct SigningKey {
    pub pem: PathBuf,
    pub kid: String,
}

pub fn signing_key(dir: &Path, kid: &str) -> SigningKey {
    let pem = dir.join(format!("signing-{kid}.pem"));
    std::fs::write(&pem, rcgen::KeyPair::generate().unwrap().serialize_pem()).unwrap();
    SigningKey { pem, kid: kid.into() }
}

/// The web client's secret and the API client's (services holding access tokens).
pub const WEB_CLIENT: (&str, &str) = ("sanctum", "web-client-secret-0123456789");
pub const API_CLIENT: (&str, &str) = ("ehr-system", "api-client-secret-0123456789");
/// The audience of the access tokens the provider issues for Sanctum's API.
pub const API_AUDIENCE: &str = "https://sanctum.test";

/// The OpenID Provider, stopped when dropped.
pub struct Provider {
    child: Child,
    pub issuer: String,
    pub people: PathBuf,
    config: PathBuf,
    ca: PathBuf,
}

impl Provider {
    /// Starts the provider for a Sanctum at `sanctum_base` (https://localhost:PORT) with
    /// `people` (login -> claims) and the signing `keys`.
    pub fn start(dir: &Path, pki: &Pki, keys: &[&SigningKey], sanctum_base: &str, people: &Value) -> Provider {
        let port = super::free_port();
        let issuer = format!("https://127.0.0.1:{port}");
        let people_file = dir.join("people.json");
        std::fs::write(&people_file, people.to_string()).unwrap();
        let config = dir.join("provider.json");
        let cfg = json!({
            "issuer": issuer, "port": port, "cert": pki.cert, "key": pki.key, "people_file": people_file,
            "signing_keys": keys.iter().map(|k| json!({"pem": k.pem, "kid": k.kid})).collect::<Vec<_>>(),
            "clients": [
                {"client_id": WEB_CLIENT.0, "client_secret": WEB_CLIENT.1,
                 "redirect_uris": [format!("{sanctum_base}/ui/oidc/callback")], "post_logout_redirect_uris": [format!("{sanctum_base}/ui/login")],
                 "grant_types": ["authorization_code"], "response_types": ["code"],
                 "id_token_signed_response_alg": "ES256", "token_endpoint_auth_method": "client_secret_basic"},
                {"client_id": API_CLIENT.0, "client_secret": API_CLIENT.1, "redirect_uris": [], "grant_types": ["client_credentials"], "response_types": [],
                 "scope": "sanctum.search sanctum.ask", "id_token_signed_response_alg": "ES256", "token_endpoint_auth_method": "client_secret_basic"},
                {"client_id": "reporting", "client_secret": "reporting-secret-0123456789", "redirect_uris": [], "grant_types": ["client_credentials"], "response_types": [],
                 "scope": "sanctum.ask", "id_token_signed_response_alg": "ES256", "token_endpoint_auth_method": "client_secret_basic"}
            ],
            "api": {"client_id": API_CLIENT.0, "audience": API_AUDIENCE,
                    "services": {"ehr-system": {"name": "ehr-system", "groups": ["icu-nurses"]}, "reporting": {"name": "reporting", "groups": ["icu-nurses"]}}},
        });
        std::fs::write(&config, cfg.to_string()).unwrap();
        let child = spawn(&config);
        Provider { child, issuer, people: people_file, config, ca: pki.ca.clone() }
    }

    /// Stops the provider and starts it again with other signing keys (a key rotation).
    pub fn rotate(&mut self, keys: &[&SigningKey]) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut cfg: Value = serde_json::from_str(&std::fs::read_to_string(&self.config).unwrap()).unwrap();
        cfg["signing_keys"] = keys.iter().map(|k| json!({"pem": k.pem, "kid": k.kid})).collect();
        std::fs::write(&self.config, cfg.to_string()).unwrap();
        self.child = spawn(&self.config);
    }

    /// Changes the people (read at every sign-in).
    pub fn set_people(&self, people: &Value) {
        std::fs::write(&self.people, people.to_string()).unwrap();
    }

    fn http(&self) -> reqwest::Client {
        let ca = reqwest::Certificate::from_pem(&std::fs::read(&self.ca).unwrap()).unwrap();
        reqwest::Client::builder().add_root_certificate(ca).timeout(Duration::from_secs(30)).build().unwrap()
    }

    /// How often the provider's keys, discovery document and token endpoint were asked for.
    pub async fn stats(&self) -> Value {
        self.http().get(format!("{}/__stats", self.issuer)).send().await.unwrap().json().await.unwrap()
    }

    /// An access token for Sanctum's API by the client credentials grant.
    pub async fn client_token(&self, client: (&str, &str), scope: &str) -> String {
        let r = self.http()
            .post(format!("{}/token", self.issuer))
            .basic_auth(client.0, Some(client.1))
            .form(&[("grant_type", "client_credentials"), ("scope", scope)])
            .send()
            .await
            .unwrap();
        let v: Value = r.json().await.unwrap();
        v["access_token"].as_str().unwrap_or_else(|| panic!("no access token: {v}")).to_string()
    }
}

fn spawn(config: &Path) -> Child {
    spawn_script("provider.mjs", config)
}

fn spawn_script(script: &str, config: &Path) -> Child {
    let log = config.with_extension("log");
    let mut child = Command::new("node")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("directory").join(script))
        .arg(config)
        .env("NODE_PATH", super::node_modules("oidc-provider"))
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("node (the machine's Node.js) runs the test's OpenID Provider");
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(line.starts_with("listening"), "the OpenID Provider did not start: {line:?} {}", std::fs::read_to_string(&log).unwrap_or_default());
    // keep reading what it prints (a closed pipe would end it at its next line)
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    child
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A hostile provider (tests/directory/forger.mjs): its token endpoint answers with the ID
/// token last given to [`Forger::set_id_token`]. Stopped when dropped.
pub struct Forger {
    child: Child,
    pub issuer: String,
    token_file: PathBuf,
}

impl Forger {
    pub fn start(dir: &Path, pki: &Pki, key: &SigningKey) -> Forger {
        let port = super::free_port();
        let issuer = format!("https://127.0.0.1:{port}");
        let token_file = dir.join("forged-id-token");
        std::fs::write(&token_file, "").unwrap();
        let config = dir.join("forger.json");
        let cfg = json!({ "issuer": issuer, "port": port, "cert": pki.cert, "key": pki.key,
            "signing_key": {"pem": key.pem, "kid": key.kid}, "id_token_file": token_file });
        std::fs::write(&config, cfg.to_string()).unwrap();
        Forger { child: spawn_script("forger.mjs", &config), issuer, token_file }
    }

    /// The ID token the token endpoint answers with from now on.
    pub fn set_id_token(&self, token: &str) {
        std::fs::write(&self.token_file, token).unwrap();
    }
}

impl Drop for Forger {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The seeded directory: `lena` (an ICU nurse; icu-nurses is itself a member of
/// clinical-staff), `omar` (in no mapped group), and the service account Sanctum searches
/// with.
pub const LDAP_PASSWORDS: [(&str, &str); 2] = [("lena", "lena-directory-password"), ("omar", "omar-directory-password")];
pub const LDAP_SERVICE: (&str, &str) = ("cn=sanctum-search,ou=services,dc=example,dc=org", "service-account-password");

const SEED: &str = "dn: dc=example,dc=org
objectClass: dcObject
objectClass: organization
o: Example Hospital
dc: example

dn: ou=people,dc=example,dc=org
objectClass: organizationalUnit
ou: people

dn: ou=groups,dc=example,dc=org
objectClass: organizationalUnit
ou: groups

dn: ou=services,dc=example,dc=org
objectClass: organizationalUnit
ou: services

dn: cn=sanctum-search,ou=services,dc=example,dc=org
objectClass: person
cn: sanctum-search
sn: service
userPassword: service-account-password

dn: uid=lena,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: lena
cn: Lena Nurse
sn: Nurse
l: us
userPassword: lena-directory-password

dn: uid=omar,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: omar
cn: Omar Visitor
sn: Visitor
userPassword: omar-directory-password

dn: cn=icu-nurses,ou=groups,dc=example,dc=org
objectClass: groupOfNames
cn: icu-nurses
member: uid=lena,ou=people,dc=example,dc=org

dn: cn=clinical-staff,ou=groups,dc=example,dc=org
objectClass: groupOfNames
cn: clinical-staff
member: cn=icu-nurses,ou=groups,dc=example,dc=org

dn: cn=volunteers,ou=groups,dc=example,dc=org
objectClass: groupOfNames
cn: volunteers
member: uid=omar,ou=people,dc=example,dc=org
";

/// OpenLDAP's slapd over LDAPS, stopped when dropped.
pub struct Slapd {
    child: Option<Child>,
    pub url: String,
    dir: PathBuf,
}

impl Slapd {
    pub fn start(dir: &Path, pki: &Pki) -> Slapd {
        let slapd = ["/usr/sbin/slapd", "/usr/local/sbin/slapd"].into_iter().find(|p| Path::new(p).is_file());
        let slapd = slapd.expect("slapd is missing: run scripts/test-tools.sh (`make test` does), which installs Debian's slapd");
        let dir = dir.join("ldap");
        std::fs::create_dir_all(dir.join("db")).unwrap();
        let conf = dir.join("slapd.conf");
        std::fs::write(
            &conf,
            format!(
                "include /etc/ldap/schema/core.schema\ninclude /etc/ldap/schema/cosine.schema\ninclude /etc/ldap/schema/inetorgperson.schema\n\
                 pidfile {pid}\nmodulepath /usr/lib/ldap\nmoduleload back_mdb\nTLSCertificateFile {cert}\nTLSCertificateKeyFile {key}\n\
                 database mdb\nsuffix \"dc=example,dc=org\"\nrootdn \"cn=admin,dc=example,dc=org\"\nrootpw admin-password-not-used\ndirectory {db}\n\
                 access to attrs=userPassword by self read by anonymous auth by * none\naccess to * by users read by * none\n",
                pid = dir.join("slapd.pid").display(),
                cert = pki.cert.display(),
                key = pki.key.display(),
                db = dir.join("db").display()
            ),
        )
        .unwrap();
        std::fs::write(dir.join("seed.ldif"), SEED).unwrap();
        let out = Command::new(slapd.replace("slapd", "slapadd")).arg("-f").arg(&conf).arg("-l").arg(dir.join("seed.ldif")).output().unwrap();
        assert!(out.status.success(), "slapadd: {}", String::from_utf8_lossy(&out.stderr));
        let port = super::free_port();
        let url = format!("ldaps://127.0.0.1:{port}");
        let child = Command::new(slapd).arg("-f").arg(&conf).arg("-h").arg(format!("{url}/")).arg("-d").arg("0").stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(20), "slapd did not listen on {url}");
            std::thread::sleep(Duration::from_millis(100));
        }
        Slapd { child: Some(child), url, dir }
    }

    /// The service account's password file (for `bind_password_file`).
    pub fn service_password_file(&self) -> PathBuf {
        let p = self.dir.join("service-password");
        std::fs::write(&p, LDAP_SERVICE.1).unwrap();
        p
    }

    /// The directory goes away.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The configuration that connects a Sanctum at `port` to `provider` and `ldap`.
pub fn sanctum_config(dir: &Path, port: u16, provider: &Provider, ldap: &Slapd, pki: &Pki) -> String {
    let secret = dir.join("oidc-client-secret");
    std::fs::write(&secret, format!("{}\n", WEB_CLIENT.1)).unwrap();
    format!(
        r#"
[http]
bind = "127.0.0.1:{port}"

[egress]
allow = ["{issuer}", "{ldap}"]
ca_file = {ca:?}

[directory.oidc]
name = "Example Hospital ID"
issuer = "{issuer}"
client_id = "{client}"
client_secret_file = {secret:?}
redirect_url = "https://localhost:{port}/ui/oidc/callback"
post_logout_redirect_url = "https://localhost:{port}/ui/login"
scopes = ["openid", "profile", "groups"]
region_claim = "region"
algorithms = ["ES256"]
api_audience = "{audience}"
api_scopes = {{ "sanctum.search" = "search", "sanctum.ask" = "ask" }}

[directory.ldap]
url = "{ldap}"
bind_dn = "{service}"
bind_password_file = {password:?}
user_base = "ou=people,dc=example,dc=org"
user_filter = "(&(objectClass=inetOrgPerson)(uid={{user}}))"
member_of = false
group_base = "ou=groups,dc=example,dc=org"
group_filter = "(&(objectClass=groupOfNames)(member={{dn}}))"
nested_groups = true
region_attribute = "l"

[[directory.mappings]]
group = "icu-nurses"
roles = ["clinician"]
groups = ["icu", "clinical"]
region = "us"

[[directory.mappings]]
group = "hospital-staff"
roles = ["clinician"]
groups = ["clinical"]
region = "us"

[[directory.mappings]]
group = "CN=ICU-Nurses,OU=Groups,DC=example,DC=org"
roles = ["clinician"]
groups = ["icu"]

[[directory.mappings]]
group = "cn=clinical-staff,ou=groups,dc=example,dc=org"
roles = ["clinician"]
groups = ["clinical"]
"#,
        issuer = provider.issuer,
        ldap = ldap.url,
        ca = pki.ca,
        client = WEB_CLIENT.0,
        audience = API_AUDIENCE,
        service = LDAP_SERVICE.0,
        password = ldap.service_password_file(),
    )
}

/// Two documents: one for the ICU group only, one for all clinical staff.
pub fn documents(dir: &Path, config: &Path) {
    let icu = super::write(dir, "icu-sedation-protocol.md", "# ICU sedation protocol\n\nIn the intensive care unit, sedation depth is assessed every four hours with the Richmond scale, and a daily sedation interruption is performed unless the attending physician documents a reason against it.\n");
    let all = super::write(dir, "hand-hygiene-standard.md", "# Hand hygiene standard\n\nAll clinical staff wash hands with soap and water after caring for a patient with diarrhoea; alcohol rub is used before and after every other patient contact.\n");
    super::sanctum(config, &["ingest", icu.to_str().unwrap(), "--groups", "icu", "--region", "us"]);
    super::sanctum(config, &["ingest", all.to_str().unwrap(), "--groups", "clinical", "--region", "us"]);
}
