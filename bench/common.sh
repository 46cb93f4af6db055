# Sourced by bench/exec.sh and bench/static.sh, from the repository root:
# the release build (lpmx-loader included), a scratch store in $BENCH_DIR
# (default /dev/shm, tmpfs) removed at exit with the fixture registry
# ($fixture_pid), and $lpmx_exec, which keeps the container from binding
# the directory (/tmp or home) that holds the store.
cargo build --release -q -p lpmx-pull -p lpmx-unpack -p lpmx-mkroot -p lpmx-exec -p libunion -p lpmx-trap -p lpmx-tests --bins --lib
bin=$PWD/target/release
work=$(mktemp -d -p "${BENCH_DIR:-/dev/shm}")
trap 'kill "${fixture_pid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
export LPMX_HOME=$work/store
exec_opts=()
case $work/ in
    /tmp/*) exec_opts+=(--no-bind /tmp) ;;
    "$HOME"/*) exec_opts+=(--no-bind home) ;;
esac
lpmx_exec="$bin/lpmx-exec ${exec_opts[*]}"
