#!/usr/bin/env bash
# Run by tests/bundle.rs inside a network namespace with only loopback (`unshare -n`), under
# strace recording every connect(): installs bundle $BUNDLE twice over (install A, and the
# same install again), ingests the demo corpus, answers a question with citations over the
# REST API, takes a backup of A while it runs, installs B and restores the backup into it,
# and searches both. Results go to $T/*.json for the test to compare.
set -euo pipefail
ip link set lo up
cli() { local prefix="$1"; shift; HOME=/nonexistent setpriv --reuid sanctum --regid "$(id -g sanctum)" --init-groups -- "$prefix/bin/sanctum" --config "$prefix/etc/sanctum.toml" "$@"; }
ctl() { "$1/current/sanctumctl" "$2" "$1" "$1/etc/sanctum.toml" sanctum; }
api() { # prefix port method path [curl args...]
    local prefix="$1" port="$2" method="$3" path="$4"; shift 4
    curl -sS --fail-with-body --resolve "localhost:$port:127.0.0.1" --cacert "$T/$(basename "$prefix")-data/tls/cert.pem" -X "$method" "https://localhost:$port$path" "$@"
}

# whatever happens, no service is left running (strace follows it, and the test would wait)
cleanup() { for p in "$T/b" "$T/a"; do [ -x "$p/current/sanctumctl" ] && ctl "$p" stop || true; done; }
trap cleanup EXIT

install_at() { # name port
    "$INSTALL" "$BUNDLE" --public-key "$PUBKEY" --prefix "$T/$1" --data-dir "$T/$1-data" --bind "127.0.0.1:$2" --no-systemd
}

echo "== install A"
install_at a "$PORT_A"
echo "== install A again (idempotent)"
install_at a "$PORT_A"

echo "== users, token, demo corpus"
ctl "$T/a" stop
cli "$T/a" user add ana --roles analyst --region us --groups clinical
cli "$T/a" token create ana --scopes search,ask --label offline-test | grep '^snt_' > "$T/token"
cli "$T/a" ingest "$DEMO" --json > "$T/ingest.json"
ctl "$T/a" start
"$T/a/bin/sanctum" --config "$T/a/etc/sanctum.toml" ready --timeout 180
token="$(cat "$T/token")"

echo "== ask and search over HTTPS"
api "$T/a" "$PORT_A" POST /v1/ask -H "Authorization: Bearer $token" -H 'Content-Type: application/json' -H 'X-Purpose-Of-Use: operations' \
    -d '{"question": "How many visitors may be at a bedside in intensive care?", "max_tokens": 48}' > "$T/answer.json"
search='{"query": "when should staff wash hands with soap instead of alcohol rub", "k": 5, "purpose": "operations"}'
api "$T/a" "$PORT_A" POST /v1/search -H "Authorization: Bearer $token" -H 'Content-Type: application/json' -d "$search" > "$T/search-a.json"

echo "== backup A while it runs; install B; restore into B"
cli "$T/a" backup --out "$T/a-data/backup.tar.zst"
"$INSTALL" "$BUNDLE" --public-key "$PUBKEY" --prefix "$T/b" --data-dir "$T/b-data" --bind "127.0.0.1:$PORT_B" --no-systemd --no-start
cli "$T/b" restore "$T/a-data/backup.tar.zst" > "$T/restore.txt"
cli "$T/b" audit verify > "$T/verify-b.txt"
ctl "$T/b" start
"$T/b/bin/sanctum" --config "$T/b/etc/sanctum.toml" ready --timeout 180
api "$T/b" "$PORT_B" POST /v1/search -H "Authorization: Bearer $token" -H 'Content-Type: application/json' -d "$search" > "$T/search-b.json"

echo "== stop"
ctl "$T/b" stop
ctl "$T/a" stop
echo "offline: done"
