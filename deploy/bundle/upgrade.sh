#!/usr/bin/env bash
# Upgrades an installation to a newer bundle, keeping its data and audit chain:
#
#   upgrade.sh NEW.tar.zst --public-key KEY.pem [--prefix /opt/sanctum]
#       [--config PREFIX/etc/sanctum.toml] [--timeout 180]
#
# The new bundle is verified (signature, every checksum) and installed beside the running
# release; the service is stopped and a backup taken (`sanctum backup`); PREFIX/current is
# switched to the new release and the service started, which migrates the database. If it
# is not ready within the timeout, the switch is undone: the old release is restored
# together with the pre-upgrade backup (the new one may have migrated the database), and
# started again. Never reaches the network.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=verify.sh
. "$here/verify.sh"

bundle="" key="" prefix=/opt/sanctum config="" timeout=180
while [ $# -gt 0 ]; do
    case "$1" in
        --public-key) key="$2"; shift 2 ;;
        --prefix) prefix="$2"; shift 2 ;;
        --config) config="$2"; shift 2 ;;
        --timeout) timeout="$2"; shift 2 ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        -*) fail "unknown option $1 (see --help)" ;;
        *) bundle="$1"; shift ;;
    esac
done
[ -n "$bundle" ] || fail "name the new bundle: upgrade.sh sanctum-VERSION-x86_64-linux.tar.zst --public-key KEY.pem"
config="${config:-$prefix/etc/sanctum.toml}"
[ -L "$prefix/current" ] || fail "$prefix holds no installation (no $prefix/current): use install.sh"
[ -f "$config" ] || fail "configuration $config: no such file"

verify_bundle "$bundle" "$key"
label="$(sed -n 's/^ *"label": *"\(.*\)",*$/\1/p' "$BUNDLE_DIR/manifest.json" | head -n1)"
old="$(basename "$(readlink "$prefix/current")")"
[ "$label" != "$old" ] || { echo "sanctum: $label is already the installed release"; exit 0; }
echo "sanctum: upgrading $old -> $label"

data_dir="$(sed -n 's/^data_dir *= *"\(.*\)"/\1/p' "$config" | head -n1)"
user="$(stat -c %U "$data_dir")"
run_as=""; [ "$(id -u)" = 0 ] && [ "$user" != root ] && run_as="$user"
systemd=no; [ -f /etc/systemd/system/sanctum.service ] && [ -d /run/systemd/system ] && systemd=yes
service() {
    if [ "$systemd" = yes ]; then systemctl "$1" sanctum; else "$prefix/current/sanctumctl" "$1" "$prefix" "$config" "$run_as"; fi
}

release="$prefix/releases/$label"
if [ ! -e "$release/.complete" ]; then
    rm -rf "$release.partial" "$release"
    cp -a "$BUNDLE_DIR" "$release.partial"
    touch "$release.partial/.complete"
    mv "$release.partial" "$release"
fi

# stopped before the backup: nothing accepted after it can be lost by a rollback
service stop
mkdir -p "$prefix/backups"
[ -z "$run_as" ] || chown "$run_as:" "$prefix/backups"
backup="$prefix/backups/before-$label-$(date -u +%Y%m%dT%H%M%SZ).tar.zst"
if ! as_user "$prefix/bin/sanctum" --config "$config" backup --out "$backup"; then
    service start
    fail "the pre-upgrade backup failed; $old was started again and nothing was changed"
fi

switch() { ln -sfn "releases/$1" "$prefix/current.new" && mv -T "$prefix/current.new" "$prefix/current"; }
switch "$label"
service start
if "$prefix/bin/sanctum" --config "$config" ready --timeout "$timeout"; then
    echo "sanctum: upgraded to $label (backup before the upgrade: $backup)"
    exit 0
fi
echo "sanctum: $label did not become ready; rolling back to $old" >&2
service stop || true
switch "$old"
as_user "$prefix/bin/sanctum" --config "$config" restore --replace "$backup" || fail "ROLLBACK INCOMPLETE: restoring $backup failed; the old release $old is in place but its data may be migrated"
service start
"$prefix/bin/sanctum" --config "$config" ready --timeout "$timeout" || fail "ROLLBACK INCOMPLETE: $old did not become ready either"
fail "upgrade to $label failed its health check; rolled back to $old with the data as it was before"
