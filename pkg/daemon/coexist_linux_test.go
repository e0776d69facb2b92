//go:build linux

package daemon

// Coexistence with the host's firewall (#14): a statewall pass means
// "statewall has no objection", and the packet goes on through the rest of
// the host's firewall; only a statewall block ends it. The host firewalls
// here are built as ufw and Docker build theirs, in the filter table of
// the backend statewall uses, and every test runs on both backends.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/statewall/statewall/pkg/nfq"
)

// coexistRules passes everything but TCP port 8082, which statewall
// blocks; a pass-everything ruleset would not show that statewall's blocks
// still apply next to the host's.
const coexistRules = `set default pass
set invalid pass
block proto tcp from any to any port 8082
`

// backends are the iptables backends this machine has: both, unless one
// of their tools is missing (then the test says so and runs the other).
func backends(t *testing.T) []string {
	t.Helper()
	var bs []string
	for _, b := range []string{nfq.BackendNFT, nfq.BackendLegacy} {
		ok := true
		for _, v6 := range []bool{false, true} {
			for _, verb := range []string{"", "save", "restore"} {
				if _, err := exec.LookPath(tool(b, v6, verb)); err != nil {
					ok = false
				}
			}
		}
		if ok {
			bs = append(bs, b)
		} else {
			t.Logf("no %s tools here: not tested with that backend", b)
		}
	}
	if len(bs) == 0 {
		t.Fatal("neither iptables backend is installed")
	}
	return bs
}

// webServers serves a page on each port of the server, both families.
func (tp *topo) webServers(t *testing.T, ports ...int) {
	t.Helper()
	www := filepath.Join(tp.dir, "www")
	os.MkdirAll(www, 0o755)
	os.WriteFile(filepath.Join(www, "index.html"), []byte("statewall coexist\n"), 0o644)
	for _, p := range ports {
		start(t, tp.server, "python3", "-m", "http.server", strconv.Itoa(p), "--bind", "::", "--directory", www)
		listening(t, tp.server, "tcp", p)
	}
}

// reach is which of ports the client reaches over HTTP (1 s each), from
// the client's source address src ("": its own), on the server's IPv4
// address, or with v6 its IPv6 one.
func reach(ns, src string, v6 bool, ports ...int) map[int]bool {
	got := map[int]bool{}
	for _, p := range ports {
		url := fmt.Sprintf("http://%s:%d/", serverV4, p)
		if v6 {
			url = fmt.Sprintf("http://[%s]:%d/", serverV6, p)
		}
		var extra []string
		if src != "" {
			extra = []string{"--interface", src}
		}
		got[p] = curl(ns, url, 1, extra...)
	}
	return got
}

func wantReach(t *testing.T, what string, got, want map[int]bool) {
	t.Helper()
	for p, w := range want {
		if got[p] != w {
			t.Errorf("%s: port %d reachable %v, want %v", what, p, got[p], w)
		}
	}
}

// tool names a command of an iptables backend for a family:
// tool("iptables-nft", true, "restore") is "ip6tables-nft-restore".
func tool(backend string, v6 bool, verb string) string {
	name := backend
	if v6 {
		name = "ip6" + name[len("ip"):]
	}
	if verb != "" {
		name += "-" + verb
	}
	return name
}

// hostFirewall loads rules into the filter tables of ns with backend,
// IPv4 and (if v6 is not "") IPv6, ADDR in v4 replaced by the family's
// address.
func hostFirewall(t *testing.T, ns, backend, v4, v6 string) {
	t.Helper()
	mustNS(t, ns, v4, tool(backend, false, "restore"), "--noflush")
	if v6 != "" {
		mustNS(t, ns, v6, tool(backend, true, "restore"), "--noflush")
	}
}

var (
	saveComment = regexp.MustCompile(`(?m)^#.*\n`)
	saveTable   = regexp.MustCompile(`(?ms)^\*(\w+)\n(.*?)^COMMIT\n`)
)

// legacySave is what iptables-legacy-save and ip6tables-legacy-save show
// in ns, counters zeroed, without the tables that hold nothing but empty
// built-in chains accepting everything: the legacy backend cannot delete a
// table, so the mangle and security tables statewall used stay, empty
// (see pkg/nfq/doc.go).
func legacySave(t *testing.T, ns string) string {
	t.Helper()
	var b strings.Builder
	for _, v6 := range []bool{false, true} {
		out := mustNS(t, ns, "", tool(nfq.BackendLegacy, v6, "save"))
		out = counterRE.ReplaceAllString(saveComment.ReplaceAllString(out, ""), "[0:0]")
		for _, m := range saveTable.FindAllStringSubmatch(out, -1) {
			empty := true
			for line := range strings.Lines(m[2]) {
				if !regexp.MustCompile(`^:[A-Z]+ ACCEPT \[0:0\]\n$`).MatchString(line) {
					empty = false
				}
			}
			if !empty {
				b.WriteString(m[0])
			}
		}
	}
	return b.String()
}

