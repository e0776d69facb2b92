#!/usr/bin/env bash
# bench/live/run.sh: the live benchmark (`make bench-live`; bench/README.md,
# section "Live"). As root, it builds three namespaces
#
#   client 198.18.1.2/24 eth0 -- eth0 198.18.1.1 [router] 198.18.2.1 eth1 -- eth0 198.18.2.2/24 server
#
# (veth pairs, 198.18.0.0/15 only) and measures, on the router's forward
# path, configurations side by side: no filter, the kernel (nftables,
# bench/live/router.nft), a minimal accept-all NFQUEUE reader
# (bench/live/nfqaccept), and `statewall run --hooks forward` in stateless,
# stateful and shadow modes with one queue and with two
# (bench/live/router.rules). Each repetition runs every configuration once,
# in an order rotated from one repetition to the next, and each
# configuration runs every workload: UDP 64-byte packets/s, TCP bulk
# (iperf3), TCP connections/s, TCP round-trip latency unloaded, and the
# same round-trip latency again while a paced UDP stream (LOAD_PPS 64-byte
# datagrams/s) crosses the router. Everything is
# bounded in count and time; the namespaces (and with them every iptables
# and nft rule) and every process are removed on exit, failure included.
#
# Environment: REPS (3), DUR seconds per measurement (3), OFFLOADS (on|off,
# default on), LOAD_PPS (50000: the background stream of the loaded-latency
# measurement, below what every configuration forwarded in the UDP test),
# CONFIGS (space-separated subset; sw-MODE[-offload]-qN[-flow|addr|cpu]
# [-spinMICROSECONDS][-sync[-deferMILLISECONDS]] for statewall (-sync: with state sync to a
# peer, a second statewall in a fourth namespace on a link of its own,
# 198.18.3.1 <-> 198.18.3.2; the router's sync lag is recorded), alt-sw-... for the same with STATEWALL_ALT, another
# binary, side by side), OUT (bench/results), STATEWALL (a built binary;
# default: build ./cmd/statewall), KEEP=1 keeps the scratch directory
# (logs, raw measurements), ALT_LABEL (what STATEWALL_ALT is, for the
# report).
set -euo pipefail

REPS=${REPS:-3}
DUR=${DUR:-3}
OFFLOADS=${OFFLOADS:-on}
OUT=${OUT:-bench/results}
LOAD_PPS=${LOAD_PPS:-50000}
case $LOAD_PPS in '' | *[!0-9]*) echo "bench-live: LOAD_PPS must be a number of packets/s" >&2; exit 1 ;; esac
ALL_CONFIGS="nofilter nft nfqaccept sw-stateless-q1 sw-stateful-q1 sw-shadow-q1 sw-stateless-q2 sw-stateful-q2 sw-shadow-q2 sw-stateful-offload-q1 sw-shadow-offload-q1 sw-stateful-offload-q2 sw-stateful-q2-addr"
CONFIGS=${CONFIGS:-$ALL_CONFIGS}
SRV=198.18.2.2
# Eight client addresses, 198.18.1.2-9: --queue-balance (sw-...-addr)
# hashes addresses and protocol (with a seed drawn at boot), not ports, so
# UDP and the connection-rate test go round them to give a second queue
# something to do; statewall's default flow hash spreads by ports too
# (TCP bulk and RTT are one flow each, from 198.18.1.2).
FROM=198.18.1.2,198.18.1.3,198.18.1.4,198.18.1.5,198.18.1.6,198.18.1.7,198.18.1.8,198.18.1.9

if [ "$(id -u)" != 0 ]; then
	echo "bench-live needs root (network namespaces, iptables, NFQUEUE)" >&2
	exit 1
fi
for t in ip iptables nft iperf3 jq ethtool go timeout; do
	command -v "$t" >/dev/null || { echo "bench-live: $t is missing (scripts/install-deps.sh)" >&2; exit 1; }
done

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
work=$(mktemp -d "${TMPDIR:-/tmp}/statewall-live.XXXXXX")
chmod 0755 "$work"
tag="swl$$"
C="$tag-client" R="$tag-router" S="$tag-server" P="$tag-peer"
NSES=()
PIDS=()

log() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }

