#!/usr/bin/env bash
# Benchmark: import a Singularity image of Debian bookworm (a SIF holding
# the debootstrap minbase tree, ~200 MB of files, in a gzip squashfs as
# mksquashfs makes by default) into an empty store with lpmx-unpack,
# against `unsquashfs -d DIR` of the same squashfs, same machine, same run.
# lpmx-unpack does more: it also writes the layer's tar blob into the
# store, hashes it and builds the image's index.
#
#   bench/sif.sh [ROUNDS]      (default 5)
#
# Goal (issue 8): no slower than unsquashfs. Then the same SIF imported
# again into the store that has it (issue 18): well under a second.
# Both tools run as an ordinary user (as root, the script drops to nobody
# for both), so neither restores owners nor makes device nodes.
# It works in $BENCH_DIR, default /dev/shm (tmpfs), as bench/unpack.sh
# does, and for the same reason.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
for tool in unsquashfs mksquashfs python3 hyperfine; do
    command -v "$tool" >/dev/null || { echo "bench: $tool is missing (scripts/install-deps)" >&2; exit 1; }
done
cargo build --release -q -p lpmx-unpack -p lpmx-tests --bins
bin=$PWD/target/release
work=$(mktemp -d -p "${BENCH_DIR:-/dev/shm}")
trap 'rm -rf "$work"' EXIT

as_user=()
if [ "$(id -u)" -eq 0 ]; then
    as_user=(setpriv --reuid=65534 --regid=65534 --clear-groups --)
    chown 65534:65534 "$work"
fi
cp "$("$bin/lpmx-fixture" squashfs bookworm)" "$work/debian.sqfs"
"$bin/lpmx-fixture" sif bookworm "$work/debian.sif"
chmod 644 "$work/debian.sqfs" "$work/debian.sif"
echo "bench: SIF $(du -m "$work/debian.sif" | cut -f1) MB" >&2

# Fresh directories each round. On tmpfs they are deleted: trees moved
# aside (as bench/unpack.sh does against ext4's inode allocation) would
# fill memory and slow whichever tool runs later. On a disk (BENCH_DIR),
# they are moved aside and go at the end.
"${as_user[@]}" mkdir -p "$work/old"
if [ "$(stat -f -c %T "$work")" = tmpfs ]; then
    prepare="${as_user[*]} rm -rf $work/store $work/unsquashfs"
else
    prepare="${as_user[*]} sh -c 'mv $work/store $work/unsquashfs \$(mktemp -d -p $work/old) 2>/dev/null; sync; true'"
fi
# The two tools take turns, round by round (bench/turns.py): with
# hyperfine's all-of-one-then-all-of-the-other, this machine's drift went
# into the ratio (one run measured 0.87x, the next 1.20x).
lpmx_cmd="${as_user[*]} env LPMX_HOME=$work/store $bin/lpmx-unpack --quiet $work/debian.sif > /dev/null"
# As a user, unsquashfs exits non-zero for the device nodes it cannot
# make; that it unpacked the tree is checked instead.
unsquashfs_cmd="${as_user[*]} unsquashfs -q -n -d $work/unsquashfs $work/debian.sqfs > /dev/null 2>&1; test -s $work/unsquashfs/etc/debian_version"
bench/turns.py "$rounds" "$prepare" "import Debian bookworm SIF" \
    lpmx-unpack "$lpmx_cmd" "unsquashfs -d" "$unsquashfs_cmd"
echo "  goal (issue 8): <= 1.00x"

# Importing the same SIF again into the store that has it (issue 18: batch
# scripts import on every node of every job): recognised by the file's
# identity, against the first import into an empty store.
"${as_user[@]}" env LPMX_HOME="$work/store" "$bin/lpmx-unpack" --quiet "$work/debian.sif" > /dev/null
hyperfine --style basic --runs "$(( rounds > 10 ? rounds : 10 ))" --warmup 1 \
    -n "import again" "$lpmx_cmd"
echo "  goal (issue 18): well under a second"
