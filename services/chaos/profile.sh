#!/usr/bin/env bash
# A CPU flame graph of `aap serve` under one aap-load measurement (docs/performance.md):
#   services/chaos/profile.sh NAME "LOG MATCH" [aap-load args...]
# runs aap-load (release build) with the args, perf-records `aap serve` (DWARF call graphs) for
# PROFILE_SECS (6) seconds once aap-load's log shows LOG MATCH, and writes NAME.folded and NAME.svg
# in the current directory. Needs perf (Debian linux-perf) and inferno (cargo install inferno).
# Example: services/chaos/profile.sh exact-hit "exact hits" --parts exact --exact-callers 64 --seconds 12
set -euo pipefail
name=$1
match=$2
shift 2
bin=${AAP_LOAD_BIN_DIR:-${CARGO_TARGET_DIR:-$HOME/.cache/aap/target}/release}
command -v perf >/dev/null || { echo "perf is missing: apt-get install linux-perf" >&2; exit 1; }
command -v inferno-flamegraph >/dev/null || { echo "inferno is missing: cargo install inferno" >&2; exit 1; }
log=$(mktemp)
NO_COLOR=1 RUST_LOG=warn,aap_load=info "$bin/aap-load" --bin-dir "$bin" "$@" >"$log" 2>&1 &
load=$!
for _ in $(seq 1 1500); do
    if sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -q "$match"; then break; fi
    kill -0 "$load" 2>/dev/null || { cat "$log" >&2; exit 1; }
    sleep 0.2
done
sleep 1
pid=$(pgrep -f "$bin/aap serve" | head -n 1)
[ -n "$pid" ] || { echo "aap serve is not running" >&2; cat "$log" >&2; exit 1; }
perf record -F 299 --call-graph dwarf,32768 -p "$pid" -o "$name.perf.data" -- sleep "${PROFILE_SECS:-6}"
wait "$load"
perf script -i "$name.perf.data" | inferno-collapse-perf >"$name.folded"
inferno-flamegraph --minwidth 1.5 --title "$name" <"$name.folded" >"$name.svg"
rm -f "$name.perf.data"
tail -n 6 "$log"
rm -f "$log"
echo "wrote $name.folded and $name.svg"
