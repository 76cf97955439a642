//! The CPU baseline the binary is built for (`.cargo/config.toml`: x86-64-v3, i.e. AVX2,
//! FMA, BMI2). Checked at start so an older CPU gets a clear message instead of an
//! illegal-instruction crash somewhere deep in a SIMD kernel.

/// Names of required CPU features this machine lacks (empty when it can run us).
pub fn missing_features() -> Vec<&'static str> {
    let mut missing = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        if !std::arch::is_x86_feature_detected!("avx2") {
            missing.push("avx2");
        }
        if !std::arch::is_x86_feature_detected!("fma") {
            missing.push("fma");
        }
        if !std::arch::is_x86_feature_detected!("bmi2") {
            missing.push("bmi2");
        }
    }
    missing
}
