#!/usr/bin/env bash
# Rebuild the map explorer's bundle (rsembed_db/service/explorer/) from explorer/ with the
# npm packages pinned in explorer/package-lock.json. Needs Node >= 20 and npm; the built
# files are committed, so installing rsembed-db never needs Node.
set -euo pipefail
cd "$(dirname "$0")/../explorer"
OUT=../rsembed_db/service/explorer
npm ci --no-audit --no-fund
mkdir -p "$OUT"
node build/bundle.mjs "$OUT"
node build/countries.mjs "$OUT/countries.geojson"
ls -l "$OUT"
