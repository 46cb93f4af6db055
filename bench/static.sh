#!/usr/bin/env bash
# Benchmark: static programs in an lpmx container (started by lpmx-loader
# with libunion linked in, kept inside by the system-call trap alone)
# against the same Debian bookworm tree (minbase + busybox-static) run
# natively under chroot(8) and under proot, same machine, same run.
#
#   bench/static.sh [ROUNDS]      (default 5)
#
# Workloads, each run by busybox's own shell (a static program):
#   find     busybox find /usr > /dev/null           (getdents64, lstat)
#   ls -lR   busybox ls -lR /usr > /dev/null         (getdents64, lstat, readlink)
#   launch   200 times a static /bin/true-like program (gcc -static) from
#            the static shell (exec through the loader, libunion linked in)
# Goals (issue 17): find and ls -lR at most 1.5x native and at most 0.3x
# proot; launch at most 1.5x native. (Dynamic programs: bench/exec.sh.)
#
# The native reference needs chroot(2), so root: as an ordinary user it is
# skipped and absolute times are printed. Everything lives in $BENCH_DIR,
# default /dev/shm (tmpfs).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
for tool in hyperfine proot chroot gcc python3; do
    command -v "$tool" >/dev/null || { echo "bench: $tool is missing (scripts/install-deps)" >&2; exit 1; }
done
. bench/common.sh

tar=$("$bin/lpmx-fixture" rootfs bookworm busybox-static)
coproc fixture { exec "$bin/lpmx-fixture" serve "rootfs:$tar"; }
fixture_pid=$fixture_PID
read -r ref <&"${fixture[0]}"
"$bin/lpmx-pull" --quiet "$ref" | "$bin/lpmx-unpack" --quiet | "$bin/lpmx-mkroot" bb > /dev/null

root=$work/rootfs
mkdir "$root"
if [ "$(id -u)" -eq 0 ]; then
    tar -C "$root" -xpf "$tar"
else
    tar -C "$root" -xpf "$tar" --exclude='./dev/*'
fi
# The static program launched: the same file in the container (through
# its writable layer) and in the tree.
printf 'int main(void) { return 0; }\n' > "$work/true.c"
gcc -O2 -static -o "$work/static-true" "$work/true.c"
cp "$work/static-true" "$root/usr/local/bin/static-true"
$lpmx_exec bb -- /bin/busybox cp "$work/static-true" /usr/local/bin/static-true

names=()
declare -A prefix
if [ "$(id -u)" -eq 0 ]; then
    names+=(native); prefix[native]="chroot $root"
else
    echo "bench: not root: chroot(2) needs root, native reference skipped" >&2
fi
names+=(lpmx proot)
prefix[lpmx]="$lpmx_exec bb --"
prefix[proot]="proot -r $root -b /dev -b /proc -b /sys -w /"

keys=(find ls launch)
declare -A inner
inner[find]='busybox find /usr > /dev/null'
inner[ls]='busybox ls -lR /usr > /dev/null'
inner[launch]='i=0; while [ $i -lt 200 ]; do /usr/local/bin/static-true; i=$((i+1)); done'
for key in "${keys[@]}"; do
    args=()
    for name in "${names[@]}"; do
        cmd="${prefix[$name]} /bin/busybox sh -c '${inner[$key]}'"
        (cd / && eval "$cmd") || { echo "bench: $name cannot run $key: $cmd" >&2; exit 1; }
        args+=(-n "$name" "$cmd")
    done
    echo "bench: $key" >&2
    (cd / && hyperfine --style basic --runs "$rounds" --warmup 1 \
        --export-json "$work/$key.json" "${args[@]}")
done

python3 - "$work" "${keys[@]}" <<'PY'
import json, os, sys
work, keys = sys.argv[1], sys.argv[2:]
labels = {"find": "busybox find /usr", "ls": "busybox ls -lR /usr", "launch": "launch 200x static true from busybox sh"}
for key in keys:
    r = {x["command"]: x["median"] for x in json.load(open(os.path.join(work, key + ".json")))["results"]}
    native, lpmx, proot = r.get("native"), r["lpmx"], r["proot"]
    line = f"{labels[key]}: lpmx {lpmx:.3f} s"
    if native:
        goal = 1.5
        line += f", {lpmx / native:.2f}x native (goal <= {goal}x: {'met' if lpmx / native <= goal else 'MISSED'})"
    line += f", {lpmx / proot:.2f}x proot"
    if key != "launch":
        line += f" (goal <= 0.3x: {'met' if lpmx / proot <= 0.3 else 'MISSED'})"
    print(line)
PY
