#!/usr/bin/env bash
# scripts/ha-demo.sh: `make ha-demo` (issue #20). Two statewall routers, a
# and b, share their connection table (state sync) and a pair of virtual
# gateway addresses that keepalived moves (unicast VRRP). Under load, a
# dies as a node that loses power dies; b takes over. The run is made
# twice: with state sync, and without it (the control). As root, it builds
# these namespaces (198.18.0.0/15 only; IPv6 off; lo left down):
#
#          LAN 198.18.10.0/24                              WAN 198.18.20.0/24
#   client c0 .10 ---[br0]--- lan0 .2 [router a] wan0 .2 ---[br0]--- s0 .10 server
#   gateway: VIP .1    |              sync0 198.18.30.1         |    gateway: VIP .1
#                      |                   | (sync link)         |
#          (bridge ns  +----- lan0 .3 [router b] wan0 .3 -------+  (bridge ns
#           "lan")                    sync0 198.18.30.2              "wan")
#
# keepalived (scripts/ha/keepalived.conf.in): one VRRP instance per
# segment, unicast between the routers' own addresses there (.2 <-> .3),
# both in one sync group; a has priority 150 and starts as master, b 100.
# statewall (scripts/ha/router.rules) runs stateful on each router's
# forward hook; with sync, each exchanges its table with the other over
# the sync link (mutual TLS, keys from `statewall ha keygen`).
#
# A run: start statewall on both, then keepalived; wait until a holds both
# VIPs; start haload (internal/cmd/haload): N connections client -> server
# that each exchange a line every 500 ms, and a paced bulk transfer
# server -> client that spans the failover. KILL_AFTER s later, SIGSTOP
# and SIGKILL a's statewall and keepalived at once and set a's links
# down; measure until b holds both VIPs; the connections run on to the
# end of DURATION; then haload says, per connection, whether it came
# through (every line echoed intact within TIMEOUT, a clean close) and
# whether the transfer arrived whole. The report ends with the two lines
#
#   with sync: connections kept across failover: K/N, transfer complete: yes|no
#   without sync: connections kept across failover: K/N, transfer complete: yes|no
#
# and the exit status is 0 when the first says N/N and yes. Without sync,
# b has no state for the connections, and its ruleset opens TCP state only
# with a SYN: expect 0/N.
#
# Environment (defaults): N (200), DURATION (20 s the connections run once
# open), KILL_AFTER (5 s), BULK_SECONDS (15), BULK_RATE (2000000 bytes/s;
# the transfer is BULK_SECONDS x BULK_RATE bytes), TIMEOUT (15 s: the
# longest wait for an echo or for bulk data; after a 3.5 s failover, TCP's
# retransmission backoff makes the first packet through wait up to ~7 s),
# SYNC_DEFER (e.g. 20ms: --sync-defer), RUNS ("sync nosync"), STATEWALL
# (bin/statewall), HALOAD (bin/haload), RULES (scripts/ha/router.rules),
# KEEP=1 keeps the scratch directory (every daemon's log, configurations,
# status). Everything is bounded in time; namespaces (and with them every
# iptables rule) and processes are removed after each run and on any exit.
# Functions run through the trap and wait_for look unreachable to shellcheck:
# shellcheck disable=SC2317
set -euo pipefail

N=${N:-200}
DURATION=${DURATION:-20}
KILL_AFTER=${KILL_AFTER:-5}
BULK_SECONDS=${BULK_SECONDS:-15}
BULK_RATE=${BULK_RATE:-2000000}
TIMEOUT=${TIMEOUT:-15}
SYNC_DEFER=${SYNC_DEFER:-}
RUNS=${RUNS:-"sync nosync"}

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
STATEWALL=$(realpath -m "${STATEWALL:-bin/statewall}")
HALOAD=$(realpath -m "${HALOAD:-bin/haload}")
RULES=$(realpath -m "${RULES:-scripts/ha/router.rules}")
KA_TEMPLATE=$root/scripts/ha/keepalived.conf.in

log() { printf '%s %s\n' "$(date +%T.%3N)" "$*" >&2; }
die() { log "ha-demo: $*"; exit 1; }

for v in N DURATION KILL_AFTER BULK_SECONDS BULK_RATE TIMEOUT; do
	case ${!v} in '' | *[!0-9]*) die "$v must be a whole number" ;; esac
done
if [ "$N" -lt 1 ] || [ "$N" -gt 5000 ]; then die "N must be 1..5000"; fi
[ "$KILL_AFTER" -lt "$DURATION" ] || die "KILL_AFTER must be less than DURATION"
[ "$(id -u)" = 0 ] || die "needs root (network namespaces, iptables, NFQUEUE)"
for t in ip keepalived timeout realpath; do
	command -v "$t" >/dev/null || die "$t is missing (scripts/install-deps.sh keepalived)"
