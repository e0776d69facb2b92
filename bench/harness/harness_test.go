package harness

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"encoding/xml"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/statewall/statewall/bench/trafficgen"
	"github.com/statewall/statewall/pkg/conntrack"
	"github.com/statewall/statewall/pkg/rules"
)

// TestHarnessSmoke runs the whole harness at tiny sizes, every kind of run
// included, and checks the report's structure and the files it writes. It
// never looks at how fast anything was: only that every configuration was
// measured, every number is positive, and every file is there and parses.
func TestHarnessSmoke(t *testing.T) {
	rs, err := rules.ParseFile("../../bench/server.rules")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Rules:      rs,
		RulesFile:  "bench/server.rules",
		Flows:      []int{50, 200},
		Captures:   []string{"../../testdata/ping-v4.pcap", "../../testdata/http-curl-v4.pcap"},
		RuleCounts: []int{10, 100},
		RuleFlows:  100,
		Packets:    3000,
		Reps:       2,
		WarmRounds: 3,
		Chunk:      512,
		Seed:       1,
	}
	rep, err := Measure(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rep.Command = "statewall bench (TestHarnessSmoke)"

	groups := map[string]int{}
	for i := range rep.Runs {
		run := &rep.Runs[i]
		groups[run.Group]++
		if run.Setup != "offline" || run.Name == "" || run.Traffic == "" || run.Rules == "" {
			t.Errorf("%s: incomplete description %+v", run.Name, run)
		}
		if len(run.Results) != len(Configurations) {
			t.Errorf("%s: %d results, want %d", run.Name, len(run.Results), len(Configurations))
		}
		for _, c := range Configurations {
			res := run.Result(c)
			if res == nil {
				t.Errorf("%s: no %s result", run.Name, c)
				continue
			}
			s := res.NsPerPacket
			if len(s.Reps) != cfg.Reps || !(s.Min > 0 && s.Min <= s.Median && s.Median <= s.Max) || res.PacketsPerSec <= 0 || res.AllocsPerPacket < 0 {
				t.Errorf("%s %s: implausible %+v", run.Name, c, res)
			}
		}
		if run.WarmPackets <= 0 || run.Ratio.Median <= 0 {
			t.Errorf("%s: warm %d, ratio %v", run.Name, run.WarmPackets, run.Ratio)
		}
		if run.Group != GroupCaptures && (run.CTEntries <= 0 || run.BytesPerConn <= 0) {
			t.Errorf("%s: table of %d entries, %v B/conn", run.Name, run.CTEntries, run.BytesPerConn)
		}
		if run.Group != GroupCaptures {
			// Clean generated traffic: both engines pass it all, conntrack
			// finds nothing invalid (bench/server.rules and GenerateRules
			// are written so).
			if run.StatelessPass != 1 || run.StatefulPass != 1 || run.Labels["invalid"] != 0 || run.Labels["established"] == 0 || run.Labels["new"] == 0 {
				t.Errorf("%s: passed %v/%v, labels %v: want everything passed, new and established only", run.Name, run.StatelessPass, run.StatefulPass, run.Labels)
			}
		}
	}
	if groups[GroupCaptures] != 1 || groups[GroupConnections] != 2 || groups[GroupRules] != 2 {
		t.Errorf("runs by group %v, want 1 captures, 2 connections, 2 rules", groups)
	}

	dir := t.TempDir()
	paths, err := rep.WriteFiles(dir, "offline")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"offline.md", "offline.csv", "offline.json", "offline-configs.svg", "offline-connections.svg", "offline-rules.svg"}
	if len(paths) != len(want) {
		t.Errorf("wrote %v, want %v", paths, want)
	}
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	md := string(read("offline.md"))
	for _, s := range append([]string{rep.Command, rep.Machine.CPU, rep.Machine.Go, "offline-configs.svg", "offline-connections.svg", "offline-rules.svg", "## Live (NFQUEUE)"}, Configurations...) {
		if !strings.Contains(md, s) {
			t.Errorf("offline.md lacks %q", s)
		}
	}

	rows, err := csv.NewReader(bytes.NewReader(read("offline.csv"))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1+len(rep.Runs)*len(Configurations) || strings.Join(rows[0], ",") != strings.Join(CSVHeader, ",") {
		t.Errorf("offline.csv: %d rows, header %v", len(rows), rows[0])
	}

	var back Report
	if err := json.Unmarshal(read("offline.json"), &back); err != nil || len(back.Runs) != len(rep.Runs) {
		t.Errorf("offline.json: %v, %d runs", err, len(back.Runs))
	}

	for _, name := range want[3:] {
		b := read(name)
		d := xml.NewDecoder(bytes.NewReader(b))
		for {
			_, err := d.Token()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Errorf("%s: not well-formed: %v", name, err)
				break
			}
		}
		if !bytes.Contains(b, []byte("<svg")) || !bytes.Contains(b, []byte("stateful")) {
			t.Errorf("%s: not a chart of the configurations", name)
		}
	}

	var text, js bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, run := range rep.Runs {
		if !strings.Contains(text.String(), run.Name) {
			t.Errorf("text report lacks run %s", run.Name)
		}
	}
	if err := rep.WriteJSON(&js); err != nil || !json.Valid(js.Bytes()) {
		t.Errorf("WriteJSON: %v", err)
	}
}

