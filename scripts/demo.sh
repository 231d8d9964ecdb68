#!/usr/bin/env bash
# The main job end to end on the bundled Sentinel-2 scene: set up, ingest the example
# region as H3 res-8 cells with the MOSAIKS embedder, then a similarity search.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export RSEMBED_DB=${RSEMBED_DB:-demo-db}
.venv/bin/rsembed-db ingest examples/region.geojson --model mosaiks --tiles h3:8 \
  --year 2017 --imagery examples/data
.venv/bin/rsembed-db tables
.venv/bin/rsembed-db search --model mosaiks --near 12.58,52.49 -k 10
