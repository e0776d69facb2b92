#!/usr/bin/env bash
# make-attack-captures.sh — regenerate the captures in testdata/ that tell a
# stateless filter from a stateful one (scans, out-of-window injection, SYN
# flood, ICMP errors, mixed IPv6).
#
# Run as root from anywhere:   sudo scripts/make-attack-captures.sh
#
# Same harness as scripts/make-captures.sh (scripts/lib-netns.sh): a client
# and a server namespace joined by a veth, all traffic between 198.18.0.0/15
# and fd00:198:18::/64 addresses, recorded on the server veth. The server
# runs python3 http.server on TCP 80 (IPv4 and IPv6); TCP 22 and 443 and
# UDP 9999 are closed. Every traffic generator is bounded by a packet count
# and by `timeout`; namespaces, processes and the temp dir are removed on
# exit, failure included.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
"$HERE/install-deps.sh" tcpdump ip ss ethtool iptables curl python3 ping nmap hping3 socat
# shellcheck source=lib-netns.sh
. "$HERE/lib-netns.sh"

netns_up

WWW="$WORK/www"
mkdir -p "$WWW"
printf 'hello from the statewall capture server\n' >"$WWW/index.html"
start_http4() {
	S_bg "$WORK/http4.log" python3 -m http.server 80 --bind "$IP4_S" --directory "$WWW"
	HTTP4_CMD=${CAP_LOG[-1]}
	HTTP4_PID=$BG_PID
}
start_http4
S_bg "$WORK/http6.log" python3 -m http.server 80 --bind "$IP6_S" --directory "$WWW"
HTTP6_CMD=${CAP_LOG[-1]}
wait_listen "$NS_S" tcp 80
for _ in $(seq 50); do
	[ -n "$(ip netns exec "$NS_S" ss -Hltn "src [$IP6_S]:80")" ] && break
	sleep 0.1
done
server_note() {
	note "servers (already running, started before the capture): TCP 80 open; TCP 22, 443 and UDP 9999 closed"
	note "$HTTP4_CMD"
	note "$HTTP6_CMD"
}
CURL=(curl --noproxy '*' -sS --max-time 5)
HPING=(hping3 -I "$DEV_C")

# --- nmap scans --------------------------------------------------------------
# -Pn: no host discovery (nmap would ARP-ping first); -n: no DNS; one probe per
# port (--max-retries 0); -T4; -e c0. nmap exits 0 whatever it finds.
NMAP=(nmap -n -Pn -e "$DEV_C" -p 22,80,443 --max-retries 0 -T4 --host-timeout 20s)
nmap_cap() {
	local name=$1 desc=$2; shift 2
	cap_start "$name"
	server_note
	C timeout 30 "${NMAP[@]}" "$@" "$IP4_S" >"$WORK/$name.nmap.txt"
	grep -E '^(PORT|[0-9]+/tcp)' "$WORK/$name.nmap.txt" || true
	cap_stop "$desc" nmap python3
}
nmap_cap nmap-syn-scan "nmap SYN scan (-sS) of TCP 22,80,443: SYN/ACK from open 80 (client kernel answers RST), RST/ACK from closed 22,443" -sS
nmap_cap nmap-ack-scan "nmap ACK scan (-sA) of TCP 22,80,443: bare ACKs with no connection, each answered by RST" -sA
nmap_cap nmap-ack-scan-sport80 "nmap ACK scan (-sA) with source port 80 (-g 80): ACKs that look like replies from a web server, each answered by RST" -sA -g 80
nmap_cap nmap-fin-scan "nmap FIN scan (-sF) of TCP 22,80,443: bare FINs; closed ports answer RST/ACK, open 80 stays silent" -sF
nmap_cap nmap-xmas-scan "nmap Xmas scan (-sX, FIN|PSH|URG) of TCP 22,80,443; closed ports answer RST/ACK, open 80 stays silent" -sX
nmap_cap nmap-null-scan "nmap NULL scan (-sN, no flags) of TCP 22,80,443; closed ports answer RST/ACK, open 80 stays silent" -sN

