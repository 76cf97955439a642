# Sourced by install.sh and upgrade.sh, with their shared helpers (fail, as_user): unpacks a
# bundle into a new temporary directory and verifies it there, before anything on the system
# is touched: the ed25519 signature over SHA256SUMS (openssl, with the operator's public
# key), then every file's sha256, and that no file is present that SHA256SUMS does not list.
# Sets BUNDLE_DIR on success.

fail() { echo "sanctum: $*" >&2; exit 1; }

# Runs a command as the service user $run_as (when set; HOME is its data directory $data_dir).
# setpriv, not runuser or su: no PAM session (which may look the host name up in DNS)
as_user() { if [ -n "$run_as" ]; then HOME="$data_dir" setpriv --reuid "$run_as" --regid "$(id -g "$run_as")" --init-groups -- "$@"; else "$@"; fi; }

verify_bundle() {
    local bundle="$1" key="$2"
    [ -f "$bundle" ] || fail "bundle $bundle: no such file"
    [ -n "$key" ] || fail "no public key: pass --public-key FILE (the bundle signer's ed25519 key, shipped separately)"
    [ -f "$key" ] || fail "public key $key: no such file"
    for tool in tar zstd openssl sha256sum; do
        command -v "$tool" >/dev/null || fail "$tool is needed to verify the bundle (Debian: apt-get install $tool)"
    done
    local work
    work="$(mktemp -d "${TMPDIR:-/tmp}/sanctum-bundle.XXXXXX")"
    # shellcheck disable=SC2064
    trap "rm -rf '$work'" EXIT
    tar --zstd -xf "$bundle" -C "$work" --no-same-owner --no-same-permissions 2>"$work/.tar-errors" \
        || fail "bundle $bundle: cannot be unpacked ($(tr '\n' ' ' < "$work/.tar-errors"))"
    rm -f "$work/.tar-errors"
    local top
    top="$(find "$work" -mindepth 1 -maxdepth 1)"
    [ "$(echo "$top" | wc -l)" = 1 ] && [ -d "$top" ] || fail "bundle $bundle: expected one top-level directory"
    [ -f "$top/SHA256SUMS" ] && [ -f "$top/SHA256SUMS.sig" ] || fail "bundle $bundle: SHA256SUMS or its signature is missing"
    if ! openssl pkeyutl -verify -pubin -inkey "$key" -rawin -in "$top/SHA256SUMS" -sigfile "$top/SHA256SUMS.sig" >/dev/null 2>&1; then
        fail "bundle $bundle: the signature over SHA256SUMS does not verify with $key: refusing to install (the bundle was altered, or signed by another key)"
    fi
    local bad
    if ! bad="$(cd "$top" && sha256sum --quiet --strict -c SHA256SUMS 2>&1)"; then
        fail "bundle $bundle: files do not match their signed checksums, refusing to install: $(echo "$bad" | grep -v '^sha256sum:' | tr '\n' ' ')"
    fi
    local listed present extra
    listed="$(cut -c67- "$top/SHA256SUMS" | sort)"
    present="$(cd "$top" && find . -type f ! -name SHA256SUMS ! -name SHA256SUMS.sig | sed 's|^\./||' | sort)"
    extra="$(comm -13 <(echo "$listed") <(echo "$present"))"
    [ -z "$extra" ] || fail "bundle $bundle: files not covered by the signature, refusing to install: $(echo "$extra" | tr '\n' ' ')"
    [ -z "$(cd "$top" && find . -type l)" ] || fail "bundle $bundle: holds symbolic links, refusing to install"
    BUNDLE_DIR="$top"
}
