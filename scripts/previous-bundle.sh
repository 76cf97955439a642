#!/usr/bin/env bash
# The signed bundle of the commit before HEAD, for the upgrade test (tests/bundle.rs): the
# previous commit is checked out in a temporary worktree, its binary built into the same
# target directory (only the workspace's own crates compile again) and its own
# `sanctum bundle build` run, signed with a test key kept beside it. Kept per commit in
# $PREVIOUS_SANCTUM_CACHE ($HOME/.cache/sanctum-previous): <sha>/sanctum-<sha>-x86_64-linux.tar.zst,
# keys/bundle-signing.{key,pub}. A no-op when it is there. Prints the bundle's path last.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sanctum-target}"
cache="${PREVIOUS_SANCTUM_CACHE:-$HOME/.cache/sanctum-previous}"
features="${FEATURES:-sanctum/slm,sanctum/opa-wasm}"
# a shallow checkout fetches the one commit it lacks from where it was cloned
if ! git -C "$root" rev-parse --verify --quiet HEAD~1 >/dev/null && [ "$(git -C "$root" rev-parse --is-shallow-repository)" = true ]; then
    git -C "$root" fetch --quiet --deepen=1 >&2 || true
fi
sha="$(git -C "$root" rev-parse --verify --quiet HEAD~1)" || {
    echo "previous-bundle: $root has no commit before HEAD (a shallow clone whose origin cannot be reached?): the upgrade test needs one" >&2; exit 1; }
short="${sha:0:12}"
bundle="$cache/$short/sanctum-$short-x86_64-linux.tar.zst"
if [ -f "$bundle" ]; then echo "$bundle"; exit 0; fi

[ -d "$root/.sanctum/debs" ] || "$root/deploy/fetch-debs.sh" "$root/.sanctum/debs" >&2
mkdir -p "$cache"
work="$(mktemp -d)"
cleanup() { git -C "$root" worktree remove --force "$work/src" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
git -C "$root" worktree add --quiet --detach "$work/src" "$sha" >&2
echo "previous-bundle: building $short (the commit before HEAD)" >&2
# llama-cpp-sys-2 hard-links its libraries into the target directory: dangling links from an
# earlier build make it fail ("File exists")
find "$CARGO_TARGET_DIR/debug" "$CARGO_TARGET_DIR/debug/deps" -maxdepth 1 -xtype l -name 'lib*.so*' -delete 2>/dev/null || true
# cargo copies the binary it builds to target/debug/sanctum and does not copy HEAD's back when
# nothing of HEAD needs compiling: keep HEAD's, put it back afterwards
head_binary="$CARGO_TARGET_DIR/debug/sanctum"
if [ -f "$head_binary" ]; then cp -p "$head_binary" "$work/sanctum-head"; fi
restore() { if [ -f "$work/sanctum-head" ]; then mv -f "$work/sanctum-head" "$head_binary"; else rm -f "$head_binary"; fi; }
trap 'restore; cleanup' EXIT
(cd "$work/src" && cargo build --bin sanctum --features "$features" >&2)
# The previous commit's artifacts of the workspace's own crates now sit where HEAD's go, with
# newer timestamps than HEAD's sources (cargo keys them by paths relative to each package): a
# crate that differs between the two commits would be taken as fresh and linked into HEAD's
# next build. Make HEAD's sources newer, so that build compiles the workspace's crates again.
find "$root/appliance" "$root/ingest" "$root/policies" "$root/web" "$root/tests" -path '*/target' -prune -o -type f -exec touch -c {} + 2>/dev/null || true
cp -p "$head_binary" "$work/sanctum-previous"
previous="$work/sanctum-previous"
"$previous" bundle --help | grep -q build || { echo "previous-bundle: $short has no 'sanctum bundle build'" >&2; exit 1; }
printf 'data_dir = "%s"\n\n[models]\ndir = "%s"\n' "$work/data" "${SANCTUM_MODELS__DIR:-$root/.sanctum/models}" > "$work/sanctum.toml"
[ -f "$cache/keys/bundle-signing.key" ] || "$previous" --config "$work/sanctum.toml" bundle keygen --dir "$cache/keys" >&2
"$previous" --config "$work/sanctum.toml" bundle build --label "$short" --out "$work/out" \
    --signing-key "$cache/keys/bundle-signing.key" --debs "$root/.sanctum/debs" >&2
mkdir -p "$cache/$short"
mv "$work/out/sanctum-$short-x86_64-linux.tar.zst" "$bundle.partial" && mv "$bundle.partial" "$bundle"
echo "$bundle"
