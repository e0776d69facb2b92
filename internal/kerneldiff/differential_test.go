//go:build linux

package kerneldiff

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/statewall/statewall/internal/convgen"
	"github.com/statewall/statewall/internal/testenv"
	"github.com/statewall/statewall/pkg/conntrack"
	"github.com/statewall/statewall/pkg/rules"
)

// The make-test budget: seeds 1 to budgetSeeds with budgetGates, which
// must come to at least budgetPackets packets (TestKernelDifferential
// checks it, so that the budget cannot shrink unnoticed when the generator
// changes). About 25 s on the 2-core development VM, most of it the race
// detector's.
const (
	budgetSeeds   = 4000
	budgetPackets = 50000
	budgetGates   = convgen.GateGRE | convgen.GateSelfReverse | convgen.GateNoNextHeader | convgen.GateICMPv6OddErrors |
		convgen.GateShortQuote | convgen.GateMultiSACK | convgen.GateExtPastPayload | convgen.GateBadIPv4HeaderSum |
		convgen.GateIPv6FragHeaderChain | convgen.GateIPv6FragUnaligned | convgen.GateUDPLite | convgen.GateSCTP |
		convgen.GateTCPSynRST
)

var (
	flagSeeds    = flag.String("seeds", "", "seeds for TestKernelDifferential: a-b, or a comma-separated list of seeds and ranges (default: the make-test budget, 1-"+strconv.Itoa(budgetSeeds)+")")
	flagGates    = flag.String("gates", "", "generator gates to switch on: comma-separated names, all, or none (default: the make-test budget's, "+budgetGates.String()+")")
	flagBatch    = flag.Int("batch", 250, "conversations per oracle run")
	flagParallel = flag.Int("parallel", 2, "oracle runs at a time")
	flagFindings = flag.Int("max-findings", 1, "stop after this many disagreements, each minimized (0: no limit)")
	flagOut      = flag.String("out", "", "directory for the minimized captures (default: a new temporary directory, kept)")
	flagExpiry   = flag.String("expiry-seeds", "1-300", "seeds for TestKernelExpiry")
)