# stop PID: SIGTERM, then SIGKILL after 3 s.
# Background programs run as `timeout N prog` (or `timeout N ip netns exec
# NS prog`, which execs prog): PID is timeout's, which passes SIGTERM on to
# its child; the child is killed by its own pid too if it outlives it.
stop() {
	local pid=$1 i kids
	kids=$(ps -o pid= --ppid "$pid" 2>/dev/null || true)
	kill -TERM "$pid" 2>/dev/null || return 0
	for i in $(seq 30); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	# shellcheck disable=SC2086 # kids: a list of pids
	kill -KILL "$pid" $kids 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

cleanup() {
	local rc=$? pid ns
	trap - EXIT INT TERM
	for pid in "${PIDS[@]}"; do stop "$pid"; done
	for ns in "${NSES[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
	if [ -n "${KEEP:-}" ]; then log "kept $work"; else rm -rf "$work"; fi
	[ "$rc" = 0 ] || log "bench-live failed (exit $rc); namespaces and processes removed"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# ---- build ---------------------------------------------------------------
log "building statewall, nfqaccept, loadgen, report into $work"
if [ -n "${STATEWALL:-}" ]; then
	cp "$STATEWALL" "$work/statewall"
else
	go build -o "$work/statewall" ./cmd/statewall
fi
[ -z "${STATEWALL_ALT:-}" ] || cp "$STATEWALL_ALT" "$work/statewall-alt"
go build -o "$work/nfqaccept" ./bench/live/nfqaccept
go build -o "$work/loadgen" ./bench/live/loadgen
go build -o "$work/report" ./bench/live/report
SW="$work/statewall"
build_info="git $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
changed=$(git status --porcelain -- cmd pkg go.mod 2>/dev/null | awk '{print $2}' | xargs -r -n1 dirname | sort -u | tr '\n' ' ')
[ -z "$changed" ] || build_info="$build_info, with uncommitted changes in: ${changed% }"
[ -z "${STATEWALL:-}" ] || build_info="$STATEWALL (given)"

# ---- topology ------------------------------------------------------------
log "namespaces $C $R $S, offloads $OFFLOADS"
for ns in "$C" "$R" "$S" "$P"; do
	ip netns add "$ns"
	NSES+=("$ns")
	ip -n "$ns" link set lo up
done
ip -n "$C" link add eth0 type veth peer name eth0 netns "$R"
ip -n "$S" link add eth0 type veth peer name eth1 netns "$R"
ip -n "$P" link add eth0 type veth peer name eth2 netns "$R"
while read -r ns dev addr; do
	ip -n "$ns" addr add "$addr" dev "$dev"
	ip -n "$ns" link set "$dev" up
	if [ "$OFFLOADS" = off ]; then
		nsx "$ns" ethtool -K "$dev" tx off rx off tso off gso off gro off >/dev/null 2>&1 || true
	fi
done <<EOT
$C eth0 198.18.1.2/24
$R eth0 198.18.1.1/24
$R eth1 198.18.2.1/24
$S eth0 198.18.2.2/24
$R eth2 198.18.3.1/24
$P eth0 198.18.3.2/24
EOT
for i in 3 4 5 6 7 8 9; do ip -n "$C" addr add "198.18.1.$i/24" dev eth0; done
ip -n "$C" route add default via 198.18.1.1 src 198.18.1.2
ip -n "$S" route add default via 198.18.2.1
nsx "$R" sysctl -qw net.ipv4.ip_forward=1
nsx "$C" sysctl -qw net.ipv4.ip_local_port_range="10000 65000"
offload_state=$(nsx "$R" ethtool -k eth0 | awk '/^(tcp-segmentation-offload|generic-segmentation-offload|generic-receive-offload|tx-checksumming):/ {printf "%s%s %s", sep, $1, $2; sep=", "}')

ping_ok() { nsx "$C" ping -n -c 1 -W 1 "$SRV" >/dev/null 2>&1; }
wait_ping() {
	local i
	for i in $(seq 50); do ping_ok && return 0; sleep 0.1; done
	return 1
}
wait_ping || { log "the topology does not route"; exit 1; }

# Servers, in the server namespace, for the whole run.
timeout 1800 ip netns exec "$S" "$work/loadgen" serve -addr "$SRV" -max 25m >"$work/serve.log" 2>&1 &
PIDS+=($!)
timeout 1800 ip netns exec "$S" iperf3 -s -B "$SRV" -p 5201 >"$work/iperf3-server.log" 2>&1 &
PIDS+=($!)
for i in $(seq 50); do
	grep -q ready "$work/serve.log" && nsx "$S" ss -Hltn | grep -q ':5201' && break
	sleep 0.1
done

# State sync's keys, for the -sync configurations.
"$SW" ha keygen --dir "$work/keys" --nodes router,peer >/dev/null

# ---- configurations ------------------------------------------------------
cfg_pid=""
peer_pid=""
queue_drops() {
	nsx "$R" cat /proc/net/netfilter/nfnetlink_queue 2>/dev/null | awk '{d += $6 + $7} END {print d + 0}'
}

start_cfg() {
	local cfg=$1 mode q i
	cfg_pid=""
	case $cfg in
	nofilter) ;;
	nft) nsx "$R" nft -f bench/live/router.nft ;;
	nfqaccept)
		timeout 600 ip netns exec "$R" "$work/nfqaccept" -queue 0 -max 5m >"$work/nfqaccept.log" 2>&1 &
		cfg_pid=$!
		for i in $(seq 100); do grep -qs ready "$work/nfqaccept.log" && break; sleep 0.05; done
		grep -q ready "$work/nfqaccept.log" || { log "nfqaccept did not start: $(cat "$work/nfqaccept.log")"; return 1; }
		nsx "$R" iptables -I FORWARD -j NFQUEUE --queue-num 0
		;;
	sw-* | alt-sw-*)
		# sw-MODE[-offload]-qN[-SPREAD]: statewall run --mode MODE
		# [--offload] --queues 0..N-1 [--spread SPREAD]; alt-sw-...: the
		# same with the binary STATEWALL_ALT (an A/B in one run)
		local extra=() tok bin=$SW
		case $cfg in alt-*) bin=$work/statewall-alt ;; esac
		IFS=- read -r -a toks <<<"${cfg#*sw-}"
		mode=${toks[0]} q=1
		for tok in "${toks[@]:1}"; do
			case $tok in
			offload) extra+=(--offload) ;;
			q*) q=${tok#q} ;;
			flow | addr | cpu) extra+=(--spread "$tok") ;;
			spin*) extra+=(--spin "${tok#spin}us") ;;
			sync)
				extra+=(--sync-name router --sync-listen 198.18.3.1:7946 --sync-peer 198.18.3.2:7946
					--sync-cert "$work/keys/router.crt" --sync-key "$work/keys/router.key" --sync-ca "$work/keys/ca.crt")
				# The peer: a second statewall, its table filled by the
				# router's sync alone (nothing crosses it).
				timeout 600 "$bin" run --rules bench/live/router.rules --hooks forward --netns "$P" \
					--socket "$work/peer.sock" --log-level warn --log-file "" --state-file "" \
					--sync-name peer --sync-listen 198.18.3.2:7946 --sync-peer 198.18.3.1:7946 \
					--sync-cert "$work/keys/peer.crt" --sync-key "$work/keys/peer.key" --sync-ca "$work/keys/ca.crt" \
					>>"$work/peer.log" 2>&1 &
				peer_pid=$!
				PIDS+=("$peer_pid")
				;;
			defer*) extra+=(--sync-defer "${tok#defer}ms") ;;
			*) log "unknown part $tok of $cfg"; return 1 ;;
			esac
		done
		[ "$q" = 1 ] && q=0 || q=0-$((q - 1))
		timeout 600 "$bin" run --rules bench/live/router.rules --hooks forward --mode "$mode" --queues "$q" "${extra[@]}" \
			--netns "$R" --socket "$work/sw.sock" --log-level warn >>"$work/statewall.log" 2>&1 &
		cfg_pid=$!
		for i in $(seq 100); do
			nsx "$R" iptables -t mangle -S FORWARD 2>/dev/null | grep -q STATEWALL && break
			sleep 0.1
		done
		nsx "$R" iptables -t mangle -S FORWARD | grep -q STATEWALL || { log "statewall did not start"; tail "$work/statewall.log" >&2; return 1; }
		if [ -n "$peer_pid" ]; then
			for i in $(seq 100); do
				[ "$("$SW" status --socket "$work/sw.sock" --json 2>/dev/null | jq '.sync.connected // 0')" = 2 ] && break
				sleep 0.1
			done
			[ "$("$SW" status --socket "$work/sw.sock" --json | jq '.sync.connected // 0')" = 2 ] ||
				{ log "$cfg: the sync links did not come up"; tail "$work/statewall.log" "$work/peer.log" >&2; return 1; }
		fi
		;;
	*) log "unknown configuration $cfg"; return 1 ;;
	esac
	[ -z "$cfg_pid" ] || PIDS+=("$cfg_pid")
	wait_ping || { log "$cfg: no ping through the router"; return 1; }
}

