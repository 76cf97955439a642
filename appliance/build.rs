//! llama.cpp is linked as shared libraries (its CPU kernels are loadable modules, one per
//! instruction-set level; see Cargo.toml). The binaries find the libraries beside
//! themselves (`$ORIGIN`, how a deploy bundle ships them) or, in a development build, in
//! the directory llama-cpp-sys-2 built them into.
fn main() {
    // DT_RPATH (not RUNPATH): it also applies to the libraries' own dependencies
    println!("cargo:rustc-link-arg=-Wl,--disable-new-dtags");
    println!("cargo:rustc-link-arg=-Wl,-rpath,$ORIGIN");
    // set by llama-cpp-sys-2 (links = "llama") for crates that depend on it directly
    if let Ok(backends) = std::env::var("DEP_LLAMA_BACKENDS_DIR") {
        if let Some(out) = std::path::Path::new(&backends).parent() {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{}", out.join("lib").display());
        }
    }
    println!("cargo:rerun-if-env-changed=DEP_LLAMA_BACKENDS_DIR");
}
