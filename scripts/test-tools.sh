#!/usr/bin/env bash
# Python tools the tests drive the REST API with, in a virtual environment of their own
# (.sanctum/pytools): the official openai client and schemathesis (fuzzes the API from its
# OpenAPI document), pinned. A no-op when they are there.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${SANCTUM_PYTOOLS:-$root/.sanctum/pytools}"
OPENAI=3.54.0
SCHEMATHESIS=4.32.5
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
have="$("$venv/bin/python" -c 'import openai, importlib.metadata as m; print(openai.__version__, m.version("schemathesis"))' 2>/dev/null || true)"
if [ "$have" != "$OPENAI $SCHEMATHESIS" ]; then
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "openai==$OPENAI" "schemathesis==$SCHEMATHESIS"
fi
# the web UI's browser tests: Debian's Chromium, and playwright-core from npm to drive it
if ! [ -x /usr/bin/chromium ]; then
  echo "test-tools: installing chromium"
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; fi
fi
# the air-gapped install test: system tools, and PostgreSQL's Debian packages for the bundle;
# the directory tests' LDAP server (OpenLDAP's slapd, started by the test on loopback); the
# OCR tests' page renderer (ImageMagick)
need=""
for tool in strace:strace curl:curl zstd:zstd openssl:openssl unshare:util-linux setpriv:util-linux slapd:slapd ldapsearch:ldap-utils; do
  command -v "${tool%%:*}" >/dev/null || need="$need ${tool##*:}"
done
[ -x /usr/bin/convert ] || need="$need imagemagick"
# the SMB source tests' file server (Samba's smbd, started by the test on loopback)
[ -x /usr/sbin/smbd ] || need="$need samba"
if [ -n "$need" ]; then
  echo "test-tools: installing$need"
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need
  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need; fi
fi
if ! ls "$root/.sanctum/debs"/postgresql-1*.deb "$root/.sanctum/debs"/tesseract-ocr-eng_*.deb >/dev/null 2>&1; then
  "$root/deploy/fetch-debs.sh" "$root/.sanctum/debs"
fi
# the fuzz targets (make test runs each briefly): cargo-fuzz from crates.io, pinned in fuzz.sh
"$root/scripts/fuzz.sh" --install
# and the directory tests' OpenID Provider (oidc-provider, OpenID-certified; tests/directory)
PLAYWRIGHT=1.64.1
OIDC_PROVIDER=9.13.3
web="$root/.sanctum/webtools"
if [ "$(node -p "require('$web/node_modules/playwright-core/package.json').version" 2>/dev/null || true)" != "$PLAYWRIGHT" ] ||
   [ "$(node -p "require('$web/node_modules/oidc-provider/package.json').version" 2>/dev/null || true)" != "$OIDC_PROVIDER" ]; then
  mkdir -p "$web"
  npm install --prefix "$web" --no-audit --no-fund --silent "playwright-core@$PLAYWRIGHT" "oidc-provider@$OIDC_PROVIDER"
fi
# the fine-tuning tests: torch, transformers, peft and gguf, pinned (scripts/train-env.sh)
"$root/scripts/train-env.sh" >/dev/null
echo "test-tools: ready ($venv: openai $OPENAI, schemathesis $SCHEMATHESIS; playwright-core $PLAYWRIGHT; oidc-provider $OIDC_PROVIDER; $(cargo fuzz --version))"
