#!/usr/bin/env bash
# idle.sh BIN [SECONDS]: the CPU a statewall daemon uses with nothing
# queued, as a share of one core: `statewall run` on the input hook of a
# fresh, empty network namespace (no traffic: only its loopback exists),
# utime+stime from /proc over SECONDS (default 30). Root.
set -euo pipefail
bin=$1; secs=${2:-30}
ns=sw-idle-$$
dir=$(mktemp -d)
pid=
cleanup() {
	[ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
	ip netns del "$ns" 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT
ip netns add "$ns"
ip -n "$ns" link set lo up
chmod 755 "$dir"
printf 'pass all\n' >"$dir/r.rules"
"$bin" run --netns "$ns" --rules "$dir/r.rules" --socket "$dir/s.sock" --hooks input >"$dir/log" 2>&1 &
pid=$!
sleep 2
t0=$(awk '{print $14+$15}' /proc/$pid/stat)
sleep "$secs"
t1=$(awk '{print $14+$15}' /proc/$pid/stat)
hz=$(getconf CLK_TCK)
awk -v b="$bin" -v d=$((t1 - t0)) -v hz="$hz" -v s="$secs" \
	'BEGIN { printf "%s: %d ticks (1/%d s) in %d s = %.3f%% of a core\n", b, d, hz, s, d * 100 / hz / s }'
