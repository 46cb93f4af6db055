#!/usr/bin/env python3
"""Times two commands taking turns, round by round, and compares them.

    turns.py ROUNDS PREPARE TITLE NAME CMD PEER_NAME PEER_CMD

PREPARE runs before each command, untimed. Which command goes first
alternates. On a shared machine the speed drifts within a minute; run all
rounds of one command before the other's (as hyperfine does) and the drift
goes into the ratio. Prints both medians, their ratio, and the median and
middle half of each round's own ratio (two runs seconds apart).
"""
import statistics
import subprocess
import sys
import time

rounds = int(sys.argv[1])
prepare, title = sys.argv[2], sys.argv[3]
(ours, ours_cmd), (peer, peer_cmd) = (sys.argv[4], sys.argv[5]), (sys.argv[6], sys.argv[7])
commands = {ours: ours_cmd, peer: peer_cmd}


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
    order = [ours, peer] if i % 2 == 0 else [peer, ours]
    got = {name: timed(name) for name in order}
    for name, seconds in got.items():
        times[name].append(seconds)
    ratios.append(got[ours] / got[peer])
a, b = statistics.median(times[ours]), statistics.median(times[peer])
q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
print(f"{title}, {rounds} rounds taking turns: {ours} {a:.2f} s, {peer} {b:.2f} s (medians)")
print(f"  ratio: {a / b:.2f}x; round by round: median {statistics.median(ratios):.2f}x, "
      f"middle half {q[0]:.2f}x-{q[2]:.2f}x")
