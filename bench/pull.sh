#!/usr/bin/env bash
# Benchmark: lpmx-pull versus `skopeo copy docker://... oci:...` of the same
# ~100 MB, five-layer image from a local registry into an empty store /
# directory, same machine, same run. Prints the ratio of medians.
#
#   bench/pull.sh [ROUNDS]      (default 7)
#
# Goal (issue 2): lpmx-pull at most 0.8x skopeo's wall time.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-7}
for tool in hyperfine skopeo docker-registry python3; do
    command -v "$tool" >/dev/null || { echo "bench: $tool is missing (scripts/install-deps)" >&2; exit 1; }
done
cargo build --release -q -p lpmx-pull -p lpmx-tests --bins
bin=$PWD/target/release
work=$(mktemp -d)
trap 'kill "${fixture_pid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT

coproc fixture { exec "$bin/lpmx-fixture" serve bench; }
fixture_pid=$fixture_PID
read -r ref <&"${fixture[0]}"
echo "bench: image $ref" >&2

hyperfine --style basic --runs "$rounds" --warmup 1 \
    --prepare "rm -rf $work/store $work/oci" \
    --export-json "$work/pull.json" \
    -n lpmx-pull "LPMX_HOME=$work/store $bin/lpmx-pull --quiet $ref > /dev/null" \
    -n skopeo "skopeo copy --quiet --src-tls-verify=false docker://$ref oci:$work/oci:bench"

python3 - "$work/pull.json" <<'PY'
import json, sys
results = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
lpmx, skopeo = results["lpmx-pull"]["median"], results["skopeo"]["median"]
print(f"pull ~100 MB, 5 layers: lpmx-pull {lpmx:.3f} s, skopeo {skopeo:.3f} s (medians), ratio {lpmx / skopeo:.2f}x (goal <= 0.80x)")
PY
