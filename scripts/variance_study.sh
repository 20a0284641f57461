#!/usr/bin/env bash
# Where the noise of a learning curve comes from: `random` on sst2 run with SEEDS (warm start,
# pool, queries) x TRAIN_SEEDS (adapter init, dropout, batch order: same labels, other
# training luck), then `star report --variance` splits each round's variance into the two
# and the test sample's (a bootstrap over test sentences). Resumable: finished runs are skipped.
# Usage: scripts/variance_study.sh OUT [star run options, e.g. --preset cpu --min-steps 48]
set -euo pipefail
out=$1; shift
star=${STAR:-.venv/bin/star}
for t in $(echo "${TRAIN_SEEDS:-100,101,102}" | tr , " "); do
  "$star" -q sweep --tasks sst2 --strategies random --seeds "${SEEDS:-0,1,2}" --train-seed "$t" --out "$out" "$@" > /dev/null
done
"$star" report "$out" --variance
