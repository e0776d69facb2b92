// Package bench is statewall's offline benchmark harness: it measures how
// long a packet takes from bytes in memory to a verdict in four
// configurations (decode, stateless, stateful, compare; see Decode),
// interleaved in one process so that their ratios are measured under the
// same conditions, on generated traffic (package trafficgen) at several
// numbers of concurrent connections, on generated rulesets of several
// sizes, and on captures. It reports ns/packet, packets/s,
// allocations/packet, bytes per tracked connection and the
// stateful/stateless ratio as text, JSON, Markdown, CSV and SVG charts.
//
// How a run is measured: the configurations each have their own state (a
// stateful configuration its own connection table). Generated traffic first
// warms the tables (WarmRounds packets per flow), then the measured packets
// are made in chunks; every configuration processes each chunk in turn, in
// an order that rotates from chunk to chunk, and its time and its
// allocations (runtime.MemStats.Mallocs) are added to the repetition's. The
// stream goes on from repetition to repetition, so the connection tables
// stay in the steady state the warm-up reached: each repetition measures
// new packets of the same stream, identical for every configuration.
// Medians are over repetitions; min and max show the spread.
//
// The live half (NFQUEUE, a packet's path through the kernel and back)
// adds Runs with Setup "nfqueue" to the same Report.
package harness

import (
	"fmt"
	"io"
	"runtime"
	"slices"
	"strconv"
	"time"

	"github.com/statewall/statewall/bench/trafficgen"
	"github.com/statewall/statewall/pkg/conntrack"
	"github.com/statewall/statewall/pkg/rules"
)

// Config configures a benchmark. Rules is required (unless only
// RuleCounts runs are asked for); the zero value of the rest means the
// defaults named on each field.
type Config struct {
	// Rules is the ruleset of the captures and connections runs;
	// RulesFile names it in the report.
	Rules     *rules.Ruleset
	RulesFile string
	// Flows: one run on generated traffic per number of concurrent flows.
	Flows []int
	// Captures: one run replaying these pcap/pcapng files in a loop.
	Captures []string
	// RuleCounts: one run per ruleset size, on generated rulesets
	// (GenerateRules) and RuleFlows flows (0 means 10,000).
	RuleCounts []int
	RuleFlows  int
	// Packets measured per configuration and repetition; 0 means 1,000,000.
	Packets int
	// Reps is the number of repetitions; 0 means 5.
	Reps int
	// WarmRounds: generated traffic warms the tables with this many
	// packets per flow before measuring; 0 means 20 (about one session
	// length, so that sessions end and start at a steady rate).
	WarmRounds int
	// Chunk is the number of packets generated at a time and processed by
	// every configuration in turn; 0 means 1024. About 700 kB of packets:
	// they stay in the core's cache, as a packet the kernel has just
	// copied into the NFQUEUE socket's buffer is. (Chunks of 32,768
	// packets, 20 MB, added 50 ns to decoding each packet on the
	// development VM: the cost of fetching it from L3, not of deciding.)
	Chunk int
	// Seed of the generated traffic.
	Seed uint64
	// Checksum makes conntrack verify transport checksums, as replay does.
	// Off by default: the daemon leaves that to the kernel, which has
	// checked them before a packet reaches NFQUEUE, so the default
	// measures the daemon's packet path.
	Checksum bool
	// Traffic sets the generated traffic's mix, attacks and round; its
	// Seed and Flows are set per run.
	Traffic trafficgen.Config
	// Log receives progress lines; nil means none.
	Log io.Writer
}

func (c *Config) defaults() {
	if c.RuleFlows == 0 {
		c.RuleFlows = 10000
	}
	if c.Packets == 0 {
		c.Packets = 1000000
	}
	if c.Reps == 0 {
		c.Reps = 5
	}
	if c.WarmRounds == 0 {
		c.WarmRounds = 20
	}
	if c.Chunk == 0 {
		c.Chunk = 1024
	}
	c.Chunk = min(c.Chunk, c.Packets)
}

