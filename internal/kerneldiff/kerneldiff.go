//go:build linux

package kerneldiff

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/statewall/statewall/internal/convgen"
	"github.com/statewall/statewall/internal/oracle"
	"github.com/statewall/statewall/pkg/replay"
	"github.com/statewall/statewall/pkg/rules"
)

// Config says how to compare.
type Config struct {
	// Rules is the ruleset statewall replays with: rules/default-pass.rules
	// for label comparisons (every packet passes, so every entry the
	// kernel confirms is stored here too), with `set timeout` lines when
	// Oracle lowers the kernel's timeouts.
	Rules *rules.Ruleset
	// Oracle are the kernel oracle's options; KeepAddresses is forced on
	// for generated captures by Batch and Minimize.
	Oracle oracle.Options
	// IgnoreDir compares the ct state only, not the direction.
	IgnoreDir bool
}

// Label is statewall's label of one packet, in the oracle's terms.
type Label struct {
	CT     string // new, established, related, invalid, untracked, or ""
	Dir    string // original or reply, for new, established and related
	Reason string
}

// Disagreement is a packet the kernel and statewall label differently.
type Disagreement struct {
	Index  int
	Kernel oracle.Label
	Ours   Label
}

func (d Disagreement) String() string {
	return fmt.Sprintf("#%d: kernel %s, statewall %s (%s)", d.Index, labelText(d.Kernel.CT, d.Kernel.Dir), labelText(d.Ours.CT, d.Ours.Dir), d.Ours.Reason)
}

func labelText(ct, dir string) string {
	if ct == "" {
		ct = `""`
	}
	if dir != "" {
		return ct + "/" + dir
	}
	return ct
}

// Result is one capture compared.
type Result struct {
	Kernel []oracle.Label
	Ours   []Label
	Diffs  []Disagreement
	// Compared is the number of packets compared; Unlabelled the packets
	// the kernel gave no label (not injected, dropped before conntrack,
	// fragments of datagrams never completed): nothing to compare.
	Compared, Unlabelled int
	KernelTime, OurTime  time.Duration
	// KernelLate is the oracle's Result.MaxLate: with gaps honoured, the
	// most a packet reached the kernel after its time.
	KernelLate time.Duration
}

// Compare labels the capture at path with the kernel (oracle.Run) and with
// statewall's stateful replay, and lists the packets they label
// differently.
func Compare(ctx context.Context, path string, cfg Config) (*Result, error) {
	if cfg.Rules == nil {
		return nil, errors.New("kerneldiff: no ruleset")
	}
	k, err := oracle.Run(ctx, path, cfg.Oracle)
	if err != nil {
		return nil, err
	}
	res := &Result{Kernel: k.Labels, KernelTime: k.Elapsed, KernelLate: k.MaxLate}
	start := time.Now()
	res.Ours, err = Statewall(path, cfg.Rules)
	res.OurTime = time.Since(start)
	if err != nil {
		return nil, err
	}
	if len(res.Ours) != len(res.Kernel) {
		return nil, fmt.Errorf("kerneldiff: %s: statewall replayed %d packets, the kernel %d", filepath.Base(path), len(res.Ours), len(res.Kernel))
	}
	for i, kl := range res.Kernel {
		if kl.CT == "" {
			res.Unlabelled++
			continue
		}
		res.Compared++
		o := res.Ours[i]
		if o.CT != kl.CT || !cfg.IgnoreDir && o.Dir != kl.Dir {
			res.Diffs = append(res.Diffs, Disagreement{Index: i, Kernel: kl, Ours: o})
		}
	}
	return res, nil
}

// Statewall replays the capture through statewall's stateful engine with
// rs, with transport checksums checked (the kernel's default,
// nf_conntrack_checksum=1), and returns each packet's label.
func Statewall(path string, rs *rules.Ruleset) ([]Label, error) {
	rp, err := replay.New(replay.Config{Rules: rs, Mode: replay.Stateful})
	if err != nil {
		return nil, err
	}
	var out []Label
	err = rp.ReplayFile(path, func(r *replay.Record) error {
		if r.Index != len(out) {
			return fmt.Errorf("record %d out of order (want %d)", r.Index, len(out))
		}
		d := r.Stateful
		l := Label{CT: d.Label(), Reason: d.Reason()}
		switch l.CT {
		case "new", "established", "related":
			l.Dir = "original"
			if d.CT.Reply {
				l.Dir = "reply"
			}
		}
		out = append(out, l)
		return nil
	})
	return out, err
}