// TestCoexistUfwStyleHost: the server runs a ufw-like filter table (policy
// DROP on INPUT; loopback, ICMP and established allowed; ports 80, 8080
// and 8082 allowed) with one more rule, between ufw's chains as fail2ban
// puts its own, that drops port 8080; and statewall on input and output with a ruleset that passes everything but
// 8082. With statewall running, exactly what the host's firewall and
// statewall both pass gets through: 80. 8080 stays dropped by the host's
// later DROP rule, 8081 by its default-drop policy, 8082 by statewall.
// The same holds with the daemon killed (-9) and --fail-open, while the
// kernel bypasses the queue: fail-open opens statewall, not the host. The
// next start replaces the crashed run's rules, and a clean stop leaves the
// ruleset as it was.
func TestCoexistUfwStyleHost(t *testing.T) {
	needRoot(t, "curl", "python3", "ss")
	for _, backend := range backends(t) {
		t.Run(backend, func(t *testing.T) {
			tp := newTopo(t)
			ports := []int{80, 8080, 8081, 8082}
			tp.webServers(t, ports...)
			rules := writeRules(t, filepath.Join(tp.dir, "coexist.rules"), coexistRules)
			sock := filepath.Join(tp.dir, "host.sock")
			// ufw's shape, reduced: its chains are jumped to from INPUT
			// in this order, and its default policy is DROP.
			const ufw = `*filter
:INPUT DROP [0:0]
:ufw-before-input - [0:0]
:ufw-user-input - [0:0]
-A INPUT -j ufw-before-input
-A INPUT -p tcp --dport 8080 -j DROP
-A INPUT -j ufw-user-input
-A ufw-before-input -i lo -j ACCEPT
-A ufw-before-input -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A ufw-before-input -p %s -j ACCEPT
-A ufw-user-input -p tcp --dport 80 -j ACCEPT
-A ufw-user-input -p tcp --dport 8080 -j ACCEPT
-A ufw-user-input -p tcp --dport 8082 -j ACCEPT
COMMIT
`
			hostFirewall(t, tp.server, backend, fmt.Sprintf(ufw, "icmp"), fmt.Sprintf(ufw, "ipv6-icmp"))
			want := map[int]bool{80: true, 8080: false, 8081: false, 8082: true}
			wantReach(t, "host firewall alone", reach(tp.client, "", false, ports...), want)
			var legacyBefore string
			if backend == nfq.BackendLegacy {
				legacyBefore = legacySave(t, tp.server)
			}

			d := tp.startDaemon(t, tp.server, sock, "--rules", rules, "--hooks", "input,output", "--backend", backend, "--fail-open")
			rs := ruleset(t, tp.server)
			if backend == nfq.BackendLegacy {
				rs = strings.Join([]string{mustNS(t, tp.server, "", "iptables-legacy-save"), mustNS(t, tp.server, "", "ip6tables-legacy-save")}, "")
			}
			for _, w := range []string{"*mangle", "-A INPUT -m comment --comment statewall -j STATEWALL-INPUT", "*security", "-A OUTPUT -m comment --comment statewall -j STATEWALL-OUTPUT"} {
				if !strings.Contains(rs, w) {
					t.Errorf("no %q in the %s ruleset:\n%s", w, backend, rs)
				}
			}
			want[8082] = false
			wantReach(t, "statewall", reach(tp.client, "", false, ports...), want)
			wantReach(t, "statewall, IPv6", reach(tp.client, "", true, ports...), want)
			// statewall passed the packets to 8080 and 8081; the host dropped them.
			if st := statusOf(t, sock); st.ByReason["block rule"] == 0 || st.Pass == 0 {
				t.Errorf("status: %+v", st)
			}

			d.kill9(t)
			want[8082] = true // statewall is not there to block it
			wantReach(t, "statewall killed, fail-open", reach(tp.client, "", false, ports...), want)

			d = tp.startDaemon(t, tp.server, sock, "--rules", rules, "--hooks", "input,output", "--backend", backend, "--fail-open")
			want[8082] = false
			wantReach(t, "statewall restarted over the crashed run's rules", reach(tp.client, "", false, ports...), want)
			tp.stopClean(t, d)
			if backend == nfq.BackendLegacy {
				if after := legacySave(t, tp.server); after != legacyBefore {
					t.Errorf("legacy ruleset after a clean stop:\n%s\nbefore:\n%s", after, legacyBefore)
				}
			}
			want[8082] = true
			wantReach(t, "after statewall stopped", reach(tp.client, "", false, ports...), want)
		})
	}
}