// Report is the result of a benchmark: the machine, the settings, and one
// Run per traffic and ruleset.
type Report struct {
	Command string    `json:"command"` // how it was made, set by the caller
	Date    time.Time `json:"date"`
	Seconds float64   `json:"seconds"` // wall time of the whole benchmark
	Machine Machine   `json:"machine"`
	Rules   string    `json:"rules"` // the rules file of the captures and connections runs
	Reps    int       `json:"reps"`
	Packets int       `json:"packets_per_rep"`
	Seed    uint64    `json:"seed"`
	// Checksum: conntrack verified transport checksums (Config.Checksum).
	Checksum bool  `json:"checksum"`
	Runs     []Run `json:"runs"`
}

// Groups of runs.
const (
	GroupCaptures    = "captures"    // captures replayed in a loop
	GroupConnections = "connections" // generated traffic, the given rules, a number of flows
	GroupRules       = "rules"       // generated traffic and generated rulesets of a number of rules
)

// Run is one traffic and ruleset, measured in every configuration.
type Run struct {
	Group string `json:"group"`
	// Setup is "offline" here: packets from memory. The live half adds
	// "nfqueue" runs: packets through the kernel and back.
	Setup   string `json:"setup"`
	Name    string `json:"name"`    // "flows=100k", "rules=1000", "captures"
	Traffic string `json:"traffic"` // what the packets are
	Rules   string `json:"rules"`   // the rules file, or "generated"
	// RuleCount is the number of rules; Flows the number of concurrent
	// generated flows (0 for captures).
	RuleCount int `json:"rule_count"`
	Flows     int `json:"flows"`
	// Packets per configuration and repetition; WarmPackets fed to the
	// stateful configurations before the first repetition.
	Packets     int `json:"packets_per_rep"`
	WarmPackets int `json:"warm_packets"`
	// CTLimit is the connection table's limit; CTEntries its entries after
	// the warm-up (live connections and those still in their closing
	// timeouts); BytesPerConn the memory the warm-up added (the heap, and
	// the slabs the tables map outside it), divided by them.
	CTLimit      int     `json:"ct_limit"`
	CTEntries    int     `json:"ct_entries"`
	BytesPerConn float64 `json:"bytes_per_conn"`
	// Labels: the share of each conntrack label among the stateful
	// configuration's measured packets; StatelessPass and StatefulPass the
	// share of packets each engine passed.
	Labels        map[string]float64 `json:"ct_labels"`
	StatelessPass float64            `json:"stateless_pass"`
	StatefulPass  float64            `json:"stateful_pass"`
	Results       []Result           `json:"results"`
	// Ratio is stateful over stateless: the ratio of the medians, and the
	// range of the ratios of the same repetition.
	Ratio Stat `json:"stateful_stateless_ratio"`
}

// Result is one configuration's measurement in a run.
type Result struct {
	Config          string  `json:"config"`
	NsPerPacket     Stat    `json:"ns_per_packet"`
	PacketsPerSec   float64 `json:"packets_per_sec"` // from the median
	AllocsPerPacket float64 `json:"allocs_per_packet"`
}

// Stat is a median with the range over repetitions.
type Stat struct {
	Median float64   `json:"median"`
	Min    float64   `json:"min"`
	Max    float64   `json:"max"`
	Reps   []float64 `json:"reps"`
}

func statOf(v []float64) Stat {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n == 0 {
		return Stat{}
	}
	med := s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return Stat{Median: med, Min: s[0], Max: s[n-1], Reps: v}
}

// Result returns the result of configuration name, or nil.
func (r *Run) Result(name string) *Result {
	for i := range r.Results {
		if r.Results[i].Config == name {
			return &r.Results[i]
		}
	}
	return nil
}

