# shellcheck shell=bash
# lib-netns.sh — shared harness for scripts/make-captures.sh and
# scripts/make-attack-captures.sh. Source it; do not run it.
#
# Topology (both namespaces are created and destroyed by the caller's run):
#
#   $NS_C (client)                          $NS_S (server)
#   c0 02:00:c6:12:00:01  <==== veth ====>  s0 02:00:c6:12:00:02
#   198.18.0.1/15                           198.18.0.2/15
#   fd00:198:18::1/64                       fd00:198:18::2/64
#
# Rules this harness enforces:
#   * Only addresses in 198.18.0.0/15 and fd00:198:18::/64 exist on the veth.
#     IPv6 link-local generation is disabled (addrgenmode none), so even ND
#     and the rest of IPv6 use the fd00:198:18:: addresses. The namespaces'
#     loopback interfaces are left DOWN: nothing can use 127.0.0.1 or ::1.
#   * DAD, router solicitations and RA processing are off; addresses are
#     added `nodad`, so they are usable at once.
#   * Checksum/segmentation offloads are off on both veth ends, so every
#     captured packet carries a complete, valid checksum and wire-sized
#     segments.
#   * Static (permanent) neighbour entries make the basic captures free of
#     ARP/ND; neigh_dynamic6 removes the IPv6 ones for a capture that should
#     show Neighbor Discovery.
#   * Everything is captured on the server-side veth (s0) with the filter in
#     $CAP_FILTER: only IPv4/IPv6 packets to or from our prefixes. That keeps
#     out ARP and the MLD reports the kernel sends from "::" at link-up, but
#     keeps ND NS/NA (sourced from fd00:198:18::x) when it happens.
#   * A trap on EXIT kills every process started here (by PID, plus whatever
#     still runs inside our own namespaces) and deletes the namespaces.

set -euo pipefail

SW_ID=${SW_ID:-$$}
NS_C="sw-cap-$SW_ID-c"
NS_S="sw-cap-$SW_ID-s"
DEV_C=c0
DEV_S=s0
MAC_C=02:00:c6:12:00:01
MAC_S=02:00:c6:12:00:02
IP4_C=198.18.0.1
IP4_S=198.18.0.2
IP6_C=fd00:198:18::1
IP6_S=fd00:198:18::2
PFX4=15
PFX6=64
CAP_FILTER='(ip and net 198.18.0.0/15) or (ip6 and net fd00:198:18::/64)'

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TESTDATA="$REPO_ROOT/testdata"
WORK=$(mktemp -d "/tmp/sw-cap-$SW_ID.XXXXXX")

PIDS=()       # background processes we started
SETUP_LOG=()  # commands that built the namespaces (go into every .cmd)
CAP_LOG=()    # commands of the capture in progress
CAP_NAME=""
CAP_PID=""

die() { echo "${0##*/}: $*" >&2; exit 1; }
ns_exists() { ip netns list | awk '{print $1}' | grep -qxF -- "$1"; }

[ "${EUID:-$(id -u)}" -eq 0 ] || die "must run as root (network namespaces, raw sockets)"

# --- logging ---------------------------------------------------------------

