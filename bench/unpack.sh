#!/usr/bin/env bash
# Benchmark: unpack the Debian bookworm base layer (debootstrap minbase,
# ~200 MB of files, gzip at the default level as registries serve it) into
# an empty store, against `tar -xzf` of the same blob and
# `umoci unpack --rootless` of the same image, same machine, same run.
#
#   bench/unpack.sh [ROUNDS]      (default 5)
#
# Goals (issue 3): no slower than tar -xzf, at most 0.4x umoci.
# Run it as an ordinary user to measure rootless work for every tool; as
# root, tar is told not to restore owners (--no-same-owner) to match.
#
# It works in $BENCH_DIR, default /dev/shm (tmpfs), so that what is measured
# is the tools and not the state of a disk: on this machine's ext4, a tree
# unpacked soon after another was deleted takes seconds longer whatever the
# tool (ext4 skips recently deleted inodes when allocating). Set BENCH_DIR
# to a disk directory to measure there; rounds never delete between runs.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
for tool in hyperfine skopeo umoci docker-registry python3; do
    command -v "$tool" >/dev/null || { echo "bench: $tool is missing (scripts/install-deps)" >&2; exit 1; }
done
cargo build --release -q -p lpmx-pull -p lpmx-unpack -p lpmx-tests --bins
bin=$PWD/target/release
work=$(mktemp -d -p "${BENCH_DIR:-/dev/shm}")
trap 'kill "${fixture_pid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT

coproc fixture { exec "$bin/lpmx-fixture" serve debian:bookworm; }
fixture_pid=$fixture_PID
read -r ref <&"${fixture[0]}"
export LPMX_HOME=$work/store
"$bin/lpmx-pull" --quiet "$ref" > "$work/image.json"
blob=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["layers"][0]["path"])' "$work/image.json")
skopeo copy --quiet --src-tls-verify=false "docker://$ref" "oci:$work/layout:bench"
echo "bench: layer $(du -m "$blob" | cut -f1) MB gzip" >&2

# Each round starts on fresh directories; the old ones are moved aside, not
# deleted, because ext4 searches past recently deleted inodes when
# allocating (find_inode_bit/recently_deleted), which would slow whichever
# tool runs next by seconds. Everything goes at the end.
mkdir -p "$work/old"
prepare="mv $work/store/layers $work/store/tmp $work/tar $work/bundle \$(mktemp -d -p $work/old) 2>/dev/null; mkdir -p $work/store/layers $work/store/tmp $work/tar; sync"
hyperfine --style basic --runs "$rounds" --warmup 1 \
    --export-json "$work/unpack.json" \
    --prepare "$prepare" \
    -n lpmx-unpack "$bin/lpmx-unpack --quiet < $work/image.json > /dev/null" \
    -n "tar -xzf" "tar --no-same-owner -C $work/tar -xzf $blob 2>/dev/null || true" \
    -n umoci "umoci unpack --rootless --image $work/layout:bench $work/bundle > /dev/null"

python3 - "$work/unpack.json" <<'PY'
import json, sys
r = {x["command"]: x["median"] for x in json.load(open(sys.argv[1]))["results"]}
lpmx, tar, umoci = r["lpmx-unpack"], r["tar -xzf"], r["umoci"]
print(f"unpack bookworm base layer: lpmx-unpack {lpmx:.2f} s, tar -xzf {tar:.2f} s, umoci --rootless {umoci:.2f} s (medians)")
print(f"  vs tar: {lpmx / tar:.2f}x (goal <= 1.00x)   vs umoci: {lpmx / umoci:.2f}x (goal <= 0.40x)")
PY