done
[ -x "$STATEWALL" ] || die "no statewall at $STATEWALL (make build, or STATEWALL=...)"
[ -x "$HALOAD" ] || die "no haload at $HALOAD (make ha-demo builds it, or HALOAD=...)"
[ -r "$RULES" ] || die "no rules file $RULES"

# Does this statewall have state sync?
# (grep reads the whole help: with -q it would stop at the first match,
# and under pipefail the writer's SIGPIPE would fail the pipeline.)
have_sync=no
if "$STATEWALL" run --help 2>&1 | grep -- '-sync-listen' >/dev/null; then
	have_sync=yes
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/statewall-ha.XXXXXX")
chmod 0755 "$work"
tag="swha$$"
NSES=()
PIDS=()
# Every daemon and load process is started under `timeout LIFE`, so that
# none outlives a run even if this script is killed without its trap.
LIFE=$((DURATION + 2 * TIMEOUT + 120))

# stop PID: SIGTERM, then SIGKILL after 3 s. PID is a `timeout` wrapper,
# which passes SIGTERM on; its child is killed by its own pid if it
# outlives it.
stop() {
	local pid=$1 kids
	kids=$(ps -o pid= --ppid "$pid" 2>/dev/null || true)
	kill -TERM "$pid" 2>/dev/null || return 0
	for _ in $(seq 30); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	# shellcheck disable=SC2086 # kids: a list of pids
	kill -KILL "$pid" $kids 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

# teardown: stop this run's processes (each by its pid, then whatever still
# runs inside its namespaces) and delete its namespaces.
teardown() {
	local pid ns
	for pid in "${PIDS[@]}"; do stop "$pid"; done
	for ns in "${NSES[@]}"; do
		for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
	done
	for ns in "${NSES[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
	PIDS=()
	NSES=()
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	set +e
	teardown
	if [ -n "${KEEP:-}" ]; then log "kept $work"; else rm -rf "$work"; fi
	[ "$rc" = 0 ] || [ "$rc" = 1 ] || log "ha-demo stopped (exit $rc); namespaces and processes removed"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
now_ns() { date +%s%N; }
# since T0: seconds from T0 (date +%s%N) to now, 3 decimals.
since() { local d=$(($(now_ns) - $1)); printf '%d.%03d' $((d / 1000000000)) $((d % 1000000000 / 1000000)); }

# wait_for_quiet SECONDS CMD...: run CMD every 50 ms until it succeeds, for
# at most SECONDS; 1 if it never did.
wait_for_quiet() {
	local secs=$1 end
	shift
	end=$(($(now_ns) + secs * 1000000000))
	while ! "$@"; do
		[ "$(now_ns)" -lt "$end" ] || return 1
		sleep 0.05
	done
}

# wait_for SECONDS WHAT CMD...: wait_for_quiet, or die saying WHAT.
wait_for() {
	local secs=$1 what=$2
	shift 2
	wait_for_quiet "$secs" "$@" || die "$what: not after ${secs}s"
}

# ---- topology ------------------------------------------------------------

# topology: the namespaces of one run, named after it ($P).
topology() {
	local ns
	C=$P-c A=$P-a B=$P-b S=$P-s L=$P-lan W=$P-wan
	for ns in "$C" "$A" "$B" "$S" "$L" "$W"; do
		ip netns add "$ns"
		NSES+=("$ns")
		# IPv4 only: no IPv6 on any interface (no link-local
		# addresses, DAD, RS or MLD to go anywhere). lo stays down.
		nsx "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
	done
	for ns in "$L" "$W"; do
		ip -n "$ns" link add br0 type bridge
		ip -n "$ns" link set br0 up
	done
	# ns dev -- bridge-ns port
	while read -r ns dev bns port; do
		ip link add "$dev" netns "$ns" type veth peer name "$port" netns "$bns"
		ip -n "$bns" link set "$port" master br0 up
	done <<-EOT
		$C c0 $L lc
		$A lan0 $L la
		$B lan0 $L lb
		$S s0 $W ws
		$A wan0 $W wa
		$B wan0 $W wb
	EOT
	ip link add sync0 netns "$A" type veth peer name sync0 netns "$B"
	while read -r ns dev addr; do
		ip -n "$ns" addr add "$addr" dev "$dev"
		ip -n "$ns" link set "$dev" up
	done <<-EOT
		$C c0 198.18.10.10/24
		$A lan0 198.18.10.2/24
		$A wan0 198.18.20.2/24
		$A sync0 198.18.30.1/24
		$B lan0 198.18.10.3/24
		$B wan0 198.18.20.3/24
		$B sync0 198.18.30.2/24
		$S s0 198.18.20.10/24
	EOT
	ip -n "$C" route add default via 198.18.10.1
	ip -n "$S" route add default via 198.18.20.1
	nsx "$A" sysctl -qw net.ipv4.ip_forward=1
	nsx "$B" sysctl -qw net.ipv4.ip_forward=1
}

# vips_on NS: NS holds both virtual addresses.
vips_on() {
	ip -n "$1" -4 -o addr show dev lan0 | grep -qF ' 198.18.10.1/' &&
		ip -n "$1" -4 -o addr show dev wan0 | grep -qF ' 198.18.20.1/'
}
# no_vips_on NS: NS holds neither.
no_vips_on() {
	! ip -n "$1" -4 -o addr show dev lan0 | grep -qF ' 198.18.10.1/' &&
		! ip -n "$1" -4 -o addr show dev wan0 | grep -qF ' 198.18.20.1/'
}

# ---- daemons -------------------------------------------------------------

# start_statewall NODE NS SELF PEER SYNC: statewall on router NODE; its
# `timeout` pid in SWPID_<NODE>.
start_statewall() {
	local node=$1 ns=$2 self=$3 peer=$4 sync=$5 pid
	local args=(run --rules "$RULES" --hooks forward --netns "$ns" --socket "$dir/$node.sock"
		--state-file "" --log-file "" --log-level info)
	if [ "$sync" = sync ]; then
		args+=(--sync-name "$node" --sync-listen "$self:7946" --sync-peer "$peer:7946"
			--sync-cert "$work/keys/$node.crt" --sync-key "$work/keys/$node.key" --sync-ca "$work/keys/ca.crt")
		[ -z "$SYNC_DEFER" ] || args+=(--sync-defer "$SYNC_DEFER")
	fi
	echo "$STATEWALL ${args[*]}" >"$dir/statewall-$node.cmd"
	timeout "$LIFE" "$STATEWALL" "${args[@]}" >"$dir/statewall-$node.log" 2>&1 &
	pid=$!
	PIDS+=("$pid")
	printf -v "SWPID_$node" '%s' "$pid"
}

sw_up() { timeout 5 "$STATEWALL" status --socket "$dir/$1.sock" >/dev/null 2>&1; }

# sync_up NODE: NODE's status says all its sync links are up ("sync:
# node a, 2 of 2 links up; ...": one link each way).
sync_up() {
	timeout 5 "$STATEWALL" status --socket "$dir/$1.sock" 2>/dev/null |
		awk '/^sync:/ { for (i = 1; i + 3 <= NF; i++) if ($(i + 1) == "of" && $(i + 3) == "links" && $i == $(i + 2) && $i > 0) up = 1 }
			END { exit !up }'
}

# render NODE STATE PRIORITY SELF# PEER#: keepalived.conf for a router
# whose own addresses end in .SELF# and whose peer's end in .PEER#.
render() {
	local node=$1 state=$2 prio=$3 self=$4 peer=$5
	sed -e "s|@NODE@|$node|g" -e "s|@STATE@|$state|g" -e "s|@PRIORITY@|$prio|g" \
		-e "s|@LAN_IF@|lan0|g" -e "s|@WAN_IF@|wan0|g" \
		-e "s|@LAN_SELF@|198.18.10.$self|g" -e "s|@LAN_PEER@|198.18.10.$peer|g" \
		-e "s|@WAN_SELF@|198.18.20.$self|g" -e "s|@WAN_PEER@|198.18.20.$peer|g" \
		-e "s|@LAN_VIP@|198.18.10.1/24|g" -e "s|@WAN_VIP@|198.18.20.1/24|g" \
		-e "s|@STATEWALL@|$STATEWALL|g" -e "s|@SOCKET@|$dir/$node.sock|g" \
		"$KA_TEMPLATE" >"$dir/keepalived-$node.conf"
	local left
	left=$(grep -v '^[[:space:]]*#' "$dir/keepalived-$node.conf" | grep -o '@[A-Z_]*@' | sort -u | tr '\n' ' ' || true)
	[ -z "$left" ] || die "keepalived.conf.in: placeholders left: $left"

}

# start_keepalived NODE NS: keepalived (VRRP only, in the foreground,
# logging to its file) in NS; its `timeout` pid in KAPID_<NODE>.
start_keepalived() {
	local node=$1 ns=$2
	timeout "$LIFE" ip netns exec "$ns" keepalived --dont-fork --log-console --log-detail --no-syslog --vrrp \
		--use-file "$dir/keepalived-$node.conf" --pid "$dir/keepalived-$node.pid" \
		--vrrp_pid "$dir/keepalived-$node-vrrp.pid" >"$dir/keepalived-$node.log" 2>&1 &
	PIDS+=("$!")
	printf -v "KAPID_$node" '%s' "$!"
}

# kill_router NODE NS: the router dies as a node that loses power does:
# every process of it stops at once (SIGSTOP: no handler runs, keepalived
# sends no priority-0 advert and removes no address, statewall saves and
# removes nothing), then dies (SIGKILL); then its links go down, so that
# its addresses cannot answer anything.
kill_router() {
	local node=$1 ns=$2 swpid kapid pids dev
	swpid=SWPID_$node kapid=KAPID_$node
	# statewall runs in the host namespace (with its sockets in NS);
	# keepalived and its children run in NS.
	pids="$(ps -o pid= --ppid "${!swpid}" 2>/dev/null || true) $(ip netns pids "$ns")"
	# Their `timeout` wrappers die of the same signal; reaping them here,
	# with the shell's stderr closed, keeps bash's "Killed" notices out
	# of the report.
	{
		# shellcheck disable=SC2086 # pids: a list
		kill -STOP $pids || true
		# shellcheck disable=SC2086
		kill -KILL $pids || true
		wait "${!swpid}" "${!kapid}" || true
	} 2>/dev/null
	for dev in lan0 wan0 sync0; do ip -n "$ns" link set "$dev" down; done
}

# ---- one run -------------------------------------------------------------

# result MODE KEY: a value of the run's haload result line.
declare -A RES
result() { echo "${RES[$1.$2]:-}"; }

run_one() {
	local mode=$1 t0 t_kill pid client_pid line kv
	P=$tag-$mode
	dir=$work/$mode
	mkdir -p "$dir"
	log "== run $mode: namespaces $P-{c,a,b,s,lan,wan}"
	topology

	timeout "$LIFE" ip netns exec "$S" "$HALOAD" serve -listen 198.18.20.10:7100 -max "$((LIFE - 10))s" \
		>"$dir/server.log" 2>&1 &
	PIDS+=("$!")

	start_statewall a "$A" 198.18.30.1 198.18.30.2 "$mode"
	start_statewall b "$B" 198.18.30.2 198.18.30.1 "$mode"
	wait_for 15 "statewall on a answering (log: $dir/statewall-a.log)" sw_up a
	wait_for 15 "statewall on b answering (log: $dir/statewall-b.log)" sw_up b
	if [ "$mode" = sync ]; then
		t0=$(now_ns)
		if wait_for_quiet 10 sync_up a && wait_for_quiet 10 sync_up b; then
			log "sync: a and b connected ($(since "$t0") s)"
		else
			log "sync: the status does not show the peers connected after 10 s; going on (status of a below)"
			timeout 5 "$STATEWALL" status --socket "$dir/a.sock" >&2 || true
		fi
	fi

	render a MASTER 150 2 3
	render b BACKUP 100 3 2
	t0=$(now_ns)
	start_keepalived a "$A"
	start_keepalived b "$B"
	wait_for 20 "router a holding both VIPs (log: $dir/keepalived-a.log)" vips_on "$A"
	wait_for 5 "router b without VIPs" no_vips_on "$B"
	log "router a is master ($(since "$t0") s after keepalived started)"
	wait_for 10 "a ping from the client to the server through router a" \
		nsx "$C" ping -n -q -c 1 -W 1 198.18.20.10 >/dev/null

	timeout "$LIFE" ip netns exec "$C" "$HALOAD" client -server 198.18.20.10:7100 -n "$N" \
		-interval 500ms -duration "${DURATION}s" -timeout "${TIMEOUT}s" \
		-bulk $((BULK_SECONDS * BULK_RATE)) -bulk-rate "$BULK_RATE" -seed $$ >"$dir/client.log" 2>&1 &
	client_pid=$!
	PIDS+=("$client_pid")
	wait_for $((TIMEOUT + 30)) "haload ready (log: $dir/client.log)" grep -q '^ready:' "$dir/client.log"
	t0=$(now_ns)
	log "haload: $(grep '^ready:' "$dir/client.log")"

	sleep "$KILL_AFTER"
	vips_on "$A" || die "router a lost the VIPs before the kill (keepalived logs in $dir)"
	# What each table holds just before: b's are a's, by sync (or none).
	timeout 5 "$STATEWALL" status --socket "$dir/a.sock" >"$dir/status-a-before.txt" 2>&1 || true
	timeout 5 "$STATEWALL" status --socket "$dir/b.sock" >"$dir/status-b-before.txt" 2>&1 || true
	t_kill=$(now_ns)
	kill_router a "$A"
	log "router a killed at +$(since "$t0") s (statewall and keepalived SIGKILLed, links down)"
	wait_for 30 "router b taking both VIPs (log: $dir/keepalived-b.log)" vips_on "$B"
	RES[$mode.failover]=$(since "$t_kill")
	log "router b holds both VIPs, ${RES[$mode.failover]} s after the kill"

	log "waiting for haload (at most $((DURATION + TIMEOUT + 10)) s)"
	wait "$client_pid" || true
	timeout 10 "$STATEWALL" status --socket "$dir/b.sock" >"$dir/status-b.txt" 2>&1 || true
	line=$(grep '^result:' "$dir/client.log" || true)
	[ -n "$line" ] || { cat "$dir/client.log" >&2; die "haload client gave no result"; }
	for kv in ${line#result: }; do RES[$mode.${kv%%=*}]=${kv#*=}; done
	# The report shows the first three failures; client.log has ten.
	{ grep '^failed: conn' "$dir/client.log" | head -3 || true; grep -E '^(echo|bulk):' "$dir/client.log" || true; } >"$dir/client-summary.txt"
	grep -E 'Entering (MASTER|BACKUP|FAULT) STATE' "$dir/keepalived-b.log" >"$dir/keepalived-b-states.txt" || true
	teardown
	RES[$mode.ran]=yes
}

# ---- main ----------------------------------------------------------------

log "ha-demo: N=$N DURATION=${DURATION}s KILL_AFTER=${KILL_AFTER}s bulk ${BULK_SECONDS}s x ${BULK_RATE} B/s TIMEOUT=${TIMEOUT}s; statewall $STATEWALL (sync: $have_sync); scratch $work"
for mode in $RUNS; do
	case $mode in
	sync)
		if [ "$have_sync" = no ]; then
			log "== run sync: skipped: $STATEWALL has no --sync-listen"
			continue
		fi
		mkdir -p "$work/keys"
		"$STATEWALL" ha keygen --dir "$work/keys" --nodes a,b >"$work/keys/keygen.log" 2>&1 ||
			die "statewall ha keygen: $(cat "$work/keys/keygen.log")"
		run_one sync
		;;
	nosync) run_one nosync ;;
	*) die "RUNS: unknown run $mode (sync, nosync)" ;;
	esac