# --- hping3-out-of-window ---------------------------------------------------
# A real HTTP connection 198.18.0.1:40000 -> 198.18.0.2:80 is held open
# half-way through its request (socat, fed from a FIFO). While it is open,
# hping3 injects segments on the same 4-tuple whose numbers are computed from
# the handshake seen so far in the capture:
#   * 2 data segments, correct ACK, seq = expected seq + 2^30 (far outside the
#     window): each answered by a duplicate ACK
#   * 1 data segment, exact seq, ACK = server's next seq + 2^30 (acks data
#     never sent): dropped; the server answers with a duplicate ACK
#   * 1 RST, seq = expected seq + 2^30 (out of window): silently ignored
#   * 1 RST, seq = expected seq + 1000 (in window, not exact): challenge ACK
# (spaced 0.6 s apart: Linux rate-limits its answers to invalid segments to
# one per 500 ms, net.ipv4.tcp_invalid_ratelimit). Then the client finishes
# the request; the connection survived: 200 OK and a normal FIN close.
NAME=hping3-out-of-window
FIFO="$WORK/req.fifo"
mkfifo "$FIFO"
exec 3<>"$FIFO"   # read-write open: never blocks; EOF for socat when closed
# fifo_write FORMAT — one write(2) (bash's printf writes once per newline,
# which would make socat send the chunk as two TCP segments)
fifo_write() { printf "$1" >"$WORK/chunk"; cat "$WORK/chunk" >&3; }
cap_start "$NAME"
server_note
note "client request is fed through a FIFO (\$WORK/req.fifo) held open by the script on fd 3"
C_bg "$WORK/socat.log" bash -c 'exec timeout 20 socat -t 3 - TCP:198.18.0.2:80,bind=198.18.0.1,sourceport=40000 <"$1"' _ "$FIFO"
SOCAT_PID=$BG_PID
note "printf 'GET / HTTP/1.0\\r\\n' (one write) >&3   # first request line only (16 bytes); the connection stays open"
fifo_write 'GET / HTTP/1.0\r\n'
ISN_C="" ISN_S=""
for _ in $(seq 50); do
	lines=$(tcpdump -nn -S -r "$WORK/$NAME.pcap" 'tcp port 40000' 2>/dev/null || true)
	if grep -q 'length 16' <<<"$lines"; then
		ISN_C=$(awk '/198\.18\.0\.1\.40000 > .*Flags \[S\],/ {sub(",", "", $9); print $9; exit}' <<<"$lines")
		ISN_S=$(awk '/198\.18\.0\.2\.80 > .*Flags \[S\.\],/ {sub(",", "", $9); print $9; exit}' <<<"$lines")
		break
	fi
	sleep 0.1
