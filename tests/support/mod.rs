//! Shared set-up for the integration tests: real model files, real PostgreSQL, real
//! on-disk indexes in a temporary data directory.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub mod directory;
pub mod smb;

use sanctum::config::Config;

/// The `sanctum` binary under test: cargo names it to the appliance's own integration
/// tests; the end-to-end tests of this top-level crate find it beside their own executable
/// (`target/debug/deps/..` -> `target/debug/sanctum`), where `cargo test --workspace` and
/// `make build` put it.
pub fn bin() -> PathBuf {
    if let Some(path) = option_env!("CARGO_BIN_EXE_sanctum") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    let path = exe.parent().and_then(Path::parent).map(|d| d.join("sanctum")).expect("the target directory");
    assert!(
        path.is_file(),
        "the sanctum binary {} is missing: build it first (`make build`, or `cargo test --workspace`, which builds it for the appliance's tests)",
        path.display()
    );
    path
}

/// The installed models (`make test` installs them; so does `deploy/install-models.sh`).
pub fn models_dir() -> PathBuf {
    let dir = std::env::var_os("SANCTUM_MODELS__DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.sanctum/models"));
    assert!(
        dir.join("libonnxruntime.so").is_file() && dir.join("all-minilm-l6-v2/model.onnx").is_file(),
        "model files are missing in {}: run `deploy/install-models.sh` (or `make test`, which does)",
        dir.display()
    );
    dir
}

/// A config on a fresh data directory with the embedded PostgreSQL.
pub fn config(data_dir: &Path) -> Config {
    let mut c = Config::with_data_dir(data_dir);
    c.models.dir = Some(models_dir());
    c.embedding.threads = 1;
    // the parser process is the sanctum binary, not this test harness
    c.ingest.parser_bin = Some(bin());
    c
}

/// The external PostgreSQL server for database_url tests (this machine runs one on
/// 127.0.0.1:5432 with trust auth); override with SANCTUM_TEST_DATABASE_URL.
pub fn external_server_url() -> String {
    std::env::var("SANCTUM_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A `sanctum.toml` for the binary: data under `dir/data`, the installed models, one
/// embedding thread, then `extra`.
pub fn write_config(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("sanctum.toml");
    let text = format!("data_dir = {:?}\n\n[models]\ndir = {:?}\n\n[embedding]\nthreads = 1\n{extra}", dir.join("data"), models_dir());
    std::fs::write(&path, text).unwrap();
    path
}

pub fn write(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// The demo corpus shipped in deploy/demo.
pub fn demo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/demo")
}

/// A temporary directory other users can traverse (0755): when the tests run as root the
/// embedded PostgreSQL runs as another user and must reach the data directory inside.
pub fn tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let t = tempfile::tempdir().unwrap();
    std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    t
}

/// Writes a GGUF LoRA adapter (llama.cpp's format) for a llama-architecture model: low-rank
/// matrices on every layer's `attn_q`, with `lora_b` filled by `b_value` (0 makes the adapter
/// a no-op; anything else changes the model's output).
pub fn write_lora_gguf(path: &Path, layers: usize, n_embd: usize, rank: usize, b_value: f32) {
    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend((s.len() as u64).to_le_bytes());
        out.extend(s.as_bytes());
    }
    let mut tensors: Vec<(String, [u64; 2], Vec<f32>)> = Vec::new();
    for l in 0..layers {
        // lora_a: ne = [n_embd, rank]; lora_b: ne = [rank, n_embd]
        let a: Vec<f32> = (0..n_embd * rank).map(|i| ((i * 7919 + l * 31) % 17) as f32 / 17.0 - 0.5).collect();
        tensors.push((format!("blk.{l}.attn_q.weight.lora_a"), [n_embd as u64, rank as u64], a));
        tensors.push((format!("blk.{l}.attn_q.weight.lora_b"), [rank as u64, n_embd as u64], vec![b_value; n_embd * rank]));
    }
    let mut out = b"GGUF".to_vec();
    out.extend(3u32.to_le_bytes());
    out.extend((tensors.len() as u64).to_le_bytes());
    let kvs: [(&str, Result<&str, f32>); 4] =
        [("general.architecture", Ok("llama")), ("general.type", Ok("adapter")), ("adapter.type", Ok("lora")), ("adapter.lora.alpha", Err(rank as f32))];
    out.extend((kvs.len() as u64).to_le_bytes());
    for (k, v) in kvs {
        string(&mut out, k);
        match v {
            Ok(s) => {
                out.extend(8u32.to_le_bytes());
                string(&mut out, s);
            }
            Err(f) => {
                out.extend(6u32.to_le_bytes());
                out.extend(f.to_le_bytes());
            }
        }
    }
    let mut offset = 0u64;
    for (name, ne, data) in &tensors {
        string(&mut out, name);
        out.extend(2u32.to_le_bytes());
        out.extend(ne[0].to_le_bytes());
        out.extend(ne[1].to_le_bytes());
        out.extend(0u32.to_le_bytes()); // F32
        out.extend(offset.to_le_bytes());
        offset += (data.len() as u64 * 4).div_ceil(32) * 32;
    }
    while out.len() % 32 != 0 {
        out.push(0);
    }
    for (_, _, data) in &tensors {
        let start = out.len();
        for v in data {
            out.extend(v.to_le_bytes());
        }
        while (out.len() - start) % 32 != 0 {
            out.push(0);
        }
    }
    std::fs::write(path, out).unwrap();
}

