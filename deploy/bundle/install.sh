#!/usr/bin/env bash
# Installs a Sanctum bundle on a machine without network access.
#
#   install.sh BUNDLE.tar.zst --public-key KEY.pem [--prefix /opt/sanctum]
#       [--data-dir /var/lib/sanctum] [--config /etc/sanctum/sanctum.toml] [--user sanctum]
#       [--bind 0.0.0.0:8443] [--no-systemd] [--no-start]
#
# It verifies the bundle (signature, then every checksum) before touching the system, then:
# installs PostgreSQL from the bundled Debian packages if its server binaries are missing;
# creates the service user; installs the release under PREFIX/releases/LABEL and points
# PREFIX/current at it; writes the configuration (once: an existing one is kept);
# initialises the data directory (database, policies, audit keys, TLS certificate); and
# starts the service (systemd when it runs, else a supervised background process) and waits
# until it is ready. It never reaches the network. Running it again is harmless.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=verify.sh
. "$here/verify.sh"

bundle="" key="" prefix=/opt/sanctum data_dir=/var/lib/sanctum config="" user=sanctum bind="0.0.0.0:8443" systemd=auto start=yes
while [ $# -gt 0 ]; do
    case "$1" in
        --public-key) key="$2"; shift 2 ;;
        --prefix) prefix="$2"; shift 2 ;;
        --data-dir) data_dir="$2"; shift 2 ;;
        --config) config="$2"; shift 2 ;;
        --user) user="$2"; shift 2 ;;
        --bind) bind="$2"; shift 2 ;;
        --no-systemd) systemd=no; shift ;;
        --no-start) start=no; shift ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        -*) fail "unknown option $1 (see --help)" ;;
        *) [ -z "$bundle" ] || fail "one bundle at a time ($bundle, $1)"; bundle="$1"; shift ;;
    esac
done
[ -n "$bundle" ] || fail "name the bundle: install.sh sanctum-VERSION-x86_64-linux.tar.zst --public-key KEY.pem"
config="${config:-$prefix/etc/sanctum.toml}"

verify_bundle "$bundle" "$key"
label="$(sed -n 's/^ *"label": *"\(.*\)",*$/\1/p' "$BUNDLE_DIR/manifest.json" | head -n1)"
[ -n "$label" ] || fail "bundle $bundle: manifest.json names no label"
echo "sanctum: bundle $label verified ($(wc -l < "$BUNDLE_DIR/SHA256SUMS") files, signature good)"

# PostgreSQL server binaries and OCR (Tesseract, pdftoppm): the system's, or the bundled
# Debian packages the system lacks (offline; installed packages are left as they are)
missing_debs() {
    for deb in "$BUNDLE_DIR"/debs/*.deb; do
        [ -e "$deb" ] || continue
        pkg="$(dpkg-deb -f "$deb" Package)"
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || echo "$deb"
    done
}
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || ! command -v tesseract >/dev/null || ! command -v pdftoppm >/dev/null; then
    debs="$(missing_debs)"
    if [ -n "$debs" ]; then
        [ "$(id -u)" = 0 ] || fail "PostgreSQL or Tesseract is not installed and installing their packages needs root"
        echo "sanctum: installing $(echo "$debs" | wc -l) bundled Debian packages (PostgreSQL, Tesseract OCR; offline)"
        # shellcheck disable=SC2086
        dpkg -i $debs || fail "dpkg could not install the bundled packages (see above)"
    fi
fi

# the service user
run_as=""
if [ "$(id -u)" = 0 ]; then
    if ! id "$user" >/dev/null 2>&1; then
        useradd --system --home-dir "$data_dir" --no-create-home --shell /usr/sbin/nologin "$user" || fail "cannot create the service user $user"
        echo "sanctum: created the service user $user"
    fi
    run_as="$user"
else
    user="$(id -un)"
fi

# the release, then the switch
release="$prefix/releases/$label"
mkdir -p "$prefix/releases" "$prefix/bin" "$(dirname "$config")"
if [ ! -e "$release/.complete" ]; then
    rm -rf "$release.partial"
    cp -a "$BUNDLE_DIR" "$release.partial"
    touch "$release.partial/.complete"
    rm -rf "$release"
    mv "$release.partial" "$release"
fi
ln -sfn "releases/$label" "$prefix/current.new" && mv -T "$prefix/current.new" "$prefix/current"
cat > "$prefix/bin/sanctum" <<WRAP
#!/bin/sh
exec "$prefix/current/bin/sanctum" "\$@"
WRAP
chmod 0755 "$prefix/bin/sanctum"

# the configuration, once
if [ ! -e "$config" ]; then
    sed -e "s|@DATA_DIR@|$data_dir|g" -e "s|@PREFIX@|$prefix|g" -e "s|@BIND@|$bind|g" "$BUNDLE_DIR/etc/sanctum.toml" > "$config"
    chmod 0640 "$config"
    echo "sanctum: wrote $config"
fi
mkdir -p "$data_dir"
chmod 0750 "$data_dir"
if [ -n "$run_as" ]; then chown "$run_as:" "$data_dir"; chgrp "$(id -gn "$run_as")" "$config"; fi

if [ "$systemd" = auto ]; then
    if [ -d /run/systemd/system ] && [ "$(id -u)" = 0 ]; then systemd=yes; else systemd=no; fi
fi

# a running service (an install run again) is stopped first: one process owns the data
if [ "$systemd" = yes ] && systemctl is-active --quiet sanctum 2>/dev/null; then
    systemctl stop sanctum
elif [ -x "$prefix/current/sanctumctl" ]; then
    "$prefix/current/sanctumctl" stop "$prefix" "$config" "$run_as"
fi

# the data directory: database, policies, audit keys, TLS certificate (idempotent)
as_user "$prefix/bin/sanctum" --config "$config" doctor >/dev/null || true
as_user "$prefix/bin/sanctum" --config "$config" audit verify >/dev/null || fail "the data directory $data_dir could not be initialised (run: $prefix/bin/sanctum --config $config doctor)"

[ "$start" = yes ] || { echo "sanctum: installed $label in $prefix (not started)"; exit 0; }
if [ "$systemd" = yes ]; then
    sed -e "s|@PREFIX@|$prefix|g" -e "s|@CONFIG@|$config|g" -e "s|@USER@|$user|g" -e "s|@DATA_DIR@|$data_dir|g" \
        "$BUNDLE_DIR/systemd/sanctum.service" > /etc/systemd/system/sanctum.service
    systemctl daemon-reload
    systemctl enable sanctum >/dev/null
    systemctl restart sanctum
else
    "$prefix/current/sanctumctl" restart "$prefix" "$config" "$run_as"
fi
"$prefix/bin/sanctum" --config "$config" ready --timeout 180 || fail "the service did not become ready (log: $data_dir/sanctum.log or journalctl -u sanctum)"
echo "sanctum: $label installed in $prefix and running (config $config, data $data_dir)"
