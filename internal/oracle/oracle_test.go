//go:build linux

package oracle

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/statewall/statewall/internal/pcaprewrite"
	"github.com/statewall/statewall/internal/testenv"
)

const sharedPcaps = "../../../shared/pcaps"

// requireRoot fails (not skips) without root: this machine and CI run tests
// as root, and a silently skipped oracle would hide a broken setup.
func requireRoot(t *testing.T) {
	t.Helper()
	testenv.NeedRoot(t, "the kernel oracle: network namespaces, tun, nftables, NFQUEUE", "ip", "nft")
}

func labelsOf(t *testing.T, file string) []Label {
	t.Helper()
	requireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ls, err := Labels(ctx, filepath.Join(sharedPcaps, file))
	if err != nil {
		t.Fatal(err)
	}
	return ls
}

func expect(t *testing.T, ls []Label, idx int, ct string) {
	t.Helper()
	if idx >= len(ls) {
		t.Fatalf("packet %d: only %d labels", idx, len(ls))
	}
	if ls[idx].CT != ct {
		t.Errorf("packet %d: kernel says %q (%s), want %q", idx, ls[idx].CT, ls[idx].Note, ct)
	}
}

// The facts below are kernel behaviour as the reference document
// (docs/conntrack-reference.md) describes it.

func TestSessionEquivalence(t *testing.T) {
	ls := labelsOf(t, "tcp-session-equivalence.pcap")
	if len(ls) != 10 {
		t.Fatalf("%d labels, want 10", len(ls))
	}
	expect(t, ls, 0, "new")         // SYN
	expect(t, ls, 1, "established") // SYN/ACK: reply direction
	if ls[1].Dir != "reply" {
		t.Errorf("SYN/ACK direction %q, want reply", ls[1].Dir)
	}
	for i := 2; i < 10; i++ {
		expect(t, ls, i, "established")
	}
}

func TestOutOfWindow(t *testing.T) {
	ls := labelsOf(t, "tcp-stream-out-of-window.pcap")
	expect(t, ls, 0, "new")
	expect(t, ls, 1, "established")
	expect(t, ls, 2, "invalid") // data ~100 KB beyond the window
}

func TestICMPErrorRelated(t *testing.T) {
	ls := labelsOf(t, "flow-drop-iponly.pcap")
	if len(ls) != 7 {
		t.Fatalf("%d labels, want 7", len(ls))
	}
	for i := 0; i < 3; i++ {
		expect(t, ls, i, "new") // a repeated query before any answer is new
	}
	for i := 3; i < 6; i++ {
		expect(t, ls, i, "established")
	}
	expect(t, ls, 6, "related") // ICMP port unreachable quoting the last answer
}

func TestNDAndMLDUntracked(t *testing.T) {
	const file = "ipv6-malformed-fragments.pcap"
	ls := labelsOf(t, file)
	pkts, _, err := pcaprewrite.RewriteFile(filepath.Join(sharedPcaps, file))
	if err != nil {
		t.Fatal(err)
	}
	nd := 0
	for i, p := range pkts {
		if p.Data == nil {
			continue
		}
		g := gopacket.NewPacket(p.Data, layers.LayerTypeIPv6, gopacket.Default)
		icmp, _ := g.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6)
		if icmp == nil {
			continue
		}
		switch ty := icmp.TypeCode.Type(); {
		case ty >= 130 && ty <= 136 || ty == 143:
			nd++
			expect(t, ls, i, "untracked")
		}
	}
	if nd < 4 {
		t.Errorf("only %d ND/MLD packets found", nd)
	}
	// The fragmented echo request: the kernel reassembles before conntrack
	// and every fragment of the datagram carries its one label; the second
	// copy of the offset-408 fragment (different bytes) is not part of it.
	for _, i := range []int{4, 5, 8} {
		if ls[i].CT == "" || ls[i].CT != ls[4].CT || !strings.Contains(ls[i].Note, "reassembled datagram") {
			t.Errorf("fragment %d: %+v", i, ls[i])
		}
	}
	if ls[7].CT != "" {
		t.Errorf("duplicate fragment 7: %+v, want no label", ls[7])
	}
}

func TestSynFloodAllNew(t *testing.T) {
	ls := labelsOf(t, "tcp-syn-flood.pcap")
	if len(ls) != 200 {
		t.Fatalf("%d labels, want 200", len(ls))
	}
	for i := range ls {
		expect(t, ls, i, "new")
	}
}

func TestFragmentsShareLabel(t *testing.T) {
	ls := labelsOf(t, "ipv4-frag-tcp-syn.pcap")
	for i := 0; i < 3; i++ {
		expect(t, ls, i, "new")
	}
}

const goldenDir = "testdata/kernel-labels"

// golden is one row of the goldens' README table.
type golden struct {
	file, sha256 string
}

// readGoldens parses testdata/kernel-labels/README.md: the kernel release
// the goldens were made on and, per capture base name, the golden file and
// the sha256 of the capture it was made from.
func readGoldens(t *testing.T) (kernel string, rows map[string]golden) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(goldenDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	rows = map[string]golden{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, ok := strings.CutPrefix(line, "- Kernel: "); ok {
			kernel = strings.TrimSpace(k)
		}
		f := strings.Split(line, "|")
		if len(f) == 7 && strings.HasSuffix(strings.TrimSpace(f[1]), ".jsonl") {
			rows[filepath.Base(strings.TrimSpace(f[2]))] = golden{strings.TrimSpace(f[1]), strings.TrimSpace(f[3])}
		}
	}
	if kernel == "" || len(rows) == 0 {
		t.Fatal("goldens README: no kernel line or no table")
	}
	return kernel, rows
}

