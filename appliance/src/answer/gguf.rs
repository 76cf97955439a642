//! Reading a GGUF file's architecture from its header, so an unsupported model is refused
//! with a clear error before the loader sees it (mistralrs 0.8.1 panics on some).

use std::io::{BufReader, Read};
use std::path::Path;

use crate::error::{Error, Result};

/// GGUF architectures the mistralrs backend (0.8.1) can run; llama.cpp runs many more and
/// reports an unknown one as a load error.
pub const SUPPORTED: &[&str] = &["llama", "mistral3", "phi2", "phi3", "starcoder2", "qwen2", "qwen3", "qwen3moe"];

fn bad(path: &Path, why: impl std::fmt::Display) -> Error {
    Error::Models(format!("{} is not a readable GGUF file: {why}", path.display()))
}

struct Reader<R: Read> {
    r: R,
}

impl<R: Read> Reader<R> {
    fn bytes<const N: usize>(&mut self) -> std::io::Result<[u8; N]> {
        let mut b = [0u8; N];
        self.r.read_exact(&mut b)?;
        Ok(b)
    }
    fn u32(&mut self) -> std::io::Result<u32> {
        Ok(u32::from_le_bytes(self.bytes()?))
    }
    fn u64(&mut self) -> std::io::Result<u64> {
        Ok(u64::from_le_bytes(self.bytes()?))
    }
    fn string(&mut self) -> std::io::Result<String> {
        let len = self.u64()?;
        if len > 1 << 20 {
            return Err(std::io::Error::other("string longer than 1 MiB"));
        }
        let mut b = vec![0u8; len as usize];
        self.r.read_exact(&mut b)?;
        Ok(String::from_utf8_lossy(&b).into_owned())
    }
    /// Skips a value of GGUF type `t`.
    fn skip(&mut self, t: u32) -> std::io::Result<()> {
        let size = match t {
            0 | 1 | 7 => 1,
            2 | 3 => 2,
            4 | 5 | 6 => 4,
            10 | 11 | 12 => 8,
            8 => {
                self.string()?;
                return Ok(());
            }
            9 => {
                let inner = self.u32()?;
                let n = self.u64()?;
                for _ in 0..n {
                    self.skip(inner)?;
                }
                return Ok(());
            }
            other => return Err(std::io::Error::other(format!("unknown value type {other}"))),
        };
        std::io::copy(&mut (&mut self.r).take(size), &mut std::io::sink())?;
        Ok(())
    }
}

/// The `general.architecture` of a GGUF file.
pub fn architecture(path: &Path) -> Result<String> {
    let f = std::fs::File::open(path).map_err(|e| Error::Models(format!("cannot open model {}: {e}", path.display())))?;
    let mut r = Reader { r: BufReader::new(f) };
    let magic = r.bytes::<4>().map_err(|e| bad(path, e))?;
    if &magic != b"GGUF" {
        return Err(bad(path, "missing GGUF magic"));
    }
    let version = r.u32().map_err(|e| bad(path, e))?;
    if version < 2 {
        return Err(bad(path, format!("GGUF version {version} is too old")));
    }
    let _tensors = r.u64().map_err(|e| bad(path, e))?;
    let kvs = r.u64().map_err(|e| bad(path, e))?;
    for _ in 0..kvs {
        let key = r.string().map_err(|e| bad(path, e))?;
        let t = r.u32().map_err(|e| bad(path, e))?;
        if key == "general.architecture" && t == 8 {
            return r.string().map_err(|e| bad(path, e));
        }
        r.skip(t).map_err(|e| bad(path, e))?;
    }
    Err(bad(path, "no general.architecture key"))
}

/// Refuses a model whose architecture the backend cannot run, naming both.
pub fn check_supported(path: &Path) -> Result<String> {
    let arch = architecture(path)?;
    if SUPPORTED.contains(&arch.to_ascii_lowercase().as_str()) {
        Ok(arch)
    } else {
        Err(Error::Models(format!(
            "{}: architecture {arch:?} is not supported by the mistralrs backend (supported: {})",
            path.display(),
            SUPPORTED.join(", ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A GGUF header with a few metadata entries before the architecture.
    fn header(arch: &str) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend(3u32.to_le_bytes());
        b.extend(0u64.to_le_bytes());
        b.extend(3u64.to_le_bytes());
        let key = |b: &mut Vec<u8>, k: &str| {
            b.extend((k.len() as u64).to_le_bytes());
            b.extend(k.as_bytes());
        };
        key(&mut b, "general.quantization_version");
        b.extend(4u32.to_le_bytes());
        b.extend(2u32.to_le_bytes());
        key(&mut b, "tokenizer.ggml.tokens");
        b.extend(9u32.to_le_bytes());
        b.extend(8u32.to_le_bytes());
        b.extend(2u64.to_le_bytes());
        for t in ["<s>", "hi"] {
            key(&mut b, t);
        }
        key(&mut b, "general.architecture");
        b.extend(8u32.to_le_bytes());
        key(&mut b, arch);
        b
    }

    #[test]
    fn reads_the_architecture_and_refuses_unsupported_ones() {
        let dir = tempfile::tempdir().unwrap();
        let ok = dir.path().join("ok.gguf");
        std::fs::write(&ok, header("qwen2")).unwrap();
        assert_eq!(check_supported(&ok).unwrap(), "qwen2");
        let gemma = dir.path().join("gemma.gguf");
        std::fs::write(&gemma, header("gemma3")).unwrap();
        let err = check_supported(&gemma).unwrap_err().to_string();
        assert!(err.contains("\"gemma3\"") && err.contains("qwen2") && err.contains("llama"), "{err}");
        let junk = dir.path().join("junk.gguf");
        std::fs::write(&junk, b"not a model").unwrap();
        assert!(check_supported(&junk).unwrap_err().to_string().contains("GGUF magic"));
        let cut = dir.path().join("cut.gguf");
        std::fs::write(&cut, &header("llama")[..40]).unwrap();
        assert!(check_supported(&cut).is_err());
    }
}