stop_cfg() {
	local cfg=$1
	case $cfg in
	nft) nsx "$R" nft delete table inet swlive ;;
	nfqaccept) nsx "$R" iptables -D FORWARD -j NFQUEUE --queue-num 0 ;;
	sw-* | alt-sw-*) "$SW" status --socket "$work/sw.sock" >"$work/status-$cfg.txt" 2>&1 || true ;;
	esac
	[ -z "$cfg_pid" ] || stop "$cfg_pid"
	cfg_pid=""
	if [ -n "$peer_pid" ]; then
		"$SW" status --socket "$work/peer.sock" >"$work/status-$cfg-peer.txt" 2>&1 || true
		stop "$peer_pid"
		peer_pid=""
	fi
}

# sync_lag records the router's sync lag over the configuration's run (the
# sender's: from an entry's change to the peer's ack of the frame that
# carried it; hasync's histogram, so bucket bounds) and what the peer
# installed.
sync_lag() {
	local rep=$1 cfg=$2 st
	st=$("$SW" status --socket "$work/sw.sock" --json) || return 0
	rec "$rep" "$cfg" sync_lag_p50_ms "$(jq '[.sync.peers[] | select(.direction == "out") | .lag.p50_seconds] | max * 1000' <<<"$st")"
	rec "$rep" "$cfg" sync_lag_p99_ms "$(jq '[.sync.peers[] | select(.direction == "out") | .lag.p99_seconds] | max * 1000' <<<"$st")"
	rec "$rep" "$cfg" sync_records "$(jq '[.sync.peers[] | select(.direction == "out") | .records_sent] | add' <<<"$st")"
	st=$("$SW" status --socket "$work/peer.sock" --json) || return 0
	rec "$rep" "$cfg" sync_peer_installed "$(jq '.conntrack.peer_installed' <<<"$st")"
}