// Finding is one disagreement, minimized.
type Finding struct {
	Seed uint64
	// First is the disagreement in the batch it was found in.
	First Disagreement
	// Packets is the minimized capture, Path where it was written, Result
	// its comparison.
	Packets []convgen.Packet
	Path    string
	Result  *Result
	// Target is the index in Packets of the packet that disagrees.
	Target int
	Runs   int  // oracle runs the minimization took
	GaveUp bool // it stopped at MaxMinimizeRuns, not at a 1-minimal set
}

// MaxMinimizeRuns bounds the oracle runs of one minimization (at about
// 60 ms a run on small captures: a few minutes).
const MaxMinimizeRuns = 3000

var errGiveUp = errors.New("kerneldiff: minimization gave up")

// Report describes a finding for a failure message or a .cmd file.
func (f *Finding) Report() string {
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d: %s\n", f.Seed, f.First)
	gave := ""
	if f.GaveUp {
		gave = ", gave up before a minimal set"
	}
	fmt.Fprintf(&b, "minimized to %d packets (%d oracle runs%s): %s\n", len(f.Packets), f.Runs, gave, f.Path)
	for i, p := range f.Packets {
		if len(f.Packets) > 40 && i < len(f.Packets)-30 && i >= 5 {
			if i == 5 {
				fmt.Fprintf(&b, "  ... %d packets ...\n", len(f.Packets)-35)
			}
			continue
		}
		mark := " "
		if i == f.Target {
			mark = ">"
		}
		k, o := f.Result.Kernel[i], f.Result.Ours[i]
		fmt.Fprintf(&b, "%s #%d kernel %-22s statewall %-22s %s\n", mark, i, labelText(k.CT, k.Dir), labelText(o.CT, o.Dir), p.Note)
		if k.Note != "" {
			fmt.Fprintf(&b, "      kernel's note: %s\n", k.Note)
		}
	}
	return b.String()
}

// WriteCmd writes f.Path+".cmd": how the capture was made (how: the
// command that found it), when, on which kernel, and every packet with the
// generator's note and the two labels, so that the capture can be kept as
// a regression (testdata/kerneldiff) and read without tools.
func (f *Finding) WriteCmd(how string) error {
	var uts unix.Utsname
	unix.Uname(&uts)
	var b strings.Builder
	fmt.Fprintf(&b, "# %s: a disagreement with the kernel's conntrack, minimized\n", filepath.Base(f.Path))
	fmt.Fprintf(&b, "# Found by the differential test (internal/kerneldiff, conversations from internal/convgen):\n#   %s\n", how)
	fmt.Fprintf(&b, "# which generated seed %d and found, in its batch, %s;\n", f.Seed, f.First)
	fmt.Fprintf(&b, "# Minimize then shrank it against the kernel oracle (oracle.Options.KeepAddresses) to %d packets in %d runs.\n", len(f.Packets), f.Runs)
	fmt.Fprintf(&b, "# date:   %s\n# kernel: Linux %s\n# go:     %s\n#\n", time.Now().UTC().Format(time.RFC3339), unix.ByteSliceToString(uts.Release[:]), runtime.Version())
	b.WriteString("# Packets: the kernel's label, statewall's (stateful replay, rules/default-pass.rules), the generator's note.\n")
	b.WriteString("# '>' marks the packet the minimization kept disagreeing.\n")
	for i, p := range f.Packets {
		mark := " "
		if i == f.Target {
			mark = ">"
		}
		k, o := f.Result.Kernel[i], f.Result.Ours[i]
		fmt.Fprintf(&b, "%s #%d kernel %s; statewall %s (%s)\n    %s\n    %s\n", mark, i, labelText(k.CT, k.Dir), labelText(o.CT, o.Dir), o.Reason, ipSummary(p.Data), p.Note)
		if k.Note != "" {
			fmt.Fprintf(&b, "    kernel's note: %s\n", k.Note)
		}
	}
	return os.WriteFile(f.Path+".cmd", []byte(b.String()), 0o644)
}