// TestCoexistDockerStyleRouter: the router forwards for a Docker-like
// filter table: FORWARD policy DROP, a DOCKER-USER chain jumped to first
// (dropping one source, 198.18.1.3), replies accepted by state, and a
// DOCKER chain for what goes out to the "containers" (eth1), which accepts
// the published ports 80 and 8082 only. statewall on forward passes
// everything but 8082. Docker's accept of 80 still works, its drops (the
// DOCKER-USER source, the unpublished 8080) still apply, and statewall's
// block of 8082 applies too.
func TestCoexistDockerStyleRouter(t *testing.T) {
	needRoot(t, "curl", "python3", "ss")
	for _, backend := range backends(t) {
		t.Run(backend, func(t *testing.T) {
			tp := newTopo(t)
			const blockedV4 = "198.18.1.3"
			mustNS(t, tp.client, "", "ip", "addr", "add", blockedV4+"/24", "dev", "eth0")
			ports := []int{80, 8080, 8082}
			tp.webServers(t, ports...)
			rules := writeRules(t, filepath.Join(tp.dir, "coexist.rules"), coexistRules)
			sock := filepath.Join(tp.dir, "router.sock")
			hostFirewall(t, tp.router, backend, `*filter
:FORWARD DROP [0:0]
:DOCKER - [0:0]
:DOCKER-USER - [0:0]
-A FORWARD -j DOCKER-USER
-A FORWARD -o eth1 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -o eth1 -j DOCKER
-A FORWARD -i eth1 ! -o eth1 -j ACCEPT
-A DOCKER -d `+serverV4+`/32 -i eth0 -o eth1 -p tcp -m tcp --dport 80 -j ACCEPT
-A DOCKER -d `+serverV4+`/32 -i eth0 -o eth1 -p tcp -m tcp --dport 8082 -j ACCEPT
-A DOCKER-USER -s `+blockedV4+`/32 -j DROP
-A DOCKER-USER -j RETURN
COMMIT
`, "")
			want := map[int]bool{80: true, 8080: false, 8082: true}
			wantReach(t, "Docker alone", reach(tp.client, "", false, ports...), want)
			wantReach(t, "Docker alone, from the DOCKER-USER-dropped source", reach(tp.client, blockedV4, false, ports...), map[int]bool{80: false, 8082: false})
			var legacyBefore string
			if backend == nfq.BackendLegacy {
				legacyBefore = legacySave(t, tp.router)
			}

			d := tp.startDaemon(t, tp.router, sock, "--rules", rules, "--hooks", "forward", "--backend", backend)
			want[8082] = false
			wantReach(t, "Docker and statewall", reach(tp.client, "", false, ports...), want)
			wantReach(t, "Docker and statewall, from the DOCKER-USER-dropped source", reach(tp.client, blockedV4, false, ports...), map[int]bool{80: false, 8080: false, 8082: false})
			// IPv6 has no Docker rules here (the FORWARD policy is only
			// set for IPv4): statewall alone decides.
			wantReach(t, "statewall alone, IPv6", reach(tp.client, "", true, ports...), map[int]bool{80: true, 8080: true, 8082: false})
			if st := statusOf(t, sock); st.ByReason["block rule"] == 0 {
				t.Errorf("status: %+v", st)
			}
			tp.stopClean(t, d)
			if backend == nfq.BackendLegacy {
				if after := legacySave(t, tp.router); after != legacyBefore {
					t.Errorf("legacy ruleset after a clean stop:\n%s\nbefore:\n%s", after, legacyBefore)
				}
			}
			want[8082] = true
			wantReach(t, "after statewall stopped", reach(tp.client, "", false, ports...), want)
		})
	}
}

// TestCoexistLocalDNAT is why output diverts from the security table, after
// the nat table, and not from mangle: the host (the server) rewrites
// connections to 198.18.2.80:8000 to the router's port 80 in nat OUTPUT,
// as Docker does for the host's own connections to a published port and
// kube-proxy for a node's connections to a service. statewall must see
// the outgoing SYN as it leaves, with the address its reply comes back
// from; otherwise a stateful "block in" ruleset blocks the SYN/ACK.
func TestCoexistLocalDNAT(t *testing.T) {
	needRoot(t, "curl", "python3", "ss")
	for _, backend := range backends(t) {
		t.Run(backend, func(t *testing.T) {
			tp := newTopo(t)
			www := filepath.Join(tp.dir, "www")
			os.MkdirAll(www, 0o755)
			os.WriteFile(filepath.Join(www, "index.html"), []byte("router\n"), 0o644)
			start(t, tp.router, "python3", "-m", "http.server", "80", "--bind", routerSV4, "--directory", www)
			listening(t, tp.router, "tcp", 80)
			mustNS(t, tp.server, `*nat
-A OUTPUT -d 198.18.2.80/32 -p tcp --dport 8000 -j DNAT --to-destination `+routerSV4+`:80
COMMIT
`, tool(backend, false, "restore"), "--noflush")
			rules := writeRules(t, filepath.Join(tp.dir, "out.rules"), "set default block\nset invalid block\npass out all\n")
			sock := filepath.Join(tp.dir, "host.sock")
			d := tp.startDaemon(t, tp.server, sock, "--rules", rules, "--mode", "stateful", "--hooks", "input,output", "--backend", backend)
			if !curl(tp.server, "http://198.18.2.80:8000/", 2) {
				out, _, _ := cli("conntrack", "--socket", sock)
				t.Errorf("the host's DNATed connection failed: statewall did not see its SYN as it left\nstatus %+v\nconntrack:\n%s", statusOf(t, sock).ByReason, out)
			}
			if curl(tp.router, "http://"+serverV4+":9/", 1) {
				t.Error("an inbound connection passed a block-in ruleset")
			}
			tp.stopClean(t, d)
		})
	}
}