done
[ -n "$ISN_C" ] && [ -n "$ISN_S" ] || die "$NAME: handshake/request not seen in capture"
RCV_NXT=$(((ISN_C + 1 + 16) % 4294967296))   # next seq the server expects
SND_NXT=$(((ISN_S + 1) % 4294967296))        # server's next seq (= valid ACK)
FAR=1073741824   # 2^30: unambiguously "after"; +2^31 would read as "before" in seq arithmetic
note "from the capture: client ISN=$ISN_C server ISN=$ISN_S -> expected seq RCV_NXT=$RCV_NXT, valid ack SND_NXT=$SND_NXT"
HP=("${HPING[@]}" -s 40000 -k -p 80)
C timeout 5 "${HP[@]}" -c 2 -i u600000 -A -P -d 24 -M $(((RCV_NXT + FAR) % 4294967296)) -L "$SND_NXT" "$IP4_S" >/dev/null 2>&1 || true
sleep 0.6
C timeout 5 "${HP[@]}" -c 1 -A -P -d 24 -M "$RCV_NXT" -L $(((SND_NXT + FAR) % 4294967296)) "$IP4_S" >/dev/null 2>&1 || true
sleep 0.6
C timeout 5 "${HP[@]}" -c 1 -R -M $(((RCV_NXT + FAR) % 4294967296)) "$IP4_S" >/dev/null 2>&1 || true
sleep 0.6
C timeout 5 "${HP[@]}" -c 1 -R -M $(((RCV_NXT + 1000) % 4294967296)) "$IP4_S" >/dev/null 2>&1 || true
sleep 0.6
note "printf 'Host: 198.18.0.2\\r\\n\\r\\n' (one write) >&3; exec 3>&-   # finish the request; socat sends FIN after EOF"
fifo_write 'Host: 198.18.0.2\r\n\r\n'
exec 3>&-
wait "$SOCAT_PID" || true
grep -q '200 OK' "$WORK/socat.log" || die "$NAME: the real connection did not get its response"
cap_stop "established HTTP connection with hping3-injected out-of-window data, bad-ACK data and blind RSTs on its 4-tuple; the connection survives" socat hping3 python3

# --- syn-flood ----------------------------------------------------------------
# 200 SYNs to 198.18.0.2:80 with hping3 --faster (-i u1: 40 SYNs in <1 ms), 40 from each
# of 5 client addresses, source ports incrementing from a per-address base.
# 198.18.0.1: the client kernel answers every SYN/ACK with RST.
# 198.18.1.1-4 (extra addresses on c0; the client drops SYN/ACKs to them with
# iptables), so for those the server's SYN/ACKs go unanswered — like a flood
# from spoofed sources, but inside our own prefix. The listener's backlog is
# 5 (python http.server), so most SYN/ACKs are SYN cookies.
cap_start syn-flood
server_note
FLOOD_SRCS=(198.18.1.1 198.18.1.2 198.18.1.3 198.18.1.4)
for a in "${FLOOD_SRCS[@]}"; do
	C ip addr add "$a/$PFX4" dev "$DEV_C"
	S ip neigh replace "$a" lladdr "$MAC_C" dev "$DEV_S" nud permanent
done
C iptables -w 5 -A INPUT -d 198.18.1.0/24 -p tcp --tcp-flags SYN,ACK SYN,ACK -j DROP
C timeout 10 "${HPING[@]}" -S -p 80 -c 40 --faster -s 20000 "$IP4_S" >/dev/null 2>&1 || true
base=21000
for a in "${FLOOD_SRCS[@]}"; do
	C timeout 10 "${HPING[@]}" -a "$a" -S -p 80 -c 40 --faster -s "$base" "$IP4_S" >/dev/null 2>&1 || true
	base=$((base + 1000))
done
echo "server SYN-cookie counters: $(ip netns exec "$NS_S" nstat -az TcpExtSyncookiesSent TcpExtTCPReqQFullDoCookies | awk 'NR>1 {printf "%s=%s ", $1, $2}')"
cap_stop "200 SYNs to port 80 from 5 addresses/many source ports: SYN/ACKs (mostly cookies), RSTs from 198.18.0.1, unanswered half-opens from 198.18.1.1-4" hping3 python3 iptables
# The server still holds half-open request socks for 198.18.1.x and would
# retransmit their SYN/ACKs 1 s later, into the next capture. Closing the
# listener drops them (its request socks die with it); then start it again.
stop_bg "$HTTP4_PID"
C iptables -w 5 -F INPUT
start_http4
wait_listen "$NS_S" tcp 80

