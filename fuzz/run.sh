#!/usr/bin/env bash
# Fuzzes lpmx-unpack's layer extractor with cargo fuzz (libFuzzer).
#
#   fuzz/run.sh [SECONDS]     (default 60)
#
# cargo fuzz needs nightly features; RUSTC_BOOTSTRAP lets the stable
# toolchain provide them. A seed corpus of small valid and malicious tars
# is written to fuzz/corpus/extract on the first run.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-60}
export PATH="$HOME/.cargo/bin:$PATH"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
mkdir -p corpus/extract
if [ -z "$(ls -A corpus/extract)" ]; then
    seed=$(mktemp -d)
    mkdir -p "$seed/d/sub" && echo hello > "$seed/d/sub/f" && ln -s /etc "$seed/d/link" && ln "$seed/d/sub/f" "$seed/d/hard"
    tar -C "$seed" -cf corpus/extract/plain.tar d
    tar -C "$seed" --format=pax -cf corpus/extract/pax.tar d
    tar -C "$seed" --format=gnu -cf corpus/extract/gnu.tar d
    rm -rf "$seed"
fi
RUSTC_BOOTSTRAP=1 cargo fuzz run extract corpus/extract -- -max_total_time="$seconds" -rss_limit_mb=4096
