//go:build linux

package kerneldiff

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/statewall/statewall/internal/convgen"
)

// sweep runs seeds through the kernel and statewall in batches of
// conversations, several batches at a time, and reports every
// disagreement (up to maxFindings, 0 for all), minimized, as a test error.
type sweep struct {
	seeds       []uint64
	batch       int // conversations per oracle run
	parallel    int // oracle runs at a time
	maxFindings int
	out         string // where minimized captures go ("": a new temporary directory)
	what        string // for messages: "gates none"
	cfg         Config
	// generate makes one batch's packets.
	generate func(seeds []uint64) []convgen.Packet
	// how returns the command that reproduces seed's finding.
	how func(seed uint64) string
	// extra, if set, runs on each batch's capture and its result; what it
	// returns is summed into sweepStats.extra.
	extra func(path string, res *Result) (int, error)
	// maxLate, if set, reruns (twice at most) a batch in which the oracle
	// injected a packet later than this after its time: under a loaded
	// machine the kernel's clock and the capture's would part.
	maxLate time.Duration
}

// sweepStats is what a sweep saw.
type sweepStats struct {
	packets, compared, unlabelled int
	kernelTime, ourTime, elapsed  time.Duration
	kinds, reasons                map[string]int
	findings                      []*Finding
	extra                         int
	late                          time.Duration // the oracle's worst lateness
}

func (s sweep) run(t *testing.T) *sweepStats {
	t.Helper()
	st := &sweepStats{kinds: map[string]int{}, reasons: map[string]int{}}
	work := t.TempDir()
	var batches [][]uint64
	for i := 0; i < len(s.seeds); i += s.batch {
		batches = append(batches, s.seeds[i:min(i+s.batch, len(s.seeds))])
	}
	type outcome struct {
		pkts  []convgen.Packet
		res   *Result
		extra int
		err   error
	}
	done := make([]chan outcome, len(batches))
	for i := range done {
		done[i] = make(chan outcome, 1)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	next := make(chan int)
	for range max(1, s.parallel) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for bi := range next {
				o := outcome{pkts: s.generate(batches[bi])}
				path := filepath.Join(work, fmt.Sprintf("batch-%d.pcap", bi))
				if o.err = convgen.WriteFile(path, o.pkts); o.err == nil {
					o.res, o.err = Compare(ctx, path, s.cfg)
					for try := 0; o.err == nil && s.maxLate > 0 && o.res.KernelLate > s.maxLate; try++ {
						if try == 2 {
							o.err = fmt.Errorf("the oracle injected a packet %v late (more than %v) three times: the machine is too loaded to compare expiry", o.res.KernelLate, s.maxLate)
							break
						}
						o.res, o.err = Compare(ctx, path, s.cfg)
					}
				}
				if o.err == nil && s.extra != nil {
					o.extra, o.err = s.extra(path, o.res)
				}
				os.Remove(path)
				done[bi] <- o
			}
		}()
	}
	go func() {
		defer close(next)
		for bi := range batches {
			select {
			case next <- bi:
			case <-ctx.Done():
				return
			}
		}
	}()
	defer wg.Wait()
	defer cancel()
	start := time.Now()
	seen := map[uint64]bool{}
	for bi := range batches {
		o := <-done[bi]
		if o.err != nil {
			t.Fatalf("%s: batch %d (seeds %d-%d): %v", s.what, bi, batches[bi][0], batches[bi][len(batches[bi])-1], o.err)
		}
		st.packets += len(o.pkts)
		st.extra += o.extra
		st.late = max(st.late, o.res.KernelLate)
		st.compared += o.res.Compared
		st.unlabelled += o.res.Unlabelled
		st.kernelTime += o.res.KernelTime
		st.ourTime += o.res.OurTime
		for i, k := range o.res.Kernel {
			st.kinds[labelText(k.CT, k.Dir)]++
			if k.CT == "invalid" {
				st.reasons[o.res.Ours[i].Reason]++
			}
		}
		for _, d := range o.res.Diffs {
			seed := o.pkts[d.Index].Seed
			if seen[seed] {
				continue
			}
			seen[seed] = true
			f, err := Minimize(ctx, o.pkts, d, s.cfg, s.outDir(t))
			if err != nil {
				t.Fatalf("%s: seed %d: %s; minimizing failed: %v", s.what, seed, d, err)
			}
			if err := f.WriteCmd(s.how(seed)); err != nil {
				t.Fatal(err)
			}
			st.findings = append(st.findings, f)
			t.Errorf("%s: statewall disagrees with the kernel on %s", s.what, f.Report())
			if s.maxFindings > 0 && len(st.findings) >= s.maxFindings {
				st.elapsed = time.Since(start)
				return st
			}
		}
	}
	st.elapsed = time.Since(start)
	return st
}

// outDir returns (creating it once) the directory for minimized captures.
func (s *sweep) outDir(t *testing.T) string {
	t.Helper()
	if s.out == "" {
		d, err := os.MkdirTemp("", "statewall-kerneldiff-")
		if err != nil {
			t.Fatal(err)
		}
		s.out = d
	} else if err := os.MkdirAll(s.out, 0o755); err != nil {
		t.Fatal(err)
	}
	return s.out
}

// log writes the sweep's numbers to the test log.
func (st *sweepStats) log(t *testing.T, what string) {
	t.Helper()
	t.Logf("%s: %d packets (%d compared, %d without a kernel label) in %v; oracle %v, statewall %v",
		what, st.packets, st.compared, st.unlabelled, st.elapsed.Round(time.Millisecond), st.kernelTime.Round(time.Millisecond), st.ourTime.Round(time.Millisecond))
	if st.late > 0 {
		t.Logf("the oracle injected packets at most %v after their time", st.late.Round(time.Microsecond))
	}
	t.Logf("kernel labels: %s", counts(st.kinds))
	t.Logf("statewall's reasons for the packets the kernel calls invalid: %s", counts(st.reasons))
}

// counts writes a histogram, largest first.
func counts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if m[keys[i]] != m[keys[j]] {
			return m[keys[i]] > m[keys[j]]
		}
		return keys[i] < keys[j]
	})
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %d", k, m[k])
	}
	return b.String()
}
