#!/usr/bin/env bash
# `make bench-sync-smb`: `sanctum bench sync` over a real SMB share. Starts Samba's smbd
# (Debian's samba) on loopback for the bench alone — SMB 3 only, signing and encryption
# required, a service account that reads every file — then runs the bench against it and
# stops it. Needs root (a system user for the account) and samba installed.
# Usage: scripts/bench-smb.sh SANCTUM CONFIG [bench sync options...]
set -euo pipefail
sanctum="${1:?usage: scripts/bench-smb.sh SANCTUM CONFIG [options]}"
config="${2:?usage: scripts/bench-smb.sh SANCTUM CONFIG [options]}"
shift 2
[ -x /usr/sbin/smbd ] || { echo "bench-smb: /usr/sbin/smbd is missing: apt-get install samba (scripts/test-tools.sh does)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "bench-smb: run as root (it creates the service account smbt-svc and starts smbd)" >&2; exit 1; }
account=smbt-svc
password="bench-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
id "$account" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$account"
dir="$(mktemp -d /tmp/sanctum-bench-smb.XXXXXX)"
smbd_pid=""
cleanup() { [ -z "$smbd_pid" ] || { pkill -KILL -P "$smbd_pid" 2>/dev/null || true; kill -KILL "$smbd_pid" 2>/dev/null || true; }; rm -rf "$dir"; }
trap cleanup EXIT
mkdir -p "$dir"/{private,lock,state,cache,pid,ncalrpc,share/files}
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
cat > "$dir/smb.conf" <<CONF
[global]
  netbios name = SANCTUMBENCH
  workgroup = SANCTUMBENCH
  server role = standalone server
  passdb backend = tdbsam:$dir/private/passdb.tdb
  smb ports = $port
  interfaces = 127.0.0.1
  bind interfaces only = yes
  private dir = $dir/private
  lock directory = $dir/lock
  state directory = $dir/state
  cache directory = $dir/cache
  pid directory = $dir/pid
  ncalrpc dir = $dir/ncalrpc
  log file = $dir/log.%m
  server min protocol = SMB3
  server signing = mandatory
  server smb encrypt = required
  map to guest = never
  load printers = no
  printing = bsd
  printcap name = /dev/null
  disable spoolss = yes
[share]
  path = $dir/share
  read only = yes
  admin users = $account
CONF
printf '%s\n%s\n' "$password" "$password" | smbpasswd -c "$dir/smb.conf" -s -a "$account" >/dev/null
(umask 077; printf '%s\n' "$password" > "$dir/password")
/usr/sbin/smbd --foreground --no-process-group -s "$dir/smb.conf" >"$dir/smbd.out" 2>&1 &
smbd_pid=$!
for _ in $(seq 1 300); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  kill -0 "$smbd_pid" 2>/dev/null || { cat "$dir/smbd.out" >&2; exit 1; }
  sleep 0.1
done
"$sanctum" --config "$config" bench sync --smb "smb://127.0.0.1:$port/share/files" --smb-username "$account" \
  --smb-password-file "$dir/password" --smb-export "$dir/share/files" "$@"