/// The Python with the test tools (the official openai client): `scripts/test-tools.sh`
/// makes it (`make test` runs it); SANCTUM_TEST_PYTHON names another.
pub fn test_python() -> PathBuf {
    let python = std::env::var_os("SANCTUM_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.sanctum/pytools/bin/python"));
    assert!(python.is_file(), "{} is missing: run scripts/test-tools.sh (`make test` does)", python.display());
    python
}

/// Runs the `sanctum` binary with `config`; its output, or a panic with it on failure.
pub fn sanctum(config: &Path, args: &[&str]) -> String {
    // the config names its models directory (the environment's would override it)
    let out = std::process::Command::new(bin()).arg("--config").arg(config).args(args).env_remove("SANCTUM_MODELS__DIR").output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{args:?}: {text}");
    text
}

/// Creates a token and returns it (the line the command prints it on).
pub fn token(config: &Path, user: &str, scopes: &str) -> String {
    let t = sanctum(config, &["token", "create", user, "--scopes", scopes, "--label", "test"]);
    t.lines().find(|l| l.starts_with("snt_")).unwrap().to_string()
}

/// The browser tests' Chromium (Debian's, or `$CHROMIUM`) and the directory their
/// screenshots go to (`$SANCTUM_TEST_OUTPUT/screenshots`, default `.ci/out/screenshots`).
pub fn browser() -> (String, PathBuf) {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(Path::new(&chromium).is_file(), "{chromium} is missing: run scripts/setup.sh (`make test` does), which installs Debian's chromium");
    let shots = std::env::var_os("SANCTUM_TEST_OUTPUT").map(PathBuf::from).unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.ci/out")).join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    (chromium, shots)
}

/// The npm packages the browser and directory tests use (playwright-core, oidc-provider),
/// installed outside the checkout by `scripts/test-tools.sh`; `package` must be there.
pub fn node_modules(package: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.sanctum/webtools/node_modules");
    assert!(dir.join(package).is_dir(), "{} lacks {package}: run scripts/test-tools.sh (`make test` does)", dir.display());
    dir
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running `sanctum serve`, killed when dropped.
pub struct Server(pub std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `sanctum serve` on `config` and waits until it is serving; with the line it
/// printed (the address and the certificate's fingerprint).
pub fn serve(config: &Path) -> (Server, String) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(bin())
        .arg("--config")
        .arg(config)
        .arg("serve")
        .env_remove("SANCTUM_MODELS__DIR")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let server = Server(child);
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line).unwrap();
    assert!(line.contains("serving https://") || line.contains("serving http://"), "{line}");
    (server, line)
}

/// Connects to the embedded cluster of `data` while a sanctum process owns it (None while
/// it is still starting); it stays up after that process is killed.
pub async fn embedded_pool(data: &Path) -> Option<sqlx::PgPool> {
    let opts = sqlx::postgres::PgConnectOptions::new().socket(data.join("postgres/run")).port(5432).username("sanctum").database("sanctum");
    sqlx::postgres::PgPoolOptions::new().max_connections(1).connect_with(opts).await.ok()
}

