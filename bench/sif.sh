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
# Goal (issue 8): no slower than unsquashfs.
# Both tools run as an ordinary user (as root, the script drops to nobody
# for both), so neither restores owners nor makes device nodes.
# It works in $BENCH_DIR, default /dev/shm (tmpfs), as bench/unpack.sh
# does, and for the same reason.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
for tool in unsquashfs mksquashfs python3; do
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
# The two tools take turns, round by round (which goes first alternates):
# on a shared machine the speed drifts over a minute, and hyperfine's
# all-of-one-then-all-of-the-other put that drift into the ratio (one run
# measured 0.87x, the next 1.20x). Each round's ratio is of a pair run
# seconds apart.
lpmx_cmd="${as_user[*]} env LPMX_HOME=$work/store $bin/lpmx-unpack --quiet $work/debian.sif > /dev/null"
unsquashfs_cmd="${as_user[*]} unsquashfs -q -n -d $work/unsquashfs $work/debian.sqfs > /dev/null 2>&1 || true"
python3 - "$rounds" "$prepare" "$lpmx_cmd" "$unsquashfs_cmd" <<'PY'
import statistics, subprocess, sys, time
rounds = int(sys.argv[1])
prepare, commands = sys.argv[2], {"lpmx-unpack": sys.argv[3], "unsquashfs": sys.argv[4]}

def timed(name):
    subprocess.run(prepare, shell=True, check=True)
    start = time.perf_counter()
    subprocess.run(commands[name], shell=True, check=True)
    return time.perf_counter() - start

for name in commands:  # warm-up
    timed(name)
times = {name: [] for name in commands}
ratios = []
for i in range(rounds):
    order = ["lpmx-unpack", "unsquashfs"] if i % 2 == 0 else ["unsquashfs", "lpmx-unpack"]
    got = {name: timed(name) for name in order}
    for name, seconds in got.items():
        times[name].append(seconds)
    ratios.append(got["lpmx-unpack"] / got["unsquashfs"])
lpmx, unsq = (statistics.median(times[n]) for n in commands)
q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
print(f"import Debian bookworm SIF, {rounds} rounds taking turns: "
      f"lpmx-unpack {lpmx:.2f} s, unsquashfs -d {unsq:.2f} s (medians)")
print(f"  vs unsquashfs: {lpmx / unsq:.2f}x; round by round: median {statistics.median(ratios):.2f}x, "
      f"middle half {q[0]:.2f}x-{q[2]:.2f}x (goal <= 1.00x)")
PY
