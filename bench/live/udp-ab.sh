#!/bin/bash
# udp-ab.sh REPS SECONDS BINARY...: A/B statewall binaries on the live UDP
# flood of run.sh (64-byte datagrams from eight client addresses, as fast as
# one sender goes, through a router namespace), interleaved: every
# repetition runs each binary once, in the order given. "none" stands for
# no filter. Prints, per run, the datagrams per second that reached the
# server, what the sender managed, and the router's NFQUEUE drops so far.
#
# For comparing two builds of the reader or the engine side by side, which
# run.sh (one binary, every configuration and workload) is too coarse for.
#   MODE=stateful|stateless|shadow (default stateful)
#   PERF=1: perf record -a -g for 2 s during the first binary's first run
#           (written to ./perf.data)
# Everything runs in namespaces of its own on 198.18.0.0/15 and is removed
# on exit, failure included; every run is bounded by SECONDS.
set -euo pipefail
if [ $# -lt 3 ]; then
	sed -n '2,15p' "$0" >&2
	exit 2
fi
REPS=$1 DUR=$2
shift 2
BINS=("$@")
[ "$(id -u)" = 0 ] || { echo "udp-ab: needs root" >&2; exit 1; }
tag=swab$$
C=$tag-c R=$tag-r S=$tag-s
W=$(mktemp -d "${TMPDIR:-/tmp}/udp-ab.XXXXXX") # 0700: the control socket lives here
cleanup() {
	set +e
	pkill -f "$W/" 2>/dev/null
	sleep 0.3
	for n in $C $R $S; do ip netns del "$n" 2>/dev/null; done
	rm -rf "$W"
}
trap cleanup EXIT
cd "$(dirname "$0")/../.."
go build -o "$W/loadgen" ./bench/live/loadgen
for ns in $C $R $S; do
	ip netns add "$ns"
	ip -n "$ns" link set lo up
done
ip -n "$C" link add eth0 type veth peer name eth0 netns "$R"
ip -n "$S" link add eth0 type veth peer name eth1 netns "$R"
ip -n "$C" addr add 198.18.1.2/24 dev eth0
ip -n "$R" addr add 198.18.1.1/24 dev eth0
ip -n "$R" addr add 198.18.2.1/24 dev eth1
ip -n "$S" addr add 198.18.2.2/24 dev eth0
ip -n "$C" link set eth0 up
ip -n "$R" link set eth0 up
ip -n "$R" link set eth1 up
ip -n "$S" link set eth0 up
for i in 3 4 5 6 7 8 9; do ip -n "$C" addr add "198.18.1.$i/24" dev eth0; done
ip -n "$C" route add default via 198.18.1.1 src 198.18.1.2
ip -n "$S" route add default via 198.18.2.1
ip netns exec "$R" sysctl -qw net.ipv4.ip_forward=1
timeout 900 ip netns exec "$S" "$W/loadgen" serve -addr 198.18.2.2 -max 10m >"$W/serve.log" 2>&1 &
sleep 0.5
FROM=198.18.1.2,198.18.1.3,198.18.1.4,198.18.1.5,198.18.1.6,198.18.1.7,198.18.1.8,198.18.1.9
rx() { ip netns exec "$S" cat /sys/class/net/eth0/statistics/rx_packets; }
kv() { tr ' ' '\n' <<<"$1" | awk -F= -v k="$2" '$1 == k {print $2}'; }
perfpid=""
for rep in $(seq "$REPS"); do
	for b in "${BINS[@]}"; do
		pid=""
		if [ "$b" != none ]; then
			timeout $((DUR + 60)) "$b" run --rules bench/live/router.rules --hooks forward --mode "${MODE:-stateful}" \
				--queues 0 --netns "$R" --socket "$W/sw.sock" --log-level warn >>"$W/sw.log" 2>&1 &
			pid=$!
			for i in $(seq 100); do
				ip netns exec "$R" iptables -t mangle -S FORWARD 2>/dev/null | grep -q STATEWALL && break
				sleep 0.1
			done
		fi
		for i in $(seq 50); do ip netns exec "$C" ping -c1 -W1 198.18.2.2 >/dev/null 2>&1 && break; sleep 0.1; done
		a=$(rx)
		if [ "${PERF:-0}" = 1 ] && [ "$b" = "${BINS[0]}" ] && [ "$rep" = 1 ]; then
			(sleep 1; perf record -a -g -F 1999 -o perf.data -- sleep 2 >/dev/null 2>&1) &
			perfpid=$!
		fi
		out=$(ip netns exec "$C" timeout $((DUR + 10)) "$W/loadgen" udpblast -to 198.18.2.2:7000 -from "$FROM" -size 64 -t "${DUR}s" -n 50000000)
		sleep 0.3
		c=$(rx)
		drops=$(ip netns exec "$R" cat /proc/net/netfilter/nfnetlink_queue 2>/dev/null | awk '{d += $6 + $7} END {print d + 0}')
		echo "rep=$rep bin=$b pps=$(awk -v n=$((c - a)) -v s="$(kv "$out" seconds)" 'BEGIN {printf "%.0f", n / s}') sent=$(kv "$out" sent_pps) drops=$drops"
		if [ -n "$pid" ]; then
			kill -INT "$pid"
			wait "$pid" 2>/dev/null || true
		fi
		if [ -n "$perfpid" ]; then
			wait "$perfpid" || true
			perfpid=""
		fi
	done
done
