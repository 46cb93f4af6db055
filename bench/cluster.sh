#!/usr/bin/env bash
# Benchmark: lpmx under Slurm and MPI (issue 18), on a real Slurm of two
# nodes on this machine (lpmx-fixture slurm: Debian's slurmctld and slurmd,
# each node with its own host name), same machine, same run.
#
#   bench/cluster.sh [ROUNDS]      (default 5)
#
# Workloads:
#   srun 16       srun -O -n 16 lpmx-exec c -- /bin/true, against
#                 srun -O -n 16 chroot ROOT /bin/true (the image's tree)
#   first runs    16 runs of /bin/true at once in a container just made
#                 (page cache dropped first where the kernel lets us),
#                 against one run in one just made; the same for native
#                 chroot, for what the machine's cores allow
#   ping-pong     MPI between two ranks on two nodes (srun --mpi=pmix):
#                 latency of 8-byte messages, bandwidth of 4 MiB ones. lpmx:
#                 the image's Open MPI and the program built inside the
#                 container; native: the host's Open MPI and the same source
#                 built on the host (host and image are both Debian
#                 bookworm, so this is the same Open MPI, outside any
#                 container). Median of ROUNDS runs of 1000 round trips.
#
# Goals (issue 18): latency <= 1.05x native, bandwidth >= 0.98x native;
# srun 16 <= 1.5x native; 16 first runs <= 2x one.
#
# Root is needed: Slurm's daemons run as root (as at a site) and chroot(2)
# needs it. The container is made from a local registry (lpmx-fixture) and
# gets Open MPI and gcc with apt-get under --root, so the Debian archive
# must be reachable.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
[ "$(id -u)" -eq 0 ] || { echo "bench: run as root (Slurm's daemons, chroot)" >&2; exit 1; }
for tool in hyperfine srun slurmd slurmctld munged mpicc python3; do
    command -v "$tool" >/dev/null || { echo "bench: $tool is missing (scripts/install-deps)" >&2; exit 1; }
