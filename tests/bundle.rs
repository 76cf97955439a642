//! The air-gapped install (issue 8). `a_signed_bundle_installs_offline_and_refuses_tampering`:
//! a signed bundle is built from the test binary; a bundle with one byte changed in the
//! binary or in a model, or checked with another key, is refused by install.sh before it
//! touches anything; the good bundle installs (twice: idempotent) inside a network namespace
//! with only loopback, ingests the demo corpus, answers with citations over HTTPS, backs up
//! while running and restores into a second install with the same search results and a
//! verifying audit chain — and strace records no connection attempt to anything but
//! loopback. `an_upgrade_from_the_previous_commits_bundle_...`: the previous commit's bundle
//! (`scripts/previous-bundle.sh`, `PREVIOUS_SANCTUM_BUNDLE`) is installed offline and
//! upgraded to this one with its data, then to a bundle that cannot start, which rolls back.
//!
//! They need root (namespaces, the service user), strace, curl, zstd and openssl, and the
//! PostgreSQL packages in `.sanctum/debs` (`scripts/test-tools.sh` fetches them).

mod support;

use std::path::Path;
use std::process::Command;

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn ok(cmd: &mut Command) -> String {
    let (success, text) = run(cmd);
    assert!(success, "{cmd:?}: {text}");
    text
}

/// Unpacks `bundle`, changes one byte of `file` inside it, packs it again as `out`.
fn tampered(bundle: &Path, file: &str, work: &Path, out: &Path) {
    std::fs::create_dir_all(work).unwrap();
    ok(Command::new("tar").args(["--zstd", "-xf"]).arg(bundle).arg("-C").arg(work));
    let top = std::fs::read_dir(work).unwrap().next().unwrap().unwrap().path();
    let path = top.join(file);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(&path, bytes).unwrap();
    ok(Command::new("tar").arg("--zstd").arg("-cf").arg(out).arg("-C").arg(work).arg(top.file_name().unwrap()));
    std::fs::remove_dir_all(work).unwrap();
}

/// One of these tests at a time: both install for the same service user.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ONE.lock().unwrap_or_else(|e| e.into_inner())
}

/// The tools and rights these tests need; the PostgreSQL packages for the bundle.
fn preconditions() -> std::path::PathBuf {
    for tool in ["unshare", "strace", "curl", "zstd", "openssl", "setpriv", "useradd", "git"] {
        assert!(run(Command::new("sh").arg("-c").arg(format!("command -v {tool}"))).0, "{tool} is needed (scripts/test-tools.sh installs it)");
    }
    assert_eq!(ok(Command::new("id").arg("-u")).trim(), "0", "this test installs for real: it needs root (namespaces, a service user)");
    let debs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.sanctum/debs");
    assert!(std::fs::read_dir(&debs).map(|d| d.count() > 10).unwrap_or(false), "{} lacks the PostgreSQL packages: run scripts/test-tools.sh", debs.display());
    debs
}

/// Builds a bundle labelled `label` from `binary` (this test's own by default), signed with `key`.
fn build_bundle(config: &Path, out: &Path, label: &str, key: &Path, binary: Option<&Path>) -> std::path::PathBuf {
    let mut cmd = Command::new(support::bin());
    cmd.arg("--config").arg(config).args(["bundle", "build", "--label", label, "--out"]).arg(out).arg("--signing-key").arg(key).arg("--debs").arg(preconditions());
    if let Some(b) = binary {
        cmd.arg("--binary").arg(b);
    }
    let built = ok(&mut cmd);
    let bundle = out.join(format!("sanctum-{label}-x86_64-linux.tar.zst"));
    assert!(bundle.is_file(), "{built}");
    bundle
}