/// A fresh database on the external PostgreSQL server: its URL, and an owner connection.
pub async fn external_database(name: &str) -> (String, sqlx::PgConnection) {
    use sqlx::Connection;
    let server = external_server_url();
    let mut admin = sqlx::PgConnection::connect(&server)
        .await
        .unwrap_or_else(|e| panic!("the external PostgreSQL at {server} is needed for this test (set SANCTUM_TEST_DATABASE_URL): {e}"));
    let name = format!("{name}_{}", std::process::id());
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))).execute(&mut admin).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await.unwrap();
    let url = match server.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => panic!("bad url {server}"),
    };
    let conn = sqlx::PgConnection::connect(&url).await.unwrap();
    (url, conn)
}

/// A models directory of the test's own (links to the installed files), so adapters the
/// test installs stay in its temporary directory.
pub fn own_models(dir: &Path) -> PathBuf {
    let models = dir.join("models");
    std::fs::create_dir_all(&models).unwrap();
    for entry in std::fs::read_dir(models_dir()).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() != "adapters" {
            std::os::unix::fs::symlink(entry.path(), models.join(entry.file_name())).unwrap();
        }
    }
    models
}

/// Installs a small synthetic adapter for the SmolLM2-135M base (`base`, relative to
/// `models`) under `models/adapters/<name>`, with a report as `sanctum finetune train`
/// writes it (the hashes are real, so activation accepts it).
pub fn install_test_adapter(models: &Path, name: &str, base: &str) {
    let dir = models.join("adapters");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{name}.gguf"));
    // SmolLM2-135M: 30 layers, 576 wide
    write_lora_gguf(&file, 30, 576, 4, 0.01);
    let report = serde_json::json!({
        "name": name,
        "base": {"model": base, "sha256": sanctum::models::sha256_file(&models.join(base)).unwrap()},
        "adapter": {"path": format!("adapters/{name}.gguf"), "sha256": sanctum::models::sha256_file(&file).unwrap()},
        "steps": 3, "valid": {"loss_before": 2.5, "loss_after": 1.5}, "created_at": "2026-12-02T00:00:00Z",
    });
    std::fs::write(dir.join(format!("{name}.json")), report.to_string()).unwrap();
}

/// As [`write_config`], with the models in `models`.
pub fn write_config_with_models(dir: &Path, models: &Path, extra: &str) -> PathBuf {
    let path = dir.join("sanctum.toml");
    let text = format!("data_dir = {:?}\n\n[models]\ndir = {models:?}\n\n[embedding]\nthreads = 1\n{extra}", dir.join("data"));
    std::fs::write(&path, text).unwrap();
    path
}