// Measure runs the benchmark.
func Measure(cfg Config) (*Report, error) {
	cfg.defaults()
	if cfg.Rules == nil && (len(cfg.Flows) > 0 || len(cfg.Captures) > 0) {
		return nil, fmt.Errorf("bench: no ruleset")
	}
	if len(cfg.Flows) == 0 && len(cfg.Captures) == 0 && len(cfg.RuleCounts) == 0 {
		return nil, fmt.Errorf("bench: nothing to measure (no flows, captures or rule counts)")
	}
	start := time.Now()
	rep := &Report{
		Date:    start.UTC(),
		Machine: DetectMachine(),
		Rules:   cfg.RulesFile,
		Reps:    cfg.Reps,
		Packets: cfg.Packets,
		Seed:    cfg.Seed,

		Checksum: cfg.Checksum,
	}
	if len(cfg.Captures) > 0 {
		src, err := loadCaptures(cfg.Captures, cfg.Rules.Timeouts)
		if err != nil {
			return nil, err
		}
		traffic := fmt.Sprintf("%d capture files, %d packets in a loop", src.files, src.b.Len())
		if src.fragments > 0 {
			traffic += fmt.Sprintf(" (%d IP fragments left out)", src.fragments)
		}
		r := spec{
			group: GroupCaptures, name: "captures", traffic: traffic,
			rulesName: cfg.RulesFile, rs: cfg.Rules, src: src,
			ct:   conntrack.Config{Timeouts: cfg.Rules.Timeouts, Limit: cfg.Rules.LimitStates, Seed: cfg.Seed + 1, NoChecksum: !cfg.Checksum},
			warm: src.b.Len(),
		}
		run, err := measure(&cfg, &r)
		if err != nil {
			return nil, err
		}
		rep.Runs = append(rep.Runs, run)
	}
	for _, n := range cfg.Flows {
		run, err := measureGenerated(&cfg, GroupConnections, "flows="+Count(n), cfg.Rules, cfg.RulesFile, n)
		if err != nil {
			return nil, err
		}
		rep.Runs = append(rep.Runs, run)
	}
	for _, n := range cfg.RuleCounts {
		rs, err := rules.Parse(fmt.Sprintf("generated-%d.rules", n), []byte(GenerateRules(n, cfg.Seed)))
		if err != nil {
			return nil, fmt.Errorf("bench: generated ruleset of %d rules: %v", n, err)
		}
		run, err := measureGenerated(&cfg, GroupRules, "rules="+strconv.Itoa(len(rs.Rules)), rs, "generated (GenerateRules)", cfg.RuleFlows)
		if err != nil {
			return nil, err
		}
		rep.Runs = append(rep.Runs, run)
	}
	rep.Seconds = time.Since(start).Seconds()
	return rep, nil
}

// measureGenerated measures generated traffic of n flows under rs.
func measureGenerated(cfg *Config, group, name string, rs *rules.Ruleset, rulesName string, n int) (Run, error) {
	tc := cfg.Traffic
	tc.Seed, tc.Flows = cfg.Seed, n
	src, err := newGenSource(tc, cfg.Chunk)
	if err != nil {
		return Run{}, err
	}
	traffic := fmt.Sprintf("generated, %s concurrent flows", Count(n))
	if tc.Attacks != (trafficgen.Attacks{}) {
		a := tc.Attacks
		traffic += fmt.Sprintf(", attacks per 1000 packets: ack-scan %d, fin-scan %d, out-of-window %d, syn-flood %d", a.ACKScan, a.FINScan, a.OutOfWindow, a.SYNFlood)
	}
	// Room for the live flows, those in their closing timeouts and any
	// attack entries: the benchmark measures tracking, not a full table.
	limit := max(rs.LimitStates, 4*n)
	r := spec{
		group: group, name: name, traffic: traffic, rulesName: rulesName, rs: rs, flows: n, src: src,
		ct:   conntrack.Config{Timeouts: rs.Timeouts, Limit: limit, Seed: cfg.Seed + 1, NoChecksum: !cfg.Checksum},
		warm: cfg.WarmRounds * n,
	}
	return measure(cfg, &r)
}

// spec is one run to measure.
type spec struct {
	group, name, traffic, rulesName string
	rs                              *rules.Ruleset
	flows                           int
	src                             source
	ct                              conntrack.Config
	warm                            int // packets
}

func (c *Config) logf(format string, a ...any) {
	if c.Log != nil {
		fmt.Fprintf(c.Log, format+"\n", a...)
	}
}

