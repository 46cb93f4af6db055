#!/usr/bin/env bash
# Benchmark: move a container whose writable layer holds ~200 MB (a copy
# of the bookworm image's /usr plus one large file) to a second store that
# has the image already, `lpmx-pack --layers=none | lpmx-unpack`, against
# `tar -C src -c . | tar -C dst -x` of the same writable layer, same run.
#
#   bench/pack.sh [ROUNDS]      (default 5)
#
# Goal (issue 7): no slower than the tar pipe. lpmx-pack also hashes every
# byte (XXH3-128) and lpmx-unpack checks it, stages the layer and renames it
# into place. Works in $BENCH_DIR, default /dev/shm, as bench/unpack.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
for tool in docker-registry python3; do
    command -v "$tool" >/dev/null || { echo "bench: $tool is missing (scripts/install-deps)" >&2; exit 1; }
done
cargo build --release -q -p lpmx-pull -p lpmx-unpack -p lpmx-mkroot -p lpmx-pack -p lpmx-tests --bins
bin=$PWD/target/release
work=$(mktemp -d -p "${BENCH_DIR:-/dev/shm}")
trap 'kill "${fixture_pid:-}" 2>/dev/null || true; chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT

coproc fixture { exec "$bin/lpmx-fixture" serve debian:bookworm; }
fixture_pid=$fixture_PID
read -r ref <&"${fixture[0]}"
src=$work/src dst=$work/dst
for store in "$src" "$dst"; do
    LPMX_HOME=$store "$bin/lpmx-pull" --quiet "$ref" | LPMX_HOME=$store "$bin/lpmx-unpack" --quiet > "$work/layers.json"
done
LPMX_HOME=$src "$bin/lpmx-mkroot" dev < "$work/layers.json" > /dev/null
upper=$src/containers/dev/upper
layer=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["layers"][0]["path"])' "$work/layers.json")
cp -a "$layer/root/usr" "$upper/usr"
used=$(du -sm "$upper" | cut -f1)
head -c "$(( (200 - used > 10 ? 200 - used : 10) * 1024 * 1024 ))" /dev/urandom > "$upper/big"
echo "bench: writable layer $(du -sm "$upper" | cut -f1) MB in $(find "$upper" | wc -l) entries" >&2

mkdir -p "$work/old"
# Between rounds both targets are moved aside, not deleted (as in
# bench/unpack.sh): deleting 200 MB just before a round slows whichever
# tool runs next.
prepare="mv $dst/containers/copy $work/tar \$(mktemp -d -p $work/old) 2>/dev/null; mkdir -p $work/tar; sync"
# The two take turns, round by round (bench/turns.py): with hyperfine's
# all-of-one-then-all-of-the-other, this machine's drift went into the
# ratio (three runs of one tree: 1.09x, 1.02x, 1.80x).
bench/turns.py "$rounds" "$prepare" "move a 200 MB writable layer" \
    "lpmx-pack | lpmx-unpack" "LPMX_HOME=$src $bin/lpmx-pack --layers=none dev | LPMX_HOME=$dst $bin/lpmx-unpack --quiet --name copy > /dev/null" \
    "tar | tar" "tar -C $upper -c . | tar --no-same-owner -C $work/tar -x"
echo "  goal (issue 7): <= 1.00x"
