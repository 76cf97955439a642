//! Which of llama.cpp's CPU kernel modules to load. llama.cpp is built with one module per
//! x86 instruction-set level (`libggml-cpu-<level>.so`); left to itself it loads the
//! highest one this CPU reports. That includes AMX (`sapphirerapids`), which some
//! hypervisors advertise without enabling: on the development VM the first AMX tile load
//! killed the process with SIGILL. So AMX is used only when `answer.amx = true`; otherwise
//! the best level below it is chosen here from the CPU's features.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Kernel levels, best first, with the CPU features each needs.
const LEVELS: &[(&str, &[&str])] = &[
    ("sapphirerapids", &["avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd", "avx512vbmi", "avx512vnni", "avx512bf16", "amx-tile", "amx-int8"]),
    ("icelake", &["avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd", "avx512vbmi", "avx512vnni"]),
    ("cascadelake", &["avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd", "avx512vnni"]),
    ("skylakex", &["avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd"]),
    ("alderlake", &["avx2", "fma", "f16c", "bmi2", "avxvnni"]),
    ("haswell", &["avx2", "fma", "f16c", "bmi2"]),
];

fn has(feature: &str) -> bool {
    match feature {
        "avx512f" => std::arch::is_x86_feature_detected!("avx512f"),
        "avx512bw" => std::arch::is_x86_feature_detected!("avx512bw"),
        "avx512vl" => std::arch::is_x86_feature_detected!("avx512vl"),
        "avx512dq" => std::arch::is_x86_feature_detected!("avx512dq"),
        "avx512cd" => std::arch::is_x86_feature_detected!("avx512cd"),
        "avx512vbmi" => std::arch::is_x86_feature_detected!("avx512vbmi"),
        "avx512vnni" => std::arch::is_x86_feature_detected!("avx512vnni"),
        "avx512bf16" => std::arch::is_x86_feature_detected!("avx512bf16"),
        // AMX detection is unstable in std; the kernel reports it in /proc/cpuinfo
        "amx-tile" | "amx-int8" => {
            let flag = feature.replace('-', "_");
            std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|c| c.lines().any(|l| l.starts_with("flags") && l.split_whitespace().any(|w| w == flag)))
        }
        "avxvnni" => std::arch::is_x86_feature_detected!("avxvnni"),
        "avx2" => std::arch::is_x86_feature_detected!("avx2"),
        "fma" => std::arch::is_x86_feature_detected!("fma"),
        "f16c" => std::arch::is_x86_feature_detected!("f16c"),
        "bmi2" => std::arch::is_x86_feature_detected!("bmi2"),
        _ => false,
    }
}

/// The best kernel level this CPU runs (AMX only when allowed).
pub fn best_level(allow_amx: bool) -> Option<&'static str> {
    LEVELS.iter().filter(|(name, _)| allow_amx || *name != "sapphirerapids").find(|(_, needs)| needs.iter().all(|f| has(f))).map(|(n, _)| *n)
}

/// The kernel module to load from `dir`.
pub fn module(dir: &Path, allow_amx: bool) -> Result<PathBuf> {
    let level = best_level(allow_amx).ok_or_else(|| Error::Models("this CPU has no AVX2/FMA: llama.cpp's kernels need the x86-64-v3 baseline".into()))?;
    let path = dir.join(format!("libggml-cpu-{level}.so"));
    if !path.is_file() {
        return Err(Error::Models(format!("llama.cpp CPU kernels {} are missing", path.display())));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_cpu_gets_a_level_and_amx_only_when_allowed() {
        let without = super::best_level(false).expect("the x86-64-v3 baseline is required");
        assert_ne!(without, "sapphirerapids");
        if let Some(with) = super::best_level(true) {
            assert!(with == without || with == "sapphirerapids");
        }
    }
}
