#!/usr/bin/env bash
# Benchmark: running programs in an lpmx container (lpmx-exec, libunion
# preloaded over the image's layers) against the same Debian bookworm
# minbase tree run natively under chroot(8), under proot and under
# fakechroot, same machine, same run. lpmx runs it twice: from the image as
# one layer and from the same tree split into ten layers.
#
#   bench/exec.sh [ROUNDS]      (default 5)
#
# Workloads, each a `sh -c '...'` so that the loop runs inside:
#   launch   500 times /bin/true from a shell loop (process start-up)
#   find     find /usr > /dev/null              (readdir, lstat)
#   ls -lR   ls -lR /usr > /dev/null            (readdir, statx, readlink)
#   compile  a small C program, when the image has a compiler (bookworm
#            minbase has none: skipped, and said so)
# (lpmx 1 layer also without the system-call trap, --no-trap, for its cost)
# and: create a container from the pulled layers and run /bin/true in it;
# then launch once more, lpmx and native taking turns (3x ROUNDS rounds),
# and the floor under that figure: native with one more library preloaded,
# with libunion preloaded but inactive, and with each program started
# through lpmx-loader, each taking turns with native.
#
# Goals (issue 4): lpmx at most 1.3x native for process launch, at most
# 1.5x native for the stat-heavy runs (find, ls -lR), ten layers as fast as
# one; create + run /bin/true under 15 ms.
#
# The native reference needs chroot(2), so root: run the script as root to
# get it (every tool then runs as root; lpmx-exec, proot and fakechroot need
# no privilege and do the same work either way). As an ordinary user the
# native reference is skipped, said so, and absolute times are printed.
# A tool that cannot run a workload (its test run fails) is left out of that
# workload with the reason printed, rather than failing the script; e.g.
# Debian's proot 5.1.0 does not translate statx(2), so `ls -l` inside it
# stats host paths and fails on files the host lacks.
#
# All tools see the host's /dev, /proc and /sys (lpmx and fakechroot by
# default, proot through -b), nothing else of the host that the workloads
# touch. The store, the extracted tree and every result live in $BENCH_DIR,
# default /dev/shm (tmpfs), so that what is measured is the tools and not
# the state of a disk.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
for tool in hyperfine proot fakechroot chroot python3; do
    command -v "$tool" >/dev/null || { echo "bench: $tool is missing (scripts/install-deps)" >&2; exit 1; }
done
. bench/common.sh

# The image as one layer and the same tree as ten, from a local registry.
coproc fixture { exec "$bin/lpmx-fixture" serve debian:bookworm debian:bookworm@10; }
fixture_pid=$fixture_PID
read -r ref1 <&"${fixture[0]}"
read -r ref10 <&"${fixture[0]}"
"$bin/lpmx-pull" --quiet "$ref1" | "$bin/lpmx-unpack" --quiet > "$work/layers1.json"
"$bin/lpmx-pull" --quiet "$ref10" | "$bin/lpmx-unpack" --quiet > "$work/layers10.json"
"$bin/lpmx-mkroot" one < "$work/layers1.json" > /dev/null
"$bin/lpmx-mkroot" ten < "$work/layers10.json" > /dev/null

# The same tree extracted for the native, proot and fakechroot runs. As an
# ordinary user tar cannot make the device nodes of /dev (all tools see the
# host's /dev anyway).
mkdir "$work/rootfs"
root=$work/rootfs
if [ "$(id -u)" -eq 0 ]; then
    tar -C "$root" -xpf "$("$bin/lpmx-fixture" rootfs bookworm)"
else
    tar -C "$root" -xpf "$("$bin/lpmx-fixture" rootfs bookworm)" --exclude='./dev/*'
fi

# Tool name -> command prefix; each workload is appended to it.
names=()
declare -A prefix
skips=$work/skipped.tsv
: > "$skips"
if [ "$(id -u)" -eq 0 ]; then
    names+=(native); prefix[native]="chroot $root"