type goldenLine struct {
	File  string `json:"file"`
	Index int    `json:"index"`
	CT    string `json:"ct"`
	Dir   string `json:"dir,omitempty"`
	Note  string `json:"note,omitempty"`
}

// TestCorpusRuns replays every shared capture (and testdata/) and checks the
// oracle's own consistency: every packet has a label or a reason, the
// kernel queued exactly what was injected, every labelled packet reached
// local delivery (so new entries were confirmed), and no namespace is left.
// When the running kernel and a capture's bytes are those the goldens were
// made from, the live labels must equal the golden ones.
func TestCorpusRuns(t *testing.T) {
	requireRoot(t)
	files, _ := filepath.Glob(filepath.Join(sharedPcaps, "*.pcap"))
	more, _ := filepath.Glob("../../testdata/*.pcap")
	files = append(files, more...)
	if len(files) < 35 {
		t.Fatalf("only %d captures found", len(files))
	}
	goldKernel, goldens := readGoldens(t)
	var uts unix.Utsname
	unix.Uname(&uts)
	kernel := unix.ByteSliceToString(uts.Release[:])
	if kernel != goldKernel {
		t.Logf("running kernel %s, goldens made on %s: not comparing with the goldens", kernel, goldKernel)
	}
	compared := 0
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	total := 0
	for _, f := range files {
		res, err := Run(ctx, f, Options{})
		if err != nil {
			t.Fatal(err)
		}
		total += len(res.Labels)
		if g, ok := goldens[filepath.Base(f)]; ok && kernel == goldKernel {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != g.sha256 {
				t.Logf("%s changed since its golden was made: not compared", filepath.Base(f))
			} else {
				compared++
				gb, err := os.ReadFile(filepath.Join(goldenDir, g.file))
				if err != nil {
					t.Fatal(err)
				}
				var want []goldenLine
				for _, line := range strings.Split(strings.TrimSpace(string(gb)), "\n") {
					var gl goldenLine
					if err := json.Unmarshal([]byte(line), &gl); err != nil {
						t.Fatalf("%s: %v", g.file, err)
					}
					want = append(want, gl)
				}
				if len(want) != len(res.Labels) {
					t.Errorf("%s: %d live labels, %d golden", filepath.Base(f), len(res.Labels), len(want))
				}
				for i := range min(len(want), len(res.Labels)) {
					l, w := res.Labels[i], want[i]
					if l.Index != w.Index || l.CT != w.CT || l.Dir != w.Dir || l.Note != w.Note {
						t.Errorf("%s #%d: live %+v, golden %+v", filepath.Base(f), i, l, w)
					}
				}
			}
		}
		for _, l := range res.Labels {
			if l.CT == "" && l.Note == "" {
				t.Errorf("%s #%d: no label and no note", filepath.Base(f), l.Index)
			}
			for _, bad := range []string{"differs from the injected", "not delivered to LOCAL_IN", "does not match", "events for one injected packet", "mark changed"} {
				if strings.Contains(l.Note, bad) {
					t.Errorf("%s #%d: %s", filepath.Base(f), l.Index, l.Note)
				}
			}
		}
	}
	t.Logf("%d captures, %d packets in %v; %d compared with their goldens", len(files), total, time.Since(start).Round(time.Millisecond), compared)
	ents, _ := os.ReadDir("/run/netns")
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), fmt.Sprintf("%s%d-", nsPrefix, os.Getpid())) {
			t.Errorf("namespace %s left behind", e.Name())
		}
	}
}

func TestSentinelPacket(t *testing.T) {
	b := sentinelPacket(0x0102030405060708)
	g := gopacket.NewPacket(b, layers.LayerTypeIPv4, gopacket.Default)
	ip, _ := g.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	udp, _ := g.Layer(layers.LayerTypeUDP).(*layers.UDP)
	if ip == nil || udp == nil {
		t.Fatal("sentinel does not decode as IPv4/UDP")
	}
	udp.SetNetworkLayerForChecksum(ip)
	for _, l := range []gopacket.LayerWithChecksum{ip, udp} {
		if err, res := l.VerifyChecksum(); err != nil || !res.Valid {
			t.Errorf("sentinel %T checksum: %v %+v", l, err, res)
		}
	}
	if seq, ok := sentinelSeq(b); !ok || seq != 0x0102030405060708 {
		t.Errorf("sentinelSeq = %x, %v", seq, ok)
	}
	if !pcaprewrite.ReservedIPv4.Contains(sentinelSrc) || !pcaprewrite.ReservedIPv4.Contains(sentinelDst) {
		t.Error("sentinel addresses must be in the range the rewriter never hands out")
	}
	c := append([]byte(nil), b...)
	binary.BigEndian.PutUint32(c[12:], 0xc6120001)
	if _, ok := sentinelSeq(c); ok {
		t.Error("a capture packet taken for a sentinel")
	}
}

func TestMarkLabel(t *testing.T) {
	for _, c := range []struct {
		mark    uint32
		ct, dir string
	}{{1, "new", "original"}, {0x12, "established", "reply"}, {0x13, "related", "reply"}, {4, "invalid", ""}, {5, "untracked", ""}, {0, "", ""}} {
		if ct, dir := markLabel(c.mark); ct != c.ct || dir != c.dir {
			t.Errorf("markLabel(%#x) = %q %q, want %q %q", c.mark, ct, dir, c.ct, c.dir)
		}
	}
}
