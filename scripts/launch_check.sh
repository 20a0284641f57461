#!/bin/bash
# One run alone and the same run under a 2-process launcher (torchrun, gloo, CPU), on the
# real embedded model: wall times, and how far picks, MC pool scores and the adapter are apart.
# Usage: bash scripts/launch_check.sh OUT [extra run flags]   (default: --preset smoke --dtype float32)
set -euo pipefail
out=${1:?usage: launch_check.sh OUT [run flags]}; shift
flags=("$@"); [ ${#flags[@]} -eq 0 ] && flags=(--preset smoke --dtype float32)
here=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-$here/.venv/bin/python}
rm -rf "$out"; mkdir -p "$out"
common=(run --task sst2 --strategy me+star --device cpu "${flags[@]}")
t0=$(date +%s.%N)
"$py" -m star_al.cli -q "${common[@]}" --out "$out/alone" > /dev/null
t1=$(date +%s.%N)
"$(dirname "$py")/torchrun" --standalone --nproc_per_node 2 -m star_al.cli -q "${common[@]}" --out "$out/launched" \
    > /dev/null 2> "$out/launched.stderr"
t2=$(date +%s.%N)
"$py" - "$out" "$t0" "$t1" "$t2" <<'PY'
import json, sys
from pathlib import Path
import numpy as np
from safetensors.numpy import load_file
out, t0, t1, t2 = Path(sys.argv[1]), *map(float, sys.argv[2:])
rounds = {k: [json.loads(l) for l in (out / k / "rounds.jsonl").read_text().splitlines()] for k in ("alone", "launched")}
same = [a["selected_ids"] == b["selected_ids"] for a, b in zip(rounds["alone"], rounds["launched"])]
score_gap, pass_gap = 0.0, 0.0
for path in sorted((out / "alone" / "scores").glob("round-*.npz")):
    a, b = np.load(path), np.load(out / "launched" / "scores" / path.name)
    score_gap = max(score_gap, float(np.abs(a["me"] - b["me"]).max()))
    pass_gap = max(pass_gap, float(np.abs(a["me"][0] - a["me"][-1]).max()))
weights = [load_file(str(out / k / "adapter" / "adapter_model.safetensors")) for k in ("alone", "launched")]
adapter_gap = max(float(np.abs(weights[0][n] - weights[1][n]).max()) for n in weights[0])
print(f"wall: alone {t1 - t0:.1f} s, torchrun 2 processes {t2 - t1:.1f} s")
print(f"same picks in every round: {all(same)} ({len(same)} rounds)")
print(f"tuned ME, largest gap between the two: {score_gap:.2e} nats (between MC passes of one run: {pass_gap:.2e})")
print(f"adapter weights, largest gap: {adapter_gap:.2e}")
PY