# ---- workloads -----------------------------------------------------------
raw="$work/raw.csv"
echo "rep,config,metric,value" >"$raw"
rec() { echo "$1,$2,$3,$4" >>"$raw"; }
kv() { tr ' ' '\n' <<<"$1" | awk -F= -v k="$2" '$1 == k {print $2}'; }
rx() { nsx "$S" cat /sys/class/net/eth0/statistics/rx_packets; }
# UDP datagrams that reached the server's UDP layer (delivered, or dropped
# there for a full socket buffer): InDatagrams + InErrors of the server
# namespace's /proc/net/snmp.
# shellcheck disable=SC2016 # awk's fields, not the shell's
udp_in() { nsx "$S" awk '$1 == "Udp:" && $2 ~ /^[0-9]+$/ {print $2 + $4}' /proc/net/snmp; }

measure() {
	local rep=$1 cfg=$2 out a b secs lpid d0
	# UDP packets/s: 64-byte payloads from one sender, counted as they
	# arrive at the server's interface (what crossed the router).
	a=$(rx)
	out=$(nsx "$C" timeout $((DUR + 10)) "$work/loadgen" udpblast -to "$SRV:7000" -from "$FROM" -size 64 -t "${DUR}s" -n 50000000)
	sleep 0.5
	b=$(rx)
	secs=$(kv "$out" seconds)
	rec "$rep" "$cfg" udp_pps "$(awk -v n=$((b - a)) -v s="$secs" 'BEGIN {printf "%.0f", n / s}')"
	rec "$rep" "$cfg" udp_sent_pps "$(kv "$out" sent_pps)"
	# TCP bulk: iperf3, one stream.
	if out=$(nsx "$C" timeout $((DUR + 15)) iperf3 -4 -c "$SRV" -p 5201 -t "$DUR" -J 2>/dev/null); then
		rec "$rep" "$cfg" tcp_mbps "$(jq '.end.sum_received.bits_per_second / 1e6 | floor' <<<"$out")"
		rec "$rep" "$cfg" tcp_retrans "$(jq '.end.sum_sent.retransmits // 0' <<<"$out")"
	else
		log "$cfg: iperf3 failed"
	fi
	sleep 0.3
	# TCP connections/s: 4 connectors, at most 5000 connections.
	out=$(nsx "$C" timeout $((DUR + 10)) "$work/loadgen" connrate -to "$SRV:7001" -from "$FROM" -n 5000 -c 4 -t "${DUR}s")
	rec "$rep" "$cfg" conn_per_s "$(kv "$out" conns_per_s)"
	rec "$rep" "$cfg" conn_failed "$(kv "$out" failed)"
	# Latency: 64-byte request/response over one TCP connection.
	if out=$(nsx "$C" timeout $((DUR + 10)) "$work/loadgen" rr -to "$SRV:7002" -size 64 -n 100000 -t "${DUR}s"); then
		rec "$rep" "$cfg" rtt_p50_us "$(kv "$out" p50_us)"
		rec "$rep" "$cfg" rtt_p99_us "$(kv "$out" p99_us)"
	else
		log "$cfg: rr failed"
	fi
	# Latency under load: a paced UDP stream (LOAD_PPS 64-byte datagrams/s
	# from the eight client addresses) runs for DUR+1 s; 0.3 s into it the
	# same request/response probe runs for DUR s. The stream's delivered
	# rate and the queue drops during it are recorded next to the RTTs.
	sleep 0.3
	a=$(udp_in)
	case $cfg in nfqaccept | sw-* | alt-sw-*) d0=$(queue_drops) ;; *) d0="" ;; esac
	nsx "$C" timeout $((DUR + 11)) "$work/loadgen" udpblast -to "$SRV:7000" -from "$FROM" -size 64 \
		-rate "$LOAD_PPS" -t "$((DUR + 1))s" -n $((LOAD_PPS * (DUR + 1))) >"$work/load.out" 2>&1 &
	lpid=$!
	PIDS+=("$lpid")
	sleep 0.3
	if out=$(nsx "$C" timeout $((DUR + 10)) "$work/loadgen" rr -to "$SRV:7002" -size 64 -n 100000 -t "${DUR}s"); then
		rec "$rep" "$cfg" rtt_loaded_p50_us "$(kv "$out" p50_us)"
		rec "$rep" "$cfg" rtt_loaded_p99_us "$(kv "$out" p99_us)"
	else
		log "$cfg: rr under load failed"
	fi
	if wait "$lpid"; then
		sleep 0.3
		b=$(udp_in)
		out=$(cat "$work/load.out")
		secs=$(kv "$out" seconds)
		rec "$rep" "$cfg" load_pps "$(awk -v n=$((b - a)) -v s="$secs" 'BEGIN {printf "%.0f", n / s}')"
		rec "$rep" "$cfg" load_sent_pps "$(kv "$out" sent_pps)"
		[ -z "$d0" ] || rec "$rep" "$cfg" load_queue_drops $(($(queue_drops) - d0))
	else
		log "$cfg: the background load failed: $(cat "$work/load.out")"
	fi
}