else
    printf '%s\t%s\t%s\n' '*' native "not root: chroot(2) needs root, native reference skipped" >> "$skips"
fi
names+=("lpmx 1 layer" "lpmx 10 layers" "lpmx 1 layer, no trap" proot fakechroot)
prefix["lpmx 1 layer"]="$lpmx_exec one --"
# The same without the system-call trap: what the trap costs.
prefix["lpmx 1 layer, no trap"]="$lpmx_exec --no-trap one --"
prefix["lpmx 10 layers"]="$lpmx_exec ten --"
prefix[proot]="proot -r $root -b /dev -b /proc -b /sys -w /"
prefix[fakechroot]="fakechroot chroot $root"

# Workload key -> label and the shell command run inside.
keys=(launch find ls)
declare -A label inner
label[launch]="launch 500x /bin/true"
inner[launch]='i=0; while [ $i -lt 500 ]; do /bin/true; i=$((i+1)); done'
label[find]="find /usr"
inner[find]='find /usr > /dev/null'
label[ls]="ls -lR /usr"
inner[ls]='ls -lR /usr > /dev/null'
if cc=$($lpmx_exec one -- sh -c 'command -v cc || command -v gcc || command -v clang' 2>/dev/null); then
    keys+=(compile)
    label[compile]="compile hello.c"
    inner[compile]="echo \"int main(void) { return 0; }\" | $cc -O2 -x c - -o /dev/null"
else
    printf '%s\t%s\t%s\n' compile '*' "no C compiler (cc, gcc, clang) in the image: compile workload skipped" >> "$skips"
fi

