#!/usr/bin/env bash
# make-captures.sh — regenerate the basic packet captures in testdata/.
#
# Run as root from anywhere:   sudo scripts/make-captures.sh
#
# Builds a throw-away client/server network-namespace pair joined by a veth
# (see scripts/lib-netns.sh), runs real tools between them and records each
# scenario with tcpdump on the server-side veth into testdata/NAME.pcap, with
# testdata/NAME.pcap.cmd holding the exact commands, date and tool versions.
# Traffic only ever goes between 198.18.0.1/2 and fd00:198:18::1/2; every
# client command is bounded by `timeout`; namespaces and processes are
# removed on exit, failure included.
#
# Files: http-curl-v4, http-curl-v6, ping-v4, ping-v6 (with IPv6 ND),
# dns-udp, udp-port-unreach, tcp-refused (all .pcap + .pcap.cmd).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
"$HERE/install-deps.sh" tcpdump ip ss ethtool curl dig dnsmasq python3 ping
# shellcheck source=lib-netns.sh
. "$HERE/lib-netns.sh"

netns_up

# --- servers (started before any capture, so their start-up is not recorded) --
WWW="$WORK/www"
mkdir -p "$WWW"
printf 'hello from the statewall capture server\n' >"$WWW/index.html"

S_bg "$WORK/http4.log" python3 -m http.server 8080 --bind "$IP4_S" --directory "$WWW"
HTTP4_CMD=${CAP_LOG[-1]}
S_bg "$WORK/http6.log" python3 -m http.server 8080 --bind "$IP6_S" --directory "$WWW"
HTTP6_CMD=${CAP_LOG[-1]}
S_bg "$WORK/dnsmasq.log" dnsmasq --no-daemon --conf-file=/dev/null --no-resolv --no-hosts \
	--bind-interfaces --except-interface=lo --listen-address="$IP4_S" --listen-address="$IP6_S" \
	--address=/example.test/"$IP4_S" --address=/example.test/"$IP6_S" --pid-file= --log-queries
DNS_CMD=${CAP_LOG[-1]}
wait_listen "$NS_S" tcp 8080
wait_listen "$NS_S" udp 53
# both http servers listen on 8080; make sure the IPv6 one is up too
for _ in $(seq 50); do
	[ -n "$(ip netns exec "$NS_S" ss -Hltn "src [$IP6_S]:8080")" ] && break
	sleep 0.1
done
CURL=(curl --noproxy '*' -sS --max-time 5)

# --- http-curl-v4 -------------------------------------------------------------
cap_start http-curl-v4
note "server (already running, started before the capture):"
note "$HTTP4_CMD   # \$WORK/www/index.html = 'hello from the statewall capture server\\n'"
C timeout 10 "${CURL[@]}" --local-port 40001 "http://$IP4_S:8080/" >"$WORK/curl4.out"
cap_stop "HTTP/1.0 GET over IPv4 (curl -> python3 http.server): handshake, request, response, FIN close" curl python3

# --- http-curl-v6 -------------------------------------------------------------
cap_start http-curl-v6
note "server (already running, started before the capture):"
note "$HTTP6_CMD   # \$WORK/www/index.html = 'hello from the statewall capture server\\n'"
C timeout 10 "${CURL[@]}" --local-port 40002 "http://[$IP6_S]:8080/" >"$WORK/curl6.out"
cap_stop "HTTP/1.0 GET over IPv6 (curl -> python3 http.server): handshake, request, response, FIN close" curl python3

# --- ping ---------------------------------------------------------------------
cap_start ping-v4
C timeout 10 ping -c 3 -i 0.2 -W 1 "$IP4_S" >/dev/null
cap_stop "3 ICMP echo request/reply pairs over IPv4" ping

cap_start ping-v6
note "IPv6 neighbour entries are dynamic for this capture, so Neighbor Discovery (NS/NA) precedes the echoes"
neigh_dynamic6
C timeout 10 ping -6 -c 3 -i 0.2 -W 1 "$IP6_S" >/dev/null
cap_stop "Neighbor Solicitation/Advertisement, then 3 ICMPv6 echo request/reply pairs" ping
neigh_static6

# --- dns-udp ------------------------------------------------------------------
DIG=(dig +tries=1 +time=2)
cap_start dns-udp
note "server (already running, started before the capture):"
note "$DNS_CMD"
C timeout 5 "${DIG[@]}" @"$IP4_S" example.test A >"$WORK/dig1.out"
C timeout 5 "${DIG[@]}" @"$IP4_S" example.test AAAA >"$WORK/dig2.out"
C timeout 5 "${DIG[@]}" @"$IP6_S" example.test AAAA >"$WORK/dig3.out"
cap_stop "DNS over UDP answered by dnsmasq: A and AAAA queries to 198.18.0.2:53, AAAA query to [fd00:198:18::2]:53" dig dnsmasq
grep -q "$IP4_S" "$WORK/dig1.out" || die "dig A: no answer"

# --- udp-port-unreach ---------------------------------------------------------
cap_start udp-port-unreach
note "nothing listens on UDP port 5300; dig gets 'connection refused' from the ICMP error"
C timeout 5 "${DIG[@]}" -p 5300 @"$IP4_S" example.test A >"$WORK/dig4.out" || true
C timeout 5 "${DIG[@]}" -p 5300 @"$IP6_S" example.test A >"$WORK/dig5.out" || true
cap_stop "DNS query to a closed UDP port: ICMP port unreachable (v4) and ICMPv6 port unreachable (v6), each quoting the query" dig

# --- tcp-refused --------------------------------------------------------------
cap_start tcp-refused
note "nothing listens on TCP port 8081: SYN answered by RST/ACK; curl exits 7"
C timeout 5 "${CURL[@]}" --local-port 40003 "http://$IP4_S:8081/" 2>/dev/null || true
C timeout 5 "${CURL[@]}" --local-port 40004 "http://[$IP6_S]:8081/" 2>/dev/null || true
cap_stop "TCP connection to a closed port over IPv4 and IPv6: SYN, RST/ACK" curl

echo "done: captures in $TESTDATA"
