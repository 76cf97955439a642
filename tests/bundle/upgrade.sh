#!/usr/bin/env bash
# Run by tests/bundle.rs inside a network namespace with only loopback (`unshare -n`):
# installs $OLD (the previous commit's bundle) with its own install.sh, ingests the demo
# corpus and searches; upgrades to $NEW with NEW's upgrade.sh and searches again; then
# upgrades to $BROKEN (a signed bundle whose binary cannot start), which must fail its
# health check and roll back to NEW with the data as it was. Results go to $T/up-*.
set -euo pipefail
ip link set lo up
P="$T/u" D="$T/u-data"
cli() { HOME=/nonexistent setpriv --reuid sanctum --regid "$(id -g sanctum)" --init-groups -- "$P/bin/sanctum" --config "$P/etc/sanctum.toml" "$@"; }
ctl() { "$P/current/sanctumctl" "$1" "$P" "$P/etc/sanctum.toml" sanctum; }
search() {
    curl -sS --fail-with-body --resolve "localhost:$PORT:127.0.0.1" --cacert "$D/tls/cert.pem" -X POST "https://localhost:$PORT/v1/search" \
        -H "Authorization: Bearer $(cat "$T/up-token")" -H 'Content-Type: application/json' \
        -d '{"query": "when should staff wash hands with soap instead of alcohol rub", "k": 5, "purpose": "operations"}' > "$T/up-$1.json"
    readlink "/proc/$(cat "$D/sanctum.pid")/exe" > "$T/up-$1.exe"
}
cleanup() { [ -x "$P/current/sanctumctl" ] && ctl stop || true; }
trap cleanup EXIT
unpacked() { # name bundle: its scripts, as an operator takes them out to run them
    local top; top="$(basename "$2" -x86_64-linux.tar.zst)"
    mkdir -p "$T/x-$1" && tar --zstd -xf "$2" -C "$T/x-$1" "$top/install.sh" "$top/upgrade.sh" "$top/verify.sh" && echo "$T/x-$1/$top"
}

echo "== install the previous commit's bundle"
old="$(unpacked old "$OLD")"
"$old/install.sh" "$OLD" --public-key "$PUBKEY" --prefix "$P" --data-dir "$D" --bind "127.0.0.1:$PORT" --no-systemd
ctl stop
cli user add ana --roles analyst --region us --groups clinical
cli token create ana --scopes search,ask --label upgrade-test | grep '^snt_' > "$T/up-token"
cli ingest "$DEMO" --json > /dev/null
ctl start
"$P/bin/sanctum" --config "$P/etc/sanctum.toml" ready --timeout 180
search before

echo "== upgrade to this commit's bundle"
new="$(unpacked new "$NEW")"
"$new/upgrade.sh" "$NEW" --public-key "$PUBKEY" --prefix "$P" > "$T/up-upgrade.txt" 2>&1 || { cat "$T/up-upgrade.txt"; exit 1; }
search after

echo "== upgrade to a bundle whose binary fails: rolled back"
broken="$(unpacked broken "$BROKEN")"
if "$broken/upgrade.sh" "$BROKEN" --public-key "$PUBKEY" --prefix "$P" --timeout 20 > "$T/up-rollback.txt" 2>&1; then
    echo "the broken upgrade succeeded"; cat "$T/up-rollback.txt"; exit 1
fi
search rolled-back
readlink "$P/current" > "$T/up-current"

echo "== stop; the audit chain"
ctl stop
cli audit verify > "$T/up-verify.txt"
cli audit tail -n 400 --json > "$T/up-audit.json"
echo "upgrade: done"