# --- icmp-errors --------------------------------------------------------------
# Real ICMP errors:
#   UDP to closed port 9999, v4 and v6 -> port unreachable quoting the datagram
#   TCP SYN to 198.19.255.1 / fd00:198:18:0:ffff::1, routed via the server,
#   which has an `unreachable` route for them -> host unreachable (v4),
#   no route (v6), quoting the SYN
# Forged ICMP errors (client -> server) about flows that never existed:
#   hping3: port unreachable quoting UDP 198.18.0.2:53 -> 198.18.0.1:40020
#   icmperr.py: frag-needed (MTU 1280) quoting TCP 198.18.0.2:80 -> 198.18.0.1:40021
#   icmperr.py: ICMPv6 port unreachable quoting UDP [::2]:53 -> [::1]:40022
#   icmperr.py: ICMPv6 packet too big (MTU 1280) quoting TCP [::2]:80 -> [::1]:40023
CAP_LOG=()
S sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
S ip route add unreachable 198.19.255.0/24
S ip -6 route add unreachable fd00:198:18:0:ffff::/80
C ip route add 198.19.255.0/24 via "$IP4_S"
C ip -6 route add fd00:198:18:0:ffff::/80 via "$IP6_S"
ROUTE_LOG=("${CAP_LOG[@]}")
cap_start icmp-errors
note "routing set up before the capture:"
for l in "${ROUTE_LOG[@]}"; do note "$l"; done
C timeout 5 bash -c 'printf "probe\n" | socat -u - UDP-SENDTO:198.18.0.2:9999,bind=198.18.0.1:40010'
sleep 0.2
C timeout 5 bash -c 'printf "probe\n" | socat -u - UDP6-SENDTO:[fd00:198:18::2]:9999,bind=[fd00:198:18::1]:40010'
sleep 0.2
C timeout 5 "${CURL[@]}" --connect-timeout 2 --local-port 40011 http://198.19.255.1/ 2>/dev/null || true
sleep 0.2
C timeout 5 "${CURL[@]}" --connect-timeout 2 --local-port 40011 'http://[fd00:198:18:0:ffff::1]/' 2>/dev/null || true
sleep 0.2
C timeout 5 "${HPING[@]}" -c 1 --icmp -C 3 -K 3 --icmp-ipproto 17 --icmp-ipsrc "$IP4_S" --icmp-ipdst "$IP4_C" \
	--icmp-srcport 53 --icmp-dstport 40020 "$IP4_S" >/dev/null 2>&1 || true
sleep 0.2
CRAFT=(timeout 5 python3 "$HERE/craft/icmperr.py")
C "${CRAFT[@]}" --src "$IP4_C" --dst "$IP4_S" --type 3 --code 4 --mtu 1280 --quote "tcp:$IP4_S:80:$IP4_C:40021"
sleep 0.2
C "${CRAFT[@]}" --src "$IP6_C" --dst "$IP6_S" --type 1 --code 4 --quote "udp:[$IP6_S]:53:[$IP6_C]:40022"
sleep 0.2
C "${CRAFT[@]}" --src "$IP6_C" --dst "$IP6_S" --type 2 --code 0 --mtu 1280 --quote "tcp:[$IP6_S]:80:[$IP6_C]:40023"
cap_stop "real ICMP/ICMPv6 errors (port unreachable for UDP, host unreachable/no route for TCP SYN) and forged ones quoting flows that never existed" socat curl hping3 python3
# undo the routing (not part of any capture)
ip netns exec "$NS_S" sysctl -qw net.ipv4.ip_forward=0 net.ipv6.conf.all.forwarding=0

# --- ipv6-mixed ---------------------------------------------------------------
cap_start ipv6-mixed
server_note
note "IPv6 neighbour entries are dynamic for this capture, so Neighbor Discovery (NS/NA) is visible"
neigh_dynamic6
C timeout 10 "${CURL[@]}" --local-port 40030 "http://[$IP6_S]/" >/dev/null
C timeout 10 ping -6 -c 3 -i 0.2 -W 1 "$IP6_S" >/dev/null
cap_stop "IPv6 only: Neighbor Discovery, an HTTP connection to [fd00:198:18::2]:80 (curl), 3 ICMPv6 echo pairs" curl ping python3
neigh_static6

echo "done: captures in $TESTDATA"