# _fmt ARGS... — shell-quoted command line with our run-specific names
# replaced by symbolic ones, so the .cmd files are stable and re-runnable.
_fmt() {
	local s="" a q="'"
	for a in "$@"; do
		if [[ $a =~ ^[A-Za-z0-9_@%+=:,./-]+$ ]]; then
			s+="$a "
		else
			s+="'${a//$q/$q\\$q$q}' "
		fi
	done
	s=${s% }
	s=${s//"$NS_C"/'$CLIENT'}
	s=${s//"$NS_S"/'$SERVER'}
	s=${s//"$WORK"/'$WORK'}
	s=${s//"$REPO_ROOT/"/}
	printf '%s' "$s"
}

# setup CMD... — run a namespace-construction command and remember it.
setup() { SETUP_LOG+=("$(_fmt "$@")"); "$@"; }

# note TEXT — free-text line (a comment) in the current capture's log.
note() { CAP_LOG+=("# $*"); }

# C CMD... / S CMD... — run in the client / server namespace, logged.
C() { CAP_LOG+=("$(_fmt ip netns exec "$NS_C" "$@")"); ip netns exec "$NS_C" "$@"; }
S() { CAP_LOG+=("$(_fmt ip netns exec "$NS_S" "$@")"); ip netns exec "$NS_S" "$@"; }

# C_bg / S_bg LOGFILE CMD... — same, in the background; PID in $BG_PID.
C_bg() { local log=$1; shift; CAP_LOG+=("$(_fmt ip netns exec "$NS_C" "$@") &"); ip netns exec "$NS_C" "$@" >"$log" 2>&1 & BG_PID=$!; PIDS+=("$BG_PID"); }
S_bg() { local log=$1; shift; CAP_LOG+=("$(_fmt ip netns exec "$NS_S" "$@") &"); ip netns exec "$NS_S" "$@" >"$log" 2>&1 & BG_PID=$!; PIDS+=("$BG_PID"); }

# stop_bg PID — stop one background process we started and forget it.
stop_bg() {
	local p=$1 i keep=()
	kill "$p" 2>/dev/null || true
	wait "$p" 2>/dev/null || true
	for i in "${PIDS[@]}"; do [ "$i" = "$p" ] || keep+=("$i"); done
	PIDS=("${keep[@]}")
}

# --- cleanup -----------------------------------------------------------------

cleanup() {
	local rc=$? p ns
	trap - EXIT INT TERM
	set +e
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	for ns in "$NS_C" "$NS_S"; do
		if ns_exists "$ns"; then
			for p in $(ip netns pids "$ns" 2>/dev/null); do kill "$p" 2>/dev/null; done
		fi
	done
	sleep 0.2
	for ns in "$NS_C" "$NS_S"; do
		if ns_exists "$ns"; then
			for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
		fi
	done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
	for ns in "$NS_C" "$NS_S"; do
		ns_exists "$ns" && ip netns del "$ns"
	done
	rm -rf "$WORK"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- topology ---------------------------------------------------------------

netns_up() {
	local ns dev
	setup ip netns add "$NS_C"
	setup ip netns add "$NS_S"
	setup ip link add "$DEV_C" netns "$NS_C" address "$MAC_C" type veth \
		peer name "$DEV_S" netns "$NS_S" address "$MAC_S"
	for ns in "$NS_C" "$NS_S"; do
		if [ "$ns" = "$NS_C" ]; then dev=$DEV_C; else dev=$DEV_S; fi
		setup ip netns exec "$ns" sysctl -qw \
			net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 \
			"net.ipv6.conf.$dev.accept_dad=0" "net.ipv6.conf.$dev.router_solicitations=0" \
			"net.ipv6.conf.$dev.accept_ra=0"
		setup ip -n "$ns" link set dev "$dev" addrgenmode none
		setup ip netns exec "$ns" ethtool -K "$dev" tx off rx off tso off gso off gro off >/dev/null
	done
	setup ip -n "$NS_C" addr add "$IP4_C/$PFX4" dev "$DEV_C"
	setup ip -n "$NS_C" addr add "$IP6_C/$PFX6" dev "$DEV_C" nodad
	setup ip -n "$NS_S" addr add "$IP4_S/$PFX4" dev "$DEV_S"
	setup ip -n "$NS_S" addr add "$IP6_S/$PFX6" dev "$DEV_S" nodad
	setup ip -n "$NS_C" neigh replace "$IP4_S" lladdr "$MAC_S" dev "$DEV_C" nud permanent
	setup ip -n "$NS_C" neigh replace "$IP6_S" lladdr "$MAC_S" dev "$DEV_C" nud permanent
	setup ip -n "$NS_S" neigh replace "$IP4_C" lladdr "$MAC_C" dev "$DEV_S" nud permanent
	setup ip -n "$NS_S" neigh replace "$IP6_C" lladdr "$MAC_C" dev "$DEV_S" nud permanent
	setup ip -n "$NS_C" link set "$DEV_C" up
	setup ip -n "$NS_S" link set "$DEV_S" up
	# let the link-up MLD reports go by before any capture starts
	sleep 0.5
}

# neigh_dynamic6 — drop the static IPv6 neighbour entries so that the next
# IPv6 exchange starts with Neighbor Discovery (logged into the capture).
neigh_dynamic6() {
	C ip neigh del "$IP6_S" dev "$DEV_C"
	S ip neigh del "$IP6_C" dev "$DEV_S"
}

# neigh_static6 — put the static IPv6 neighbour entries back (not logged:
# it happens after the capture that needed ND has stopped).
neigh_static6() {
	ip -n "$NS_C" neigh replace "$IP6_S" lladdr "$MAC_S" dev "$DEV_C" nud permanent
	ip -n "$NS_S" neigh replace "$IP6_C" lladdr "$MAC_C" dev "$DEV_S" nud permanent
}

# wait_listen NS tcp|udp PORT — wait (max 5 s) for a listening socket.
wait_listen() {
	local ns=$1 proto=$2 port=$3 i flag=-Hltn
	[ "$proto" = udp ] && flag=-Hlun
	for i in $(seq 50); do
		if [ -n "$(ip netns exec "$ns" ss "$flag" "sport = :$port")" ]; then return 0; fi
		sleep 0.1
	done
	die "nothing listening on $proto/$port in $ns after 5s"
}

# --- captures ------------------------------------------------------------------

# cap_start NAME — start tcpdump on the server veth; returns once it listens.
cap_start() {
	CAP_NAME=$1
	CAP_LOG=()
	local err="$WORK/$CAP_NAME.tcpdump.err" i
	CAP_LOG+=("$(_fmt ip netns exec "$NS_S" tcpdump -i "$DEV_S" -s 0 -U --immediate-mode -Z root -w "$CAP_NAME.pcap" "$CAP_FILTER") &")
	ip netns exec "$NS_S" tcpdump -i "$DEV_S" -s 0 -U --immediate-mode -Z root \
		-w "$WORK/$CAP_NAME.pcap" "$CAP_FILTER" 2>"$err" &
	CAP_PID=$!
	PIDS+=("$CAP_PID")
	for i in $(seq 50); do
		grep -q 'listening on' "$err" 2>/dev/null && break
		kill -0 "$CAP_PID" 2>/dev/null || die "tcpdump died: $(cat "$err")"
		sleep 0.1
	done
	grep -q 'listening on' "$err" || die "tcpdump did not start: $(cat "$err")"
	sleep 0.2
}

# cap_stop "DESCRIPTION" TOOL... — stop tcpdump (SIGINT, wait until it has
# flushed and exited), move NAME.pcap to testdata/, write NAME.pcap.cmd with
# the date, tool versions, setup and capture commands, and print the capture.
cap_stop() {
	local desc=$1; shift
	local name=$CAP_NAME out="$TESTDATA/$CAP_NAME.pcap" l
	sleep 0.5
	kill -INT "$CAP_PID"
	wait "$CAP_PID" || true
	CAP_LOG+=("kill -INT <tcpdump pid>; wait  # tcpdump flushes and exits")
	mkdir -p "$TESTDATA"
	[ -s "$WORK/$name.pcap" ] || die "$name.pcap: empty capture"
	mv -f "$WORK/$name.pcap" "$out"
	chmod 644 "$out"
	{
		echo "# testdata/$name.pcap — $desc"
		echo "# Generated by scripts/${0##*/} (run as root from the repo root)."
		echo "# date:   $(date -u +%Y-%m-%dT%H:%M:%SZ)"
		echo "# kernel: $(uname -sr)"
		echo "# tools:"
		tool_versions tcpdump "$@" | sed 's/^/#   /'
		echo "# \$CLIENT/\$SERVER are the run's namespaces (sw-cap-<pid>-c/-s); \$WORK its temp dir."
		echo
		echo "## namespace setup (scripts/lib-netns.sh netns_up)"
		printf '%s\n' "${SETUP_LOG[@]}"
		echo
		echo "## capture"
		printf '%s\n' "${CAP_LOG[@]}"
	} >"$out.cmd"
	echo "=== $name.pcap ($(stat -c %s "$out") bytes) ==="
	tcpdump -nn -r "$out" 2>/dev/null | cut -c1-200
	tcpdump -nn -r "$out" 2>/dev/null | wc -l | sed 's/^/packets: /'
	CAP_PID=""
}

tool_versions() {
	local t
	for t in "$@"; do
		case $t in
		tcpdump) tcpdump --version 2>&1 | head -2 | paste -sd ' ' - ;;
		curl) curl --version | head -1 | cut -d' ' -f1-3 ;;
		python3) echo "$(python3 --version 2>&1) (http.server)" ;;
		ping) ping -V 2>&1 | head -1 ;;
		dig) dig -v 2>&1 ;;
		dnsmasq) dnsmasq --version | head -1 | cut -d' ' -f1-3 ;;
		socat) socat -V | sed -n 's/^socat version \([^ ]*\).*/socat \1/p' ;;
		nmap) nmap --version | head -1 ;;
		hping3) hping3 --version 2>&1 | head -1 ;;
		iptables) iptables -V ;;
		*) echo "$t" ;;
		esac
	done
	ip -V
	ethtool --version
}