// ipSummary writes an IP packet's version, addresses and length.
func ipSummary(b []byte) string {
	switch {
	case len(b) >= 20 && b[0]>>4 == 4:
		return fmt.Sprintf("IPv4 %v > %v, %d bytes", netip.AddrFrom4([4]byte(b[12:16])), netip.AddrFrom4([4]byte(b[16:20])), len(b))
	case len(b) >= 40 && b[0]>>4 == 6:
		return fmt.Sprintf("IPv6 %v > %v, %d bytes", netip.AddrFrom16([16]byte(b[8:24])), netip.AddrFrom16([16]byte(b[24:40])), len(b))
	}
	return fmt.Sprintf("%d bytes", len(b))
}

// Minimize shrinks pkts (a batch in which packet target disagrees, d) to
// the fewest packets on which the target packet still gets the same two
// labels, asking the oracle at every step, and writes the result to
// dir/seed-SEED.pcap. It tries the target's own conversation first: the
// conversations of a batch use addresses of their own and cannot disturb
// one another.
func Minimize(ctx context.Context, pkts []convgen.Packet, d Disagreement, cfg Config, dir string) (*Finding, error) {
	cfg.Oracle.KeepAddresses = true
	target := d.Index
	f := &Finding{Seed: pkts[target].Seed, First: d}
	try := filepath.Join(dir, "try.pcap")
	var last *Result
	fails := func(keep []int) (bool, error) {
		sub := make([]convgen.Packet, len(keep))
		pos := -1
		for i, k := range keep {
			sub[i] = pkts[k]
			if k == target {
				pos = i
			}
		}
		if err := convgen.WriteFile(try, sub); err != nil {
			return false, err
		}
		if f.Runs >= MaxMinimizeRuns {
			return false, errGiveUp
		}
		f.Runs++
		r, err := Compare(ctx, try, cfg)
		if err != nil {
			return false, err
		}
		k, o := r.Kernel[pos], r.Ours[pos]
		same := k.CT == d.Kernel.CT && k.Dir == d.Kernel.Dir && o.CT == d.Ours.CT && (cfg.IgnoreDir || o.Dir == d.Ours.Dir)
		if same {
			last = r
		}
		return same, nil
	}
	// Packets after the target matter too: a fragment gets the label of
	// its datagram, which a later fragment may complete.
	var conv, all []int
	for i := range pkts {
		all = append(all, i)
		if pkts[i].Conv == pkts[target].Conv {
			conv = append(conv, i)
		}
	}
	base := all
	if ok, err := fails(conv); err != nil {
		return nil, err
	} else if ok {
		base = conv
	}
	// Minimize over positions in base.
	var must []int
	for i, k := range base {
		if k == target {
			must = []int{i}
		}
	}
	best := make([]int, len(base))
	for i := range base {
		best[i] = i
	}
	keep, err := convgen.Minimize(len(base), must, func(sub []int) (bool, error) {
		idx := make([]int, len(sub))
		for i, s := range sub {
			idx[i] = base[s]
		}
		ok, err := fails(idx)
		if ok && len(sub) < len(best) {
			best = sub
		}
		return ok, err
	})
	if errors.Is(err, errGiveUp) {
		// Keep what the last success left: every packet of base still
		// in the smallest failing set found.
		keep, f.GaveUp = best, true
	} else if err != nil {
		return nil, err
	}
	for _, s := range keep {
		f.Packets = append(f.Packets, pkts[base[s]])
		if base[s] == target {
			f.Target = len(f.Packets) - 1
		}
	}
	// Recompute the result of the final set (the last success may have
	// been a larger set) and write it where it stays.
	f.Path = filepath.Join(dir, fmt.Sprintf("seed-%d.pcap", f.Seed))
	if err := convgen.WriteFile(f.Path, f.Packets); err != nil {
		return nil, err
	}
	f.Runs++
	if last, err = Compare(ctx, f.Path, cfg); err != nil {
		return nil, err
	}
	f.Result = last
	os.Remove(try)
	return f, nil
}