done

# ---- report --------------------------------------------------------------

echo
echo "### statewall failover demo: $N connections (a line each every 500 ms), a bulk transfer of $((BULK_SECONDS * BULK_RATE)) bytes at $BULK_RATE B/s; router a killed ${KILL_AFTER}s in"
for mode in sync nosync; do
	[ "$mode" = sync ] && title="with sync" || title="without sync"
	echo
	echo "## $title"
	if [ -z "$(result $mode ran)" ]; then
		if [ "$mode" = sync ] && [ "$have_sync" = no ]; then
			echo "not run: $STATEWALL has no state sync (--sync-listen); counted as 0/$N"
		else
			echo "not run (RUNS=\"$RUNS\"); counted as 0/$N"
		fi
		continue
	fi
	d=$work/$mode
	for node in a b; do
		echo "before the kill, router $node: $(grep -m1 '^conntrack:' "$d/status-$node-before.txt" || echo "conntrack: (no status)")"
	done
	echo "failover: router b held both VIPs $(result $mode failover) s after router a died"
	echo "longest wait for an echo that came: $(result $mode max_wait) s; longest bulk stall: $(result $mode bulk_stall) s"
	sed 's/^/haload: /' "$d/client-summary.txt"
	sed 's/^/keepalived b: /' "$d/keepalived-b-states.txt"
	echo "statewall on router b, after the run:"
	grep -Ev '^(mode|rules|hooks|uptime|replies|log):' "$d/status-b.txt" | sed 's/^/  /' || true
done
echo
rc=1
for mode in sync nosync; do
	[ "$mode" = sync ] && title="with sync" || title="without sync"
	k=$(result $mode healthy)
	bulk=$(result $mode bulk)
	[ "$bulk" = yes ] || bulk=no
	echo "$title: connections kept across failover: ${k:-0}/$N, transfer complete: $bulk"
	if [ "$mode" = sync ] && [ "${k:-0}" = "$N" ] && [ "$bulk" = yes ]; then rc=0; fi
done
exit "$rc"