// parseSeeds reads "a-b" or "1,5,10-20".
func parseSeeds(s string) ([]uint64, error) {
	var out []uint64
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.ParseUint(lo, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("seeds %q: %v", s, err)
		}
		b := a
		if isRange {
			if b, err = strconv.ParseUint(hi, 10, 64); err != nil {
				return nil, fmt.Errorf("seeds %q: %v", s, err)
			}
		}
		if b < a {
			return nil, fmt.Errorf("seeds %q: range %d-%d goes down", s, a, b)
		}
		for x := a; ; x++ {
			out = append(out, x)
			if x == b {
				break
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("seeds %q: none", s)
	}
	return out, nil
}

func defaultPass(t testing.TB) *rules.Ruleset {
	t.Helper()
	rs, err := rules.ParseFile("../../rules/default-pass.rules")
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func needRoot(t *testing.T) {
	t.Helper()
	testenv.NeedRoot(t, "the kernel oracle: network namespaces, tun, nftables, NFQUEUE", "ip", "nft")
}

// TestKernelDifferential generates random conversations (package convgen),
// has the kernel label them through the oracle and statewall by a stateful
// replay, and requires the same label and direction for every packet the
// kernel labels. In `make test` it runs the budget (seeds 1-4000, over
// 50,000 packets); `make fuzz-kernel SEEDS=a-b GATES=...` runs any seeds.
// A disagreement fails the test with its seed and a capture minimized
// against the oracle, kept in a temporary directory (or -out) whose path
// the message gives.
func TestKernelDifferential(t *testing.T) {
	needRoot(t)
	budget := *flagSeeds == ""
	spec := *flagSeeds
	if budget {
		spec = fmt.Sprintf("1-%d", budgetSeeds)
	}
	seeds, err := parseSeeds(spec)
	if err != nil {
		t.Fatal(err)
	}
	gates := budgetGates
	if *flagGates != "" {
		if gates, err = convgen.ParseGates(*flagGates); err != nil {
			t.Fatal(err)
		}
	}
	opt := convgen.Options{Gates: gates}
	s := sweep{
		seeds: seeds, batch: *flagBatch, parallel: *flagParallel, maxFindings: *flagFindings, out: *flagOut,
		what: "gates " + gates.String(),
		cfg:  Config{Rules: defaultPass(t)},
		generate: func(seeds []uint64) []convgen.Packet {
			pkts, _ := convgen.Batch(seeds, opt, time.Millisecond)
			return pkts
		},
		how: func(seed uint64) string {
			return fmt.Sprintf("make fuzz-kernel SEEDS=%d GATES=%s", seed, gates)
		},
	}
	s.cfg.Oracle.KeepAddresses = true
	st := s.run(t)
	st.log(t, fmt.Sprintf("seeds %s, gates %s", spec, gates))
	if budget && len(st.findings) == 0 && st.packets < budgetPackets {
		t.Errorf("the budget (seeds 1-%d) came to %d packets, fewer than %d: raise budgetSeeds", budgetSeeds, st.packets, budgetPackets)
	}
}

// expiryTimeouts are the conntrack timeouts both sides use in
// TestKernelExpiry: whole seconds (the kernel's sysctls count seconds),
// below the longest gap of the conversations (8.25 s), so that some gaps
// outlast a timeout and others do not. A timeout of the ruleset whose
// kernel sysctl is missing here keeps its default on both sides; one
// without an entry here gets 5 s.
var expiryTimeouts = map[string]int{
	"tcp.syn_sent": 3, "tcp.syn_recv": 2, "tcp.established": 7, "tcp.fin_wait": 4,
	"tcp.close_wait": 3, "tcp.last_ack": 2, "tcp.time_wait": 5, "tcp.close": 1,
	"tcp.max_retrans": 4, "tcp.unacknowledged": 6,
	"udp": 3, "udp.stream": 6, "icmp": 2, "icmpv6": 4, "generic": 5,
}

// timeoutSysctl is the kernel sysctl (under net.netfilter) of the
// ruleset's timeout name: "udp" nf_conntrack_udp_timeout, "tcp.close"
// nf_conntrack_tcp_timeout_close.
func timeoutSysctl(name string) string {
	proto, state, ok := strings.Cut(name, ".")
	if !ok {
		return "nf_conntrack_" + proto + "_timeout"
	}
	return "nf_conntrack_" + proto + "_timeout_" + state
}

// expiryConfig sets every timeout of the ruleset that has a kernel sysctl
// to its expiryTimeouts value on both sides: the ruleset default-pass.rules
// plus `set timeout` lines, the oracle's namespace by sysctl.
func expiryConfig(t *testing.T) (Config, string) {
	t.Helper()
	src, err := os.ReadFile("../../rules/default-pass.rules")
	if err != nil {
		t.Fatal(err)
	}
	text := string(src) + "\n# TestKernelExpiry: the kernel's timeouts in its namespace, lowered alike\n"
	sysctls := map[string]string{}
	var set []string
	for _, name := range conntrack.TimeoutNames() {
		sc := timeoutSysctl(name)
		if _, err := os.Stat(filepath.Join("/proc/sys/net/netfilter", sc)); err != nil {
			continue
		}
		v, ok := expiryTimeouts[name]
		if !ok {
			v = 5
		}
		sysctls[sc] = strconv.Itoa(v)
		text += fmt.Sprintf("set timeout %s %ds\n", name, v)
		set = append(set, fmt.Sprintf("%s %ds", name, v))
	}
	rs, err := rules.Parse("expiry.rules", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Rules: rs}
	cfg.Oracle.KeepAddresses = true
	cfg.Oracle.Sysctls = sysctls
	cfg.Oracle.GapScale = 1
	return cfg, strings.Join(set, ", ")
}

// TestKernelExpiry compares expiry: conversations with long gaps
// (convgen.Options.Gaps) run against timeouts lowered to seconds on both
// sides, the kernel's in the oracle's namespace by sysctl, statewall's by
// the ruleset, and the oracle waits the gaps out. Conversations run
// interleaved, 20 ms apart, so that a batch takes as long as its longest
// conversation (under 30 s), not the sum.
func TestKernelExpiry(t *testing.T) {
	needRoot(t)
	seeds, err := parseSeeds(*flagExpiry)
	if err != nil {
		t.Fatal(err)
	}
	cfg, set := expiryConfig(t)
	pass := defaultPass(t)
	t.Logf("timeouts on both sides: %s", set)
	opt := convgen.Options{Gates: budgetGates, Gaps: true}
	s := sweep{
		seeds: seeds, batch: (len(seeds) + 1) / 2, parallel: 2, maxFindings: *flagFindings, out: *flagOut,
		what: "expiry",
		cfg:  cfg,
		// The conversations keep 200 ms between any packet and a
		// timeout's end (convgen.Options.Gaps).
		maxLate: 100 * time.Millisecond,
		generate: func(seeds []uint64) []convgen.Packet {
			pkts, _ := convgen.Interleave(seeds, opt, 20*time.Millisecond)
			return pkts
		},
		how: func(seed uint64) string {
			return fmt.Sprintf("STATEWALL_ROOT_TESTS=1 go test -run '^TestKernelExpiry$' ./internal/kerneldiff/ -args -expiry-seeds=%d", seed)
		},
		// How many packets expiry relabels: statewall with the kernel's
		// default timeouts, against the labels with the lowered ones.
		extra: func(path string, res *Result) (int, error) {
			long, err := Statewall(path, pass)
			n := 0
			for i := range long {
				if long[i].CT != res.Ours[i].CT {
					n++
				}
			}
			return n, err
		},
	}
	st := s.run(t)
	st.log(t, "expiry, seeds "+*flagExpiry)
	t.Logf("expiry changed the label of %d packets (statewall with the default timeouts against the lowered ones)", st.extra)
	if st.extra == 0 && len(st.findings) == 0 {
		t.Error("no packet's label depended on expiry: the test compares nothing of it")
	}
}