// TestCaptureLoops: a loop of the captures is labelled exactly like the
// first, because its timestamps move past every conntrack timeout: three
// passes count three times the labels of one.
func TestCaptureLoops(t *testing.T) {
	rs, err := rules.ParseFile("../../rules/default-pass.rules")
	if err != nil {
		t.Fatal(err)
	}
	paths, err := filepath.Glob("../../testdata/*.pcap")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no captures: %v", err)
	}
	src, err := loadCaptures(paths, rs.Timeouts)
	if err != nil {
		t.Fatal(err)
	}
	r := newRunner(Stateful, rs, conntrack.Config{Timeouts: rs.Timeouts, Limit: rs.LimitStates, Seed: 1})
	r.run(src.next(1))
	first := r.c
	if first.labels[conntrack.LabelEstablished] == 0 || first.labels[conntrack.LabelInvalid] == 0 {
		t.Fatalf("labels of one loop %v: want established and invalid packets (the attack captures)", first.labels)
	}
	r.c = counts{}
	r.run(src.next(3 * src.b.Len()))
	for l := range first.labels {
		if r.c.labels[l] != 3*first.labels[l] {
			t.Errorf("label %v: %d in three loops, %d in the first", conntrack.Label(l), r.c.labels[l], first.labels[l])
		}
	}
}

// TestGenerateRules: every size parses, has the rules it says, and passes
// clean generated traffic in both engines (checked per packet here; the
// smoke test checks it through the harness).
func TestGenerateRules(t *testing.T) {
	for _, n := range []int{1, 6, 10, 100, 1000} {
		rs, err := rules.Parse("gen.rules", []byte(GenerateRules(n, 1)))
		if err != nil {
			t.Fatalf("%d rules: %v", n, err)
		}
		if len(rs.Rules) != max(n, 6) {
			t.Errorf("GenerateRules(%d): %d rules", n, len(rs.Rules))
		}
		for _, c := range []string{Stateless, Stateful} {
			l, err := NewLoop(c, rs, trafficgen.Config{Seed: 2, Flows: 100}, 2, 256)
			if err != nil {
				t.Fatal(err)
			}
			for range 4 {
				for !l.Empty() {
					l.Step()
				}
				l.Refill()
			}
			if v := l.r.c.verdict; v[0] != 0 || v[1] == 0 {
				t.Errorf("GenerateRules(%d), %s: %d blocked, %d passed", n, c, v[0], v[1])
			}
		}
	}
}

// TestNoAllocsEstablished: the measured loops allocate nothing once the
// table has grown: allocations/packet in the report count the engines, not
// the harness.
func TestNoAllocs(t *testing.T) {
	rs, err := rules.ParseFile("../../bench/server.rules")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range Configurations {
		l, err := NewLoop(c, rs, trafficgen.Config{Seed: 3, Flows: 50}, 5, 128)
		if err != nil {
			t.Fatal(err)
		}
		if n := testing.AllocsPerRun(100, func() {
			if l.Empty() {
				l.Refill()
			}
			l.Step()
		}); n != 0 {
			t.Errorf("%s: %v allocations per packet", c, n)
		}
	}
}

func TestBadConfig(t *testing.T) {
	if _, err := Measure(Config{}); err == nil {
		t.Error("Measure with nothing to measure: no error")
	}
	if _, err := Measure(Config{Flows: []int{10}}); err == nil {
		t.Error("Measure without rules: no error")
	}
	rs, _ := rules.Parse("x", []byte("set default pass\n"))
	if _, err := NewLoop("fast", rs, trafficgen.Config{}, 1, 1); err == nil {
		t.Error("NewLoop with an unknown configuration: no error")
	}
}