/// Renders `lines` as a scanned page (black text on white, 150 dpi Letter) with Debian's
/// ImageMagick into `path` (its extension says the format: .png, .jpg, .tif); `degrade`
/// are further ImageMagick options (`-blur 0x2`: a poor scan).
pub fn render_scan(path: &Path, lines: &[&str], pointsize: u32, degrade: &[&str]) {
    let convert = "/usr/bin/convert";
    assert!(Path::new(convert).is_file(), "ImageMagick's convert is missing: run scripts/test-tools.sh (`make test` does)");
    let out = std::process::Command::new(convert)
        .args(["-size", "1275x1650", "xc:white", "-font", "DejaVu-Sans", "-pointsize", &pointsize.to_string(), "-fill", "black"])
        .args(["-annotate", "+90+140", &lines.join("\n")])
        .args(degrade)
        .args(["-colorspace", "Gray", "-depth", "8"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "convert: {}", String::from_utf8_lossy(&out.stderr));
}

/// Joins images into a multi-page TIFF with ImageMagick.
pub fn multipage_tiff(pages: &[PathBuf], path: &Path) {
    let out = std::process::Command::new("/usr/bin/convert").args(pages).args(["-compress", "lzw"]).arg(path).output().unwrap();
    assert!(out.status.success(), "convert: {}", String::from_utf8_lossy(&out.stderr));
}

/// A PDF of pages, each either text (a text layer in Helvetica) or a JPEG scan (an image
/// only: no text layer), Letter size.
pub enum PdfPage {
    Text(Vec<String>),
    Scan { jpeg: Vec<u8>, width: u32, height: u32 },
}

pub fn pdf(pages: &[PdfPage]) -> Vec<u8> {
    use lopdf::content::{Content, Operation};
    use lopdf::{dictionary, Document, Object, Stream};
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let font = doc.add_object(dictionary! { "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica" });
    let mut kids = Vec::new();
    for page in pages {
        let (content, resources) = match page {
            PdfPage::Text(lines) => {
                let mut ops = vec![Operation::new("BT", vec![]), Operation::new("Tf", vec!["F1".into(), 12.into()]), Operation::new("Td", vec![72.into(), 720.into()])];
                for l in lines {
                    ops.push(Operation::new("Tj", vec![Object::string_literal(l.as_str())]));
                    ops.push(Operation::new("Td", vec![0.into(), (-16).into()]));
                }
                ops.push(Operation::new("ET", vec![]));
                (Content { operations: ops }, dictionary! { "Font" => dictionary! { "F1" => font } })
            }
            PdfPage::Scan { jpeg, width, height } => {
                let image = Stream::new(
                    dictionary! { "Type" => "XObject", "Subtype" => "Image", "Width" => *width as i64, "Height" => *height as i64,
                        "ColorSpace" => "DeviceGray", "BitsPerComponent" => 8, "Filter" => "DCTDecode" },
                    jpeg.clone(),
                );
                let image = doc.add_object(image);
                let ops = vec![
                    Operation::new("q", vec![]),
                    Operation::new("cm", vec![612.into(), 0.into(), 0.into(), 792.into(), 0.into(), 0.into()]),
                    Operation::new("Do", vec!["Im0".into()]),
                    Operation::new("Q", vec![]),
                ];
                (Content { operations: ops }, dictionary! { "XObject" => dictionary! { "Im0" => image } })
            }
        };
        let content = doc.add_object(Stream::new(dictionary! {}, content.encode().unwrap()));
        let page = doc.add_object(dictionary! {
            "Type" => "Page", "Parent" => pages_id, "Contents" => content, "Resources" => resources,
            "MediaBox" => vec![0.into(), 0.into(), 612.into(), 792.into()],
        });
        kids.push(Object::Reference(page));
    }
    let count = kids.len() as i64;
    doc.objects.insert(pages_id, Object::Dictionary(dictionary! { "Type" => "Pages", "Kids" => kids, "Count" => count }));
    let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog);
    let mut out = Vec::new();
    doc.save_to(&mut out).unwrap();
    out
}

/// A clinician in region us with `groups`.
pub fn person(id: &str, groups: &[&str]) -> policies::Principal {
    policies::Principal { id: id.into(), roles: vec!["clinician".into()], region: Some("us".into()), groups: groups.iter().map(|g| g.to_string()).collect() }
}

/// The texts of the passages `p` finds for `q` for treatment (top 5, hybrid).
pub async fn found(ctx: &sanctum::Sanctum, p: &policies::Principal, q: &str) -> Vec<String> {
    use sanctum::retrieve::{self, Mode, SearchRequest};
    let engine = ctx.engine().await.unwrap();
    let auth = ctx.authorize(p, Some("treatment")).await.unwrap();
    let hits = retrieve::search(&engine.retriever, ctx.pool(), &auth, &SearchRequest { query: q.into(), k: 5, mode: Mode::Hybrid }).await.unwrap();
    hits.passages.into_iter().map(|h| h.text).collect()
}

/// Both indexes hold the `chunks` PostgreSQL holds, and no file of a source is held twice.
pub async fn indexes_hold(ctx: &sanctum::Sanctum, chunks: i64) {
    let engine = ctx.engine().await.unwrap();
    let (keyword, vector) = engine.indexes.counts().await.unwrap();
    assert_eq!(keyword, chunks as u64, "the keyword index holds what PostgreSQL holds");
    assert_eq!(vector, chunks as u64, "the vector index holds what PostgreSQL holds");
    let twice: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT source_path FROM documents WHERE source_name IS NOT NULL GROUP BY source_name, source_path HAVING count(*) > 1) d",
    )
    .fetch_one(ctx.pool())
    .await
    .unwrap();
    assert_eq!(twice, 0, "no file is held twice");
}