// measure runs one spec: warm-up, then Reps repetitions of Packets packets
// in every configuration, interleaved chunk by chunk.
func measure(cfg *Config, s *spec) (Run, error) {
	runners := make([]*runner, len(Configurations))
	for i, name := range Configurations {
		runners[i] = newRunner(name, s.rs, s.ct)
	}
	var tables int
	for _, r := range runners {
		if r.stateful() {
			tables++
		}
	}

	// Warm-up, and the heap it takes: the connection tables are all that
	// grows (the chunk arena is allocated before).
	cfg.logf("%s: warming up the connection tables with %d packets", s.name, s.warm)
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	warmed := 0
	for warmed < s.warm {
		c := s.src.next(min(cfg.Chunk, s.warm-warmed))
		for _, r := range runners {
			if r.stateful() {
				r.run(c)
			}
		}
		warmed += c.packets()
	}
	runtime.GC()
	runtime.ReadMemStats(&m1)
	run := Run{
		Group: s.group, Setup: "offline", Name: s.name, Traffic: s.traffic, Rules: s.rulesName,
		RuleCount: len(s.rs.Rules), Flows: s.flows, Packets: cfg.Packets, WarmPackets: warmed,
		CTLimit: s.ct.Limit,
	}
	// The tables' memory: the Go heap's growth, and the slabs the tables
	// map outside it (conntrack.Table.MappedBytes).
	mem := int64(m1.HeapAlloc) - int64(m0.HeapAlloc)
	for _, r := range runners {
		if r.stateful() {
			run.CTEntries = r.sf.CT.Len()
			mem += r.sf.CT.MappedBytes()
			r.c = counts{}
		}
	}
	if run.CTEntries > 0 {
		run.BytesPerConn = float64(mem) / float64(tables*run.CTEntries)
	}

	type acc struct {
		ns      []float64 // per rep, ns/packet
		mallocs uint64
		packets uint64
	}
	accs := make([]acc, len(runners))
	for i := range accs {
		accs[i].ns = make([]float64, cfg.Reps)
	}
	order := make([]int, len(runners))
	var ms runtime.MemStats
	seq := 0
	for rep := range cfg.Reps {
		cfg.logf("%s: repetition %d of %d", s.name, rep+1, cfg.Reps)
		elapsed := make([]time.Duration, len(runners))
		packets := 0
		for packets < cfg.Packets {
			c := s.src.next(min(cfg.Chunk, cfg.Packets-packets))
			n := c.packets()
			packets += n
			for i := range order {
				order[i] = (i + seq) % len(runners)
			}
			seq++
			runtime.ReadMemStats(&ms)
			mallocs := ms.Mallocs
			for _, i := range order {
				r := runners[i]
				t0 := time.Now()
				r.run(c)
				elapsed[i] += time.Since(t0)
				runtime.ReadMemStats(&ms)
				accs[i].mallocs += ms.Mallocs - mallocs
				mallocs = ms.Mallocs
				accs[i].packets += uint64(n)
			}
		}
		for i := range runners {
			accs[i].ns[rep] = float64(elapsed[i].Nanoseconds()) / float64(packets)
		}
	}

	for i, r := range runners {
		st := statOf(accs[i].ns)
		run.Results = append(run.Results, Result{
			Config:          r.name,
			NsPerPacket:     st,
			PacketsPerSec:   1e9 / st.Median,
			AllocsPerPacket: float64(accs[i].mallocs) / float64(accs[i].packets),
		})
		switch r.name {
		case Stateless:
			run.StatelessPass = share(r.c.verdict[1], r.c.verdict[:])
		case Stateful:
			run.StatefulPass = share(r.c.verdict[1], r.c.verdict[:])
			run.Labels = map[string]float64{}
			for l, n := range r.c.labels {
				if n > 0 {
					run.Labels[conntrack.Label(l).String()] = share(n, r.c.verdict[:])
				}
			}
		}
	}
	sl, sf := run.Result(Stateless), run.Result(Stateful)
	ratios := make([]float64, cfg.Reps)
	for i := range ratios {
		ratios[i] = sf.NsPerPacket.Reps[i] / sl.NsPerPacket.Reps[i]
	}
	run.Ratio = statOf(ratios)
	run.Ratio.Median = sf.NsPerPacket.Median / sl.NsPerPacket.Median
	return run, nil
}

func share(n uint64, of []uint64) float64 {
	var t uint64
	for _, v := range of {
		t += v
	}
	if t == 0 {
		return 0
	}
	return float64(n) / float64(t)
}

// Count renders a count the way the reports do: 1000 as 1k, 1000000 as 1M.
func Count(n int) string {
	switch {
	case n >= 1000000 && n%1000000 == 0:
		return strconv.Itoa(n/1000000) + "M"
	case n >= 1000 && n%1000 == 0:
		return strconv.Itoa(n/1000) + "k"
	}
	return strconv.Itoa(n)
}
