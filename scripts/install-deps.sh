#!/usr/bin/env bash
# install-deps.sh — make sure the command-line tools that statewall's capture
# scripts and integration tests use are present.
#
# Usage:
#   scripts/install-deps.sh            # check/install every tool
#   scripts/install-deps.sh tcpdump curl   # only these commands
#
# Idempotent and quiet when nothing is missing. When run as root, missing
# tools are installed with apt-get (one `apt-get update` first). When not
# root and something is missing, it prints what is missing and exits 1.
#
# Note: dnsmasq comes from the `dnsmasq-base` package (binary only), not the
# `dnsmasq` package, which would install and start a system-wide service.
set -euo pipefail

# command -> Debian package
declare -A PKG=(
	[tcpdump]=tcpdump
	[tcpreplay]=tcpreplay
	[iptables]=iptables
	[ip6tables]=iptables
	[iptables-legacy]=iptables
	[nft]=nftables
	[ip]=iproute2
	[ss]=iproute2
	[ping]=iputils-ping
	[ethtool]=ethtool
	[nmap]=nmap
	[hping3]=hping3
	[iperf3]=iperf3
	[curl]=curl
	[dig]=dnsutils
	[dnsmasq]=dnsmasq-base
	[python3]=python3
	[socat]=socat
	[conntrack]=conntrack
	[man]=man-db
	[systemd-analyze]=systemd
	[keepalived]=keepalived
)
# stable order for the default list
ALL=(tcpdump tcpreplay iptables ip6tables iptables-legacy nft ip ss ethtool nmap
	hping3 iperf3 curl dig dnsmasq python3 socat conntrack ping man systemd-analyze keepalived)

if [ $# -gt 0 ]; then
	WANT=("$@")
else
	WANT=("${ALL[@]}")
fi

# Tools in /usr/sbin are not on a non-root PATH on some systems.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

missing_cmds=()
missing_pkgs=()
for c in "${WANT[@]}"; do
	if [ -z "${PKG[$c]+x}" ]; then
		echo "install-deps.sh: unknown command '$c' (known: ${ALL[*]})" >&2
		exit 2
	fi
	if ! command -v "$c" >/dev/null 2>&1; then
		missing_cmds+=("$c")
		p=${PKG[$c]}
		case " ${missing_pkgs[*]-} " in *" $p "*) ;; *) missing_pkgs+=("$p") ;; esac
	fi
done

[ ${#missing_cmds[@]} -eq 0 ] && exit 0

if [ "${EUID:-$(id -u)}" -ne 0 ]; then
	echo "install-deps.sh: missing commands: ${missing_cmds[*]}" >&2
	echo "install-deps.sh: install the Debian packages: ${missing_pkgs[*]}" >&2
	echo "install-deps.sh: (run this script as root to install them with apt-get)" >&2
	exit 1
fi

echo "install-deps.sh: installing ${missing_pkgs[*]} (for: ${missing_cmds[*]})" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
# dig: bind9-dnsutils is the real package on bookworm+; dnsutils is transitional.
if ! apt-get install -y -qq --no-install-recommends "${missing_pkgs[@]}" >/dev/null; then
	alt=()
	for p in "${missing_pkgs[@]}"; do
		[ "$p" = dnsutils ] && p=bind9-dnsutils
		alt+=("$p")
	done
	apt-get install -y -qq --no-install-recommends "${alt[@]}" >/dev/null
fi

still=()
for c in "${missing_cmds[@]}"; do
	command -v "$c" >/dev/null 2>&1 || still+=("$c")
done
if [ ${#still[@]} -gt 0 ]; then
	echo "install-deps.sh: still missing after install: ${still[*]}" >&2
	exit 1
fi