/// Runs `script` (tests/bundle/) with `env` in a new network namespace holding only loopback,
/// optionally under strace recording connect()s (and the process tree) into `trace`.
fn offline(script: &str, env: &[(&str, &std::ffi::OsStr)], trace: Option<&Path>) -> String {
    let mut cmd = Command::new("unshare");
    cmd.arg("-n");
    if let Some(trace) = trace {
        cmd.args(["strace", "-f", "--seccomp-bpf", "-qq", "-e", "trace=connect,execve,clone,clone3,fork,vfork", "-o"]).arg(trace);
    }
    cmd.arg("bash").arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("bundle").join(script));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let text = ok(&mut cmd);
    assert!(text.contains(&format!("{}: done", script.trim_end_matches(".sh"))), "{text}");
    text
}

#[test]
fn a_signed_bundle_installs_offline_and_refuses_tampering() {
    let _one = serial();
    preconditions();
    let tmp = support::tempdir();
    let t = tmp.path();
    // the service user must reach the installs under it
    std::fs::set_permissions(t, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let config = support::write_config(t, "");
    let sanctum = || {
        let mut c = Command::new(support::bin());
        c.arg("--config").arg(&config);
        c
    };

    // ---- keys and the bundle
    ok(sanctum().args(["bundle", "keygen", "--dir"]).arg(t.join("keys")));
    let (key, public) = (t.join("keys/bundle-signing.key"), t.join("keys/bundle-signing.pub"));
    assert!(run(sanctum().args(["bundle", "keygen", "--dir"]).arg(t.join("keys"))).1.contains("never overwritten"));
    let bundle = build_bundle(&config, &t.join("out"), "9.9.9-test", &key, None);
    let good = t.join("good");
    std::fs::create_dir_all(&good).unwrap();
    ok(Command::new("tar").args(["--zstd", "-xf"]).arg(&bundle).arg("-C").arg(&good));
    let top = good.join("sanctum-9.9.9-test");
    for f in ["bin/sanctum", "install.sh", "upgrade.sh", "uninstall.sh", "systemd/sanctum.service", "etc/sanctum.toml", "sbom.cdx.json", "manifest.json", "SHA256SUMS", "SHA256SUMS.sig", "models/libonnxruntime.so", "share/policies/hipaa.rego"] {
        assert!(top.join(f).is_file(), "{f} in the bundle");
    }
    assert!(std::fs::read_dir(top.join("debs")).unwrap().any(|e| e.unwrap().file_name().to_string_lossy().starts_with("postgresql-1")), "PostgreSQL packages");
    let debs: Vec<String> = std::fs::read_dir(top.join("debs")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    for pkg in ["tesseract-ocr_", "tesseract-ocr-eng_", "poppler-utils_", "libtesseract5_"] {
        assert!(debs.iter().any(|d| d.starts_with(pkg)), "the bundle carries OCR's {pkg}*.deb: {debs:?}");
    }
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(top.join("manifest.json")).unwrap()).unwrap();
    assert!(manifest["models"].as_array().unwrap().len() >= 5 && manifest["rust_packages"].as_u64().unwrap() > 300, "{manifest}");
    let sbom: serde_json::Value = serde_json::from_slice(&std::fs::read(top.join("sbom.cdx.json")).unwrap()).unwrap();
    assert!(sbom["components"].as_array().unwrap().iter().any(|c| c["name"] == "tantivy" && c["hashes"][0]["alg"] == "SHA-256"), "SBOM");
    let unit = std::fs::read_to_string(top.join("systemd/sanctum.service")).unwrap();
    for hardening in ["NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes", "User=@USER@"] {
        assert!(unit.contains(hardening), "{hardening}");
    }
    let install = top.join("install.sh");

    // ---- refused: one byte changed in the binary, in a model; another key
    for (what, file) in [("binary", "bin/sanctum"), ("model", "models/all-minilm-l6-v2/config.json")] {
        let bad = t.join(format!("tampered-{what}.tar.zst"));
        tampered(&bundle, file, &t.join("tamper-work"), &bad);
        let prefix = t.join(format!("refused-{what}"));
        let (success, text) = run(Command::new(&install).arg(&bad).arg("--public-key").arg(&public).arg("--prefix").arg(&prefix).arg("--no-start"));
        assert!(!success && text.contains("do not match their signed checksums") && text.contains(file), "{what}: {text}");
        assert!(!prefix.exists(), "nothing installed from a tampered bundle");
    }
    ok(sanctum().args(["bundle", "keygen", "--dir"]).arg(t.join("other-keys")));
    let (success, text) = run(Command::new(&install).arg(&bundle).arg("--public-key").arg(t.join("other-keys/bundle-signing.pub")).arg("--prefix").arg(t.join("refused-key")));
    assert!(!success && text.contains("signature over SHA256SUMS does not verify"), "{text}");

    // ---- offline: install, ingest, answer, backup, restore into a second install
    let demo = t.join("demo");
    ok(Command::new("cp").arg("-r").arg(support::demo_dir()).arg(&demo));
    let (port_a, port_b) = (support::free_port().to_string(), support::free_port().to_string());
    let connects = t.join("connects");
    let env = [("T", t.as_os_str()), ("BUNDLE", bundle.as_os_str()), ("PUBKEY", public.as_os_str()), ("INSTALL", install.as_os_str()), ("DEMO", demo.as_os_str()), ("PORT_A", port_a.as_ref()), ("PORT_B", port_b.as_ref())];
    let text = offline("offline.sh", &env, Some(&connects));

    let read = |name: &str| -> serde_json::Value { serde_json::from_slice(&std::fs::read(t.join(name)).unwrap_or_else(|e| panic!("{name}: {e}: {text}"))).unwrap() };
    let answer = read("answer.json");
    assert!(!answer["text"].as_str().unwrap_or_default().is_empty() && !answer["citations"].as_array().map(Vec::is_empty).unwrap_or(true), "an answer with citations: {answer}");
    let names = |v: &serde_json::Value| v["passages"].as_array().unwrap().iter().map(|p| (p["document_name"].as_str().unwrap().to_string(), p["text"].as_str().unwrap().to_string())).collect::<Vec<_>>();
    let (a, b) = (names(&read("search-a.json")), names(&read("search-b.json")));
    assert!(!a.is_empty() && a.iter().any(|(n, _)| n == "hand-hygiene.html"), "{a:?}");
    assert_eq!(a, b, "the restored install finds the same passages");
    let restored = std::fs::read_to_string(t.join("restore.txt")).unwrap();
    assert!(restored.contains("audit chain verifies"), "{restored}");
    let verified = std::fs::read_to_string(t.join("verify-b.txt")).unwrap();
    assert!(verified.contains("intact: every record matches"), "{verified}");

    // ---- no connection attempt beyond loopback (Unix sockets are PostgreSQL's)
    let log = std::fs::read_to_string(&connects).unwrap();
    let outbound: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("connect(") && (l.contains("AF_INET") || l.contains("AF_INET6")))
        .filter(|l| !(l.contains("inet_addr(\"127.0.0.1\")") || l.contains("inet_pton(AF_INET6, \"::1\"")))
        .collect();
    assert!(log.lines().any(|l| l.contains("127.0.0.1")), "strace saw the loopback connections: {}", log.lines().count());
    // name the programs that tried: follow each pid up its clone()s to an execve
    let program_of = |pid: &str| -> String {
        let mut pid = pid.to_string();
        for _ in 0..64 {
            let of = |l: &&str| l.split_whitespace().next() == Some(pid.as_str());
            if let Some(l) = log.lines().filter(|l| of(l) && l.contains(" execve(")).last() {
                return l.chars().take(160).collect();
            }
            let child = format!("= {pid}");
            match log.lines().find(|l| (l.contains("clone") || l.contains("fork")) && l.trim_end().ends_with(&child)) {
                Some(l) => pid = l.split_whitespace().next().unwrap_or_default().to_string(),
                None => break,
            }
        }
        format!("pid {pid}: no execve seen")
    };
    let mut programs: Vec<String> = outbound.iter().filter_map(|l| l.split_whitespace().next()).map(program_of).collect();
    programs.dedup();
    assert!(outbound.is_empty(), "0 outbound connection attempts, found {}: {outbound:?}, by {programs:?}", outbound.len());
}

