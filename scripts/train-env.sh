#!/usr/bin/env bash
# The Python environment `sanctum finetune train` runs deploy/finetune/train.py in: a
# virtual environment outside the checkout (default ~/.cache/sanctum-train, or
# $SANCTUM_TRAIN_ENV) with torch, transformers, PEFT and gguf (transformers reads GGUF
# models through the gguf package), pinned. torch from PyPI brings its CUDA libraries
# (about 2.8 GB); it runs on CPU without a GPU. A no-op when they are there. Prints the
# environment's python last.
set -euo pipefail
venv="${SANCTUM_TRAIN_ENV:-$HOME/.cache/sanctum-train}"
TORCH=2.15.0
TRANSFORMERS=5.23.0
PEFT=0.21.2
GGUF=0.19.0
NUMPY=2.4.6
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
have="$("$venv/bin/python" -c 'import importlib.metadata as m; print(*(m.version(p) for p in ("torch", "transformers", "peft", "gguf", "numpy")))' 2>/dev/null || true)"
if [ "$have" != "$TORCH $TRANSFORMERS $PEFT $GGUF $NUMPY" ]; then
  echo "train-env: installing torch $TORCH, transformers $TRANSFORMERS, peft $PEFT, gguf $GGUF, numpy $NUMPY into $venv" >&2
  "$venv/bin/python" -m pip install -q --disable-pip-version-check \
    "torch==$TORCH" "transformers==$TRANSFORMERS" "peft==$PEFT" "gguf==$GGUF" "numpy==$NUMPY"
fi
echo "$venv/bin/python"
