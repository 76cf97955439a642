#!/usr/bin/env bash
# Removes an installation: uninstall.sh [--prefix /opt/sanctum] [--config FILE] [--purge].
# The service is stopped and its unit removed, then the releases under PREFIX. The data
# directory (database, documents, audit log and keys) is kept unless --purge is given:
# take a backup first (`sanctum backup --out FILE`).
set -euo pipefail
prefix=/opt/sanctum config="" purge=no
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) prefix="$2"; shift 2 ;;
        --config) config="$2"; shift 2 ;;
        --purge) purge=yes; shift ;;
        -h|--help) sed -n '2,5p' "$0"; exit 0 ;;
        *) echo "sanctum: unknown option $1" >&2; exit 1 ;;
    esac
done
config="${config:-$prefix/etc/sanctum.toml}"
[ -d "$prefix" ] || { echo "sanctum: nothing installed in $prefix"; exit 0; }
data_dir=""; [ -f "$config" ] && data_dir="$(sed -n 's/^data_dir *= *"\(.*\)"/\1/p' "$config" | head -n1)"
if [ -f /etc/systemd/system/sanctum.service ]; then
    systemctl disable --now sanctum 2>/dev/null || true
    rm -f /etc/systemd/system/sanctum.service
    systemctl daemon-reload 2>/dev/null || true
elif [ -x "$prefix/current/sanctumctl" ] && [ -f "$config" ]; then
    "$prefix/current/sanctumctl" stop "$prefix" "$config"
fi
if [ "$purge" = yes ] && [ -n "$data_dir" ]; then
    rm -rf "$data_dir"
    echo "sanctum: removed the data directory $data_dir"
elif [ -n "$data_dir" ]; then
    echo "sanctum: kept the data directory $data_dir (remove it with --purge)"
fi
rm -rf "$prefix"
echo "sanctum: removed $prefix"
