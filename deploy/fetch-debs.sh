#!/usr/bin/env bash
# Downloads the Debian packages of the PostgreSQL server and of OCR (Tesseract with the
# language packs in TESSERACT_LANGS, default "eng", and poppler-utils' pdftoppm), with
# everything they depend on (not already essential), into DIR, for `sanctum bundle build
# --debs DIR`: run on a build machine with the same Debian release as the sites. The
# bundle's install.sh installs those a site lacks. Uses apt's ordinary client; idempotent.
set -euo pipefail
dir="${1:?usage: deploy/fetch-debs.sh DIR}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
major="${PG_MAJOR:-$(apt-cache policy postgresql 2>/dev/null | sed -n 's/^ *Candidate: \([0-9]*\).*/\1/p' | head -n1)}"
major="${major:-15}"
ocr="tesseract-ocr poppler-utils"
for lang in ${TESSERACT_LANGS:-eng}; do ocr="$ocr tesseract-ocr-$lang"; done
# shellcheck disable=SC2086
pkgs=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks --no-replaces --no-enhances \
        "postgresql-$major" "postgresql-client-$major" $ocr | grep '^[a-z0-9]' | sort -u)
essential=$(dpkg-query -W -f='${Package} ${Essential} ${Priority}\n' 2>/dev/null | awk '$2 == "yes" || $3 == "required" { print $1 }')
want=$(comm -23 <(echo "$pkgs") <(echo "$essential" | sort -u))
cd "$dir"
# shellcheck disable=SC2086
apt-get download $want >/dev/null 2>"$dir/.errors" || { cat "$dir/.errors" >&2; exit 1; }
rm -f "$dir/.errors"
ls "$dir"/*.deb | wc -l | xargs echo "debs in $dir:"