# Warm-up, not recorded (rep 0 is left out of the report): the first
# measurements of a fresh topology came out several times slower.
log "warm-up (no filter, 1 s per workload)"
(DUR=1 measure 0 warmup)

load0=$(cut -d' ' -f1-3 /proc/loadavg)
read -r -a cfgs <<<"$CONFIGS"
n=${#cfgs[@]}
start=$(date +%s)
for rep in $(seq "$REPS"); do
	for i in $(seq 0 $((n - 1))); do
		cfg=${cfgs[$(((i + rep - 1) % n))]}
		log "rep $rep/$REPS: $cfg"
		start_cfg "$cfg"
		measure "$rep" "$cfg"
		case $cfg in nfqaccept | sw-* | alt-sw-*) rec "$rep" "$cfg" queue_drops "$(queue_drops)" ;; esac
		case $cfg in *-sync*) sync_lag "$rep" "$cfg" ;; esac
		stop_cfg "$cfg"
	done
done
log "measured in $(($(date +%s) - start)) s"

grep -h -i -E 'disagree|error' "$work"/status-*.txt >"$work/status-notes.txt" 2>/dev/null || true
mkdir -p "$OUT"
"$work/report" -raw "$raw" -out "$OUT" -reps "$REPS" -dur "$DUR" -offloads "$OFFLOADS ($offload_state)" \
	-configs "$CONFIGS" -command "${LIVE_COMMAND:-make bench-live} (REPS=$REPS DUR=$DUR OFFLOADS=$OFFLOADS LOAD_PPS=$LOAD_PPS)" \
	-load-pps "$LOAD_PPS" -alt-label "${ALT_LABEL:-alt}" -load-avg "at the start $load0, at the end $(cut -d' ' -f1-3 /proc/loadavg)" \
	-status-dir "$work" -build "$build_info"
log "wrote $OUT/live.md, live.csv, live.svg"
