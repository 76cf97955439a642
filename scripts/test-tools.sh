#!/usr/bin/env bash
# Python tools the tests drive the REST API with, in a virtual environment of their own
# (.sanctum/pytools): the official openai client, pinned. A no-op when it is there.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${SANCTUM_PYTOOLS:-$root/.sanctum/pytools}"
OPENAI=3.54.0
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
have="$("$venv/bin/python" -c 'import openai; print(openai.__version__)' 2>/dev/null || true)"
if [ "$have" != "$OPENAI" ]; then
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "openai==$OPENAI"
fi
echo "test-tools: ready ($venv: openai $OPENAI)"