#[test]
fn an_upgrade_from_the_previous_commits_bundle_keeps_the_data_and_a_failing_one_rolls_back() {
    let _one = serial();
    preconditions();
    let previous = std::env::var_os("PREVIOUS_SANCTUM_BUNDLE").map(std::path::PathBuf::from).filter(|p| p.is_file()).unwrap_or_else(|| {
        panic!("PREVIOUS_SANCTUM_BUNDLE names no bundle of the previous commit: `make test` sets it from scripts/previous-bundle.sh, which builds one")
    });
    let keys = previous.parent().and_then(Path::parent).expect("the previous bundle lies in CACHE/<commit>/").join("keys");
    let (key, public) = (keys.join("bundle-signing.key"), keys.join("bundle-signing.pub"));
    let tmp = support::tempdir();
    let t = tmp.path();
    let config = support::write_config(t, "");
    let new = build_bundle(&config, &t.join("out"), "9.9.10-new", &key, None);
    // a signed bundle whose binary cannot start: the upgrade must fail its health check
    let broken = build_bundle(&config, &t.join("out"), "9.9.11-broken", &key, Some(Path::new("/bin/false")));
    let demo = t.join("demo");
    ok(Command::new("cp").arg("-r").arg(support::demo_dir()).arg(&demo));
    let port = support::free_port().to_string();
    let env = [("T", t.as_os_str()), ("OLD", previous.as_os_str()), ("NEW", new.as_os_str()), ("BROKEN", broken.as_os_str()), ("PUBKEY", public.as_os_str()), ("DEMO", demo.as_os_str()), ("PORT", port.as_ref())];
    let text = offline("upgrade.sh", &env, None);

    let file = |name: &str| std::fs::read_to_string(t.join(name)).unwrap_or_else(|e| panic!("{name}: {e}: {text}"));
    let old_label = previous.file_name().unwrap().to_string_lossy().trim_start_matches("sanctum-").trim_end_matches("-x86_64-linux.tar.zst").to_string();
    let passages = |name: &str| -> Vec<(String, String)> {
        let v: serde_json::Value = serde_json::from_str(&file(name)).unwrap();
        v["passages"].as_array().unwrap().iter().map(|p| (p["document_name"].as_str().unwrap().to_string(), p["text"].as_str().unwrap().to_string())).collect()
    };
    let before = passages("up-before.json");
    assert!(before.iter().any(|(n, _)| n == "hand-hygiene.html"), "{before:?}");
    assert_eq!(before, passages("up-after.json"), "the upgraded install finds the same passages");
    assert_eq!(before, passages("up-rolled-back.json"), "the rolled-back install finds the same passages");
    // which binary served each search
    assert!(file("up-before.exe").contains(&format!("/releases/{old_label}/bin/sanctum")), "{}", file("up-before.exe"));
    assert!(file("up-after.exe").contains("/releases/9.9.10-new/bin/sanctum"), "{}", file("up-after.exe"));
    assert!(file("up-rolled-back.exe").contains("/releases/9.9.10-new/bin/sanctum"), "{}", file("up-rolled-back.exe"));
    assert_eq!(file("up-current").trim(), "releases/9.9.10-new");
    let upgraded = file("up-upgrade.txt");
    assert!(upgraded.contains(&format!("upgrading {old_label} -> 9.9.10-new")) && upgraded.contains("upgraded to 9.9.10-new"), "{upgraded}");
    let rolled = file("up-rollback.txt");
    assert!(rolled.contains("9.9.11-broken did not become ready") && rolled.contains("rolled back to 9.9.10-new"), "{rolled}");
    // the chain holds everything from the first release on, and the upgrades' own records
    assert!(file("up-verify.txt").contains("intact: every record matches"), "{}", file("up-verify.txt"));
    let actions: Vec<String> = file("up-audit.json").lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["action"].as_str().unwrap_or_default().to_string()).collect();
    let count = |a: &str| actions.iter().filter(|x| *x == a).count();
    assert!(count("backup.create") >= 1 && count("backup.restore") == 1 && count("document.index") >= 1 && count("token.create") == 1, "{actions:?}");
}