done
cargo build --release -q -p lpmx-pull -p lpmx-unpack -p lpmx-mkroot -p lpmx-exec -p libunion -p lpmx-tests --bins --lib
bin=$PWD/target/release
work=$(mktemp -d -p "${BENCH_DIR:-/dev/shm}")
cleanup() {
    # Closing the cluster's stdin stops it.
    [ -z "${slurm_in:-}" ] || exec {slurm_in}>&-
    kill "${fixture_pid:-}" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
export LPMX_HOME=$work/store

coproc fixture { exec "$bin/lpmx-fixture" serve debian:bookworm; }
fixture_pid=$fixture_PID
read -r ref <&"${fixture[0]}"
"$bin/lpmx-pull" --quiet "$ref" | "$bin/lpmx-unpack" --quiet > "$work/layers.json"
"$bin/lpmx-mkroot" c < "$work/layers.json" > /dev/null
echo "bench: installing Open MPI and gcc in the container (apt-get under --root)" >&2
"$bin/lpmx-exec" --root c -- sh -c 'apt-get update -q >/dev/null &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o Dpkg::Use-Pty=0 \
    --no-install-recommends openmpi-bin libopenmpi-dev gcc libc6-dev >/dev/null'
cp tests/c/mpi_pingpong.c "$work/"
"$bin/lpmx-exec" c -- mpicc -O2 -o /opt/pingpong "$work/mpi_pingpong.c"
mpicc -O2 -o "$work/pingpong-native" "$work/mpi_pingpong.c"

mkdir "$work/rootfs"
root=$work/rootfs
tar -C "$root" -xpf "$("$bin/lpmx-fixture" rootfs bookworm)"

# The cluster runs until its stdin closes.
mkfifo "$work/slurm.in"
"$bin/lpmx-fixture" slurm 2 < "$work/slurm.in" > "$work/slurm.out" &
exec {slurm_in}> "$work/slurm.in"
for _ in $(seq 300); do [ -s "$work/slurm.out" ] && break; sleep 0.2; done
SLURM_CONF=$(head -n1 "$work/slurm.out")
[ -f "$SLURM_CONF" ] || { echo "bench: the Slurm cluster did not start" >&2; exit 1; }
export SLURM_CONF

echo "bench: srun -n 16" >&2
(cd / && hyperfine --style basic --runs "$rounds" --warmup 1 --export-json "$work/srun.json" \
    -n native "srun -O -N2 -n16 chroot $root /bin/true" \
    -n lpmx "srun -O -N2 -n16 $bin/lpmx-exec c -- /bin/true")

echo "bench: 16 first runs at once" >&2
if ! (echo 3 > /proc/sys/vm/drop_caches) 2>/dev/null; then
    echo "bench: cannot drop the page cache here (read-only /proc/sys): warm runs" >&2
fi
# Each run in a container just made, after the page cache is dropped.
cat > "$work/prepare.sh" <<EOF
"$bin/lpmx-mkroot" --remove f >/dev/null 2>&1 || true
"$bin/lpmx-mkroot" f < "$work/layers.json" > /dev/null
sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
EOF
(cd / && hyperfine --style basic --runs "$rounds" --export-json "$work/first.json" \
    --prepare "sh $work/prepare.sh" \
    -n "one run" "$bin/lpmx-exec f -- /bin/true" \
    -n "16 at once" "for i in \$(seq 16); do $bin/lpmx-exec f -- /bin/true & done; wait" \
    -n "native one run" "chroot $root /bin/true" \
    -n "native 16 at once" "for i in \$(seq 16); do chroot $root /bin/true & done; wait")

echo "bench: MPI ping-pong, 2 ranks on 2 nodes" >&2
: > "$work/pingpong.tsv"
for _ in $(seq "$rounds"); do
    # Taking turns, so that both see the same machine.
    n=$(srun -N2 -n2 --mpi=pmix "$work/pingpong-native" 1000)
    l=$(srun -N2 -n2 --mpi=pmix "$bin/lpmx-exec" c -- /opt/pingpong 1000)
    printf '%s\t%s\n' "$n" "$l" >> "$work/pingpong.tsv"
done

python3 - "$work" <<'EOF'
import json, re, statistics, sys
work = sys.argv[1]
def means(name):
    results = json.load(open(f"{work}/{name}.json"))["results"]
    return {r["command"]: statistics.median(r["times"]) for r in results}
srun = means("srun")
print(f"srun -n 16 /bin/true: native {srun['native']*1e3:.0f} ms, lpmx {srun['lpmx']*1e3:.0f} ms: {srun['lpmx']/srun['native']:.2f}x native (goal <= 1.5x)")
first = means("first")
print(f"first runs: one {first['one run']*1e3:.0f} ms, 16 at once {first['16 at once']*1e3:.0f} ms: {first['16 at once']/first['one run']:.2f}x one (goal <= 2x); "
      f"native chroot: one {first['native one run']*1e3:.0f} ms, 16 at once {first['native 16 at once']*1e3:.0f} ms: {first['native 16 at once']/first['native one run']:.2f}x one")
native_lat, native_bw, lpmx_lat, lpmx_bw = [], [], [], []
for line in open(f"{work}/pingpong.tsv"):
    n, l = line.rstrip("\n").split("\t")
    for text, lat, bw in ((n, native_lat, native_bw), (l, lpmx_lat, lpmx_bw)):
        m = re.search(r"latency_us=([\d.]+) bandwidth_mbs=([\d.]+)", text)
        lat.append(float(m.group(1))); bw.append(float(m.group(2)))
nl, nb = statistics.median(native_lat), statistics.median(native_bw)
ll, lb = statistics.median(lpmx_lat), statistics.median(lpmx_bw)
print(f"MPI ping-pong 8 B latency: native {nl:.2f} us, lpmx {ll:.2f} us: {ll/nl:.2f}x native (goal <= 1.05x)")
print(f"MPI ping-pong 4 MiB bandwidth: native {nb:.0f} MB/s, lpmx {lb:.0f} MB/s: {lb/nb:.2f}x native (goal >= 0.98x)")
EOF
