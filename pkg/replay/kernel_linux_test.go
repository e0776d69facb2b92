//go:build linux

package replay_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/statewall/statewall/internal/oracle"
	"github.com/statewall/statewall/internal/testenv"
	"github.com/statewall/statewall/pkg/replay"
	"github.com/statewall/statewall/pkg/rules"
)

// kernelExceptions are the packets the kernel gives no ct label, so there
// is nothing to compare: each is named, with why. Every other packet of
// every capture must get the kernel's label, and a packet listed here that
// the kernel does label fails the test, so the list cannot hide a
// regression.
var kernelExceptions = map[string]string{
	// Frames that carry no IP never reach netfilter's IP hooks.
	"tcpreplay-test.pcap#9":   "ARP",
	"tcpreplay-test.pcap#113": "IS-IS (802.3/LLC)",
	"tcpreplay-test.pcap#115": "Ethernet loopback",
	"tcpreplay-test.pcap#10":  "MPLS", "tcpreplay-test.pcap#123": "MPLS", "tcpreplay-test.pcap#132": "MPLS",
	"tcpreplay-test.pcap#134": "MPLS", "tcpreplay-test.pcap#136": "MPLS", "tcpreplay-test.pcap#138": "MPLS",
	"tcpreplay-test.pcap#141": "MPLS", "tcpreplay-test.pcap#149": "MPLS", "tcpreplay-test.pcap#156": "MPLS",
	"tcpreplay-test.pcap#169": "MPLS", "tcpreplay-test.pcap#173": "MPLS", "tcpreplay-test.pcap#174": "MPLS",
	"tcpreplay-test.pcap#175": "MPLS", "tcpreplay-test.pcap#176": "MPLS", "tcpreplay-test.pcap#177": "MPLS",
	"tcpreplay-test.pcap#178": "MPLS",
	// A bad IPv4 header checksum: ip_rcv drops the packet before the
	// first netfilter hook.
	"tcpreplay-test.pcap#11":      "bad IPv4 header checksum",
	"tcpreplay-test.pcap#13":      "bad IPv4 header checksum",
	"tcpreplay-fragroute.pcap#9":  "bad IPv4 header checksum",
	"tcpreplay-fragroute.pcap#11": "bad IPv4 header checksum",
	// A second copy of a fragment with different bytes: the kernel keeps
	// the first and discards this one inside reassembly.
	"ipv6-malformed-fragments.pcap#7": "duplicate fragment discarded by reassembly",
}

// captures lists every capture the comparison runs on: the bundled ones in
// testdata/ and the public corpus in ../shared/pcaps.
func captures(t *testing.T) []string {
	t.Helper()
	var files []string
	for _, dir := range []string{"../../testdata", "../../../shared/pcaps"} {
		m, err := filepath.Glob(filepath.Join(dir, "*.pcap"))
		if err != nil {
			t.Fatal(err)
		}
		if len(m) == 0 {
			t.Fatalf("no captures in %s (the shared corpus must sit at ../shared beside the repository)", dir)
		}
		files = append(files, m...)
	}
	sort.Strings(files)
	return files
}

// TestConntrackLabelsEqualKernel replays every capture through the running
// kernel's conntrack (package oracle: a fresh network namespace per
// capture, the ct state read back per packet) and through statewall's
// stateful engine with a ruleset that passes everything, and requires the
// same ct label for every packet.
func TestConntrackLabelsEqualKernel(t *testing.T) {
	testenv.NeedRoot(t, "the kernel comparison: network namespaces, nftables, NFQUEUE", "ip", "nft")
	rs, err := rules.ParseFile("../../rules/default-pass.rules")
	if err != nil {
		t.Fatal(err)
	}
	seenExceptions := map[string]bool{}
	total := 0
	for _, path := range captures(t) {
		name := filepath.Base(path)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		kernel, err := oracle.Run(ctx, path, oracle.Options{})
		cancel()
		if err != nil {
			t.Fatalf("%s: kernel oracle: %v", name, err)
		}
		ours := statefulLabels(t, rs, path)
		if len(ours) != len(kernel.Labels) {
			t.Errorf("%s: statewall replayed %d packets, the kernel run has %d", name, len(ours), len(kernel.Labels))
			continue
		}
		var diffs []string
		for i, k := range kernel.Labels {
			id := fmt.Sprintf("%s#%d", name, i)
			if why, ok := kernelExceptions[id]; ok {
				seenExceptions[id] = true
				if k.CT != "" {
					t.Errorf("%s is listed as unlabelled by the kernel (%s) but the kernel says %q", id, why, k.CT)
				}
				continue
			}
			if k.CT == "" {
				t.Errorf("%s: the kernel gave no label (%s) and the packet is not in kernelExceptions", id, k.Note)
				continue
			}
			total++
			if ours[i].ct != k.CT {
				diffs = append(diffs, fmt.Sprintf("  #%d: kernel %s, statewall %s (%s)", i, k.CT, ours[i].ct, ours[i].reason))
			}
		}
		if len(diffs) > 0 {
			t.Errorf("%s: %d packets labelled differently from the kernel:\n%s", name, len(diffs), strings.Join(diffs, "\n"))
		}
	}
	for id, why := range kernelExceptions {
		if !seenExceptions[id] {
			t.Errorf("exception %s (%s) names no packet of the corpus", id, why)
		}
	}
	t.Logf("%d packets compared with the kernel", total)
}

type label struct{ ct, reason string }

func statefulLabels(t *testing.T, rs *rules.Ruleset, path string) []label {
	t.Helper()
	rp, err := replay.New(replay.Config{Rules: rs, Mode: replay.Stateful})
	if err != nil {
		t.Fatal(err)
	}
	var out []label
	err = rp.ReplayFile(path, func(r *replay.Record) error {
		if r.Index != len(out) {
			return fmt.Errorf("record %d out of order (want %d)", r.Index, len(out))
		}
		out = append(out, label{r.Stateful.Label(), r.Stateful.Reason()})
		return nil
	})
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return out
}