for key in "${keys[@]}"; do
    args=()
    for name in "${names[@]}"; do
        cmd="${prefix[$name]} sh -c '${inner[$key]}'"
        # A tool that cannot run this workload is left out, with its error.
        rc=0
        err=$(cd / && eval "$cmd" 2>&1 >/dev/null) || rc=$?
        if [ "$rc" -ne 0 ]; then
            printf '%s\t%s\t%s\n' "$key" "$name" "$cmd: exit $rc: $(printf '%s' "$err" | head -n 1)" >> "$skips"
            continue
        fi
        args+=(-n "$name" "$cmd")
    done
    [ ${#args[@]} -gt 0 ] || continue
    echo "bench: ${label[$key]}" >&2
    (cd / && hyperfine --style basic --runs "$rounds" --warmup 1 \
        --export-json "$work/$key.json" "${args[@]}")
done

# Create a container from the pulled layers and run /bin/true in it. Each
# run starts with no container of that name; the layers are in the store.
# Milliseconds each, so at least 20 runs.
create_runs=$(( rounds > 20 ? rounds : 20 ))
echo "bench: create + run /bin/true" >&2
hyperfine --style basic --runs "$create_runs" --warmup 1 \
    --export-json "$work/create.json" \
    --prepare "$bin/lpmx-mkroot --remove tmp >/dev/null 2>&1 || true" \
    --cleanup "$bin/lpmx-mkroot --remove tmp >/dev/null 2>&1 || true" \
    -n "create + run" "$bin/lpmx-mkroot tmp < $work/layers1.json > /dev/null && $lpmx_exec tmp -- /bin/true"

# Launch again, lpmx and native taking turns round by round
# (bench/turns.py): hyperfine runs every round of one tool before the
# next's, and this machine's speed drifts by more than the difference.
if [ "$(id -u)" -eq 0 ]; then
    turns=$(( rounds * 3 ))
    for name in "lpmx 1 layer" "lpmx 10 layers"; do
        bench/turns.py "$turns" true "launch 500x /bin/true" \
            "$name" "cd / && ${prefix[$name]} sh -c '${inner[launch]}'" \
            native "cd / && ${prefix[native]} sh -c '${inner[launch]}'"
    done
    # The floor under lpmx's launch figure, from its parts run natively
    # (no container, nothing translated): what loading one more library
    # costs any preload (the image's own 14 KiB libdl.so.2), what loading
    # libunion costs (inactive: no LPMX_ variables), and what starting
    # each program through lpmx-loader costs (the trap's way in).
    cp "$bin/libunion.so" "$bin/lpmx-loader" "$root/tmp/"
    ldso=/lib64/ld-linux-x86-64.so.2
    # The loader's request is in its environment (lpmx_union::variables).
    loader_request="export LPMX_LOADER_MODE=interp LPMX_LOADER_FILE=$ldso LPMX_LOADER_ARG0=$ldso LPMX_LOADER_ARG1=/bin/true"
    through_loader=/tmp/lpmx-loader
    declare -A floor
    floor["native, libdl.so.2 preloaded"]="${prefix[native]} sh -c 'export LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libdl.so.2; ${inner[launch]}'"
    floor["native, libunion.so preloaded, inactive"]="${prefix[native]} sh -c 'export LD_PRELOAD=/tmp/libunion.so; ${inner[launch]}'"
    floor["native, each through lpmx-loader"]="${prefix[native]} sh -c '$loader_request; ${inner[launch]//\/bin\/true/$through_loader}'"
    for name in "native, libdl.so.2 preloaded" "native, libunion.so preloaded, inactive" "native, each through lpmx-loader"; do
        bench/turns.py "$turns" true "launch 500x /bin/true" \
            "$name" "cd / && ${floor[$name]}" \
            native "cd / && ${prefix[native]} sh -c '${inner[launch]}'"
    done
fi

python3 - "$work" "${keys[@]}" <<'PY'
import json, os, sys
work, keys = sys.argv[1], sys.argv[2:]
labels = {"launch": "launch 500x /bin/true", "find": "find /usr", "ls": "ls -lR /usr", "compile": "compile hello.c"}
goals = {"launch": 1.3, "find": 1.5, "ls": 1.5}
skipped = [line.rstrip("\n").split("\t", 2) for line in open(os.path.join(work, "skipped.tsv"))]
for key in keys:
    if not os.path.exists(os.path.join(work, key + ".json")):
        print(f"{labels[key]}: no tool could run it")
        continue
    r = {x["command"]: x["median"] for x in json.load(open(os.path.join(work, key + ".json")))["results"]}
    native = r.get("native")
    def f(name):
        if name not in r:
            return "n/a"
        return f"{r[name] / native:.2f}x" if native else f"{r[name]:.3f} s"
    head = f"native {native:.3f} s" if native else "native n/a"
    print(f"{labels[key]}: {head}; lpmx 1 layer {f('lpmx 1 layer')}, 10 layers {f('lpmx 10 layers')}; "
          f"1 layer without the trap {f('lpmx 1 layer, no trap')}; proot {f('proot')}; fakechroot {f('fakechroot')}")
    one, ten = r.get("lpmx 1 layer"), r.get("lpmx 10 layers")
    parts = []
    if key in goals and native and one:
        parts.append(f"lpmx 1 layer {one / native:.2f}x native (goal <= {goals[key]:.1f}x: "
                     f"{'met' if one / native <= goals[key] else 'MISSED'})")
    if one and ten:
        parts.append(f"10 layers / 1 layer {ten / one:.2f}x (goal 1.00x, "
                     f"{'met' if ten / one <= 1.05 else 'MISSED'} within 5%)")
    if parts:
        print("  " + "; ".join(parts))
create = json.load(open(os.path.join(work, "create.json")))["results"][0]["median"] * 1000
print(f"create container + run /bin/true: {create:.1f} ms median (goal < 15 ms: {'met' if create < 15 else 'MISSED'})")
for key, name, why in skipped:
    where = "all workloads" if key == "*" else labels.get(key, key)
    print(f"skipped ({where}, {name}): {why}" if name != "*" else f"skipped: {why}")
PY
