package harness

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

// WriteJSON writes the report as indented JSON, the form for tools.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// header is what the text and Markdown reports start with.
func (r *Report) settings() string {
	ck := "conntrack as the daemon runs it: transport checksums are the kernel's business (--checksum: verified, as replay does)"
	if r.Checksum {
		ck = "conntrack verifies transport checksums, as replay does"
	}
	return fmt.Sprintf("%d repetitions of %s packets per configuration, interleaved chunk by chunk; medians [min-max over repetitions]; seed %d; %s",
		r.Reps, thousands(r.Packets), r.Seed, ck)
}

func (m Machine) String() string {
	return fmt.Sprintf("%d CPUs (GOMAXPROCS %d), %s, %s %s, %s %s/%s", m.CPUs, m.GOMAXPROCS, m.CPU, m.OS, m.Kernel, m.Go, m.OS, m.Arch)
}

// WriteText writes the report for a person at a terminal.
func (r *Report) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "statewall bench: %s\n", r.settings())
	fmt.Fprintf(w, "machine: %s\n", r.Machine)
	fmt.Fprintf(w, "date: %s, took %.0f s\n", r.Date.Format("2006-01-02 15:04:05 UTC"), r.Seconds)
	for i := range r.Runs {
		run := &r.Runs[i]
		title := run.Group + " " + run.Name
		if run.Group == run.Name {
			title = run.Name
		}
		fmt.Fprintf(w, "\n== %s: %s\n", title, run.Traffic)
		fmt.Fprintf(w, "   rules: %s (%d rules)\n", run.Rules, run.RuleCount)
		fmt.Fprintf(w, "   warm-up %s packets; conntrack after it: %s entries (limit %s), %.0f bytes per entry\n",
			thousands(run.WarmPackets), thousands(run.CTEntries), thousands(run.CTLimit), run.BytesPerConn)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintf(tw, "   \tconfig\tns/packet\t[min-max]\tpackets/s\tallocs/packet\t\n")
		for _, res := range run.Results {
			s := res.NsPerPacket
			fmt.Fprintf(tw, "   \t%s\t%.1f\t[%.1f-%.1f]\t%s\t%.4f\t\n", res.Config, s.Median, s.Min, s.Max, rate(res.PacketsPerSec), res.AllocsPerPacket)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintf(w, "   stateful/stateless: %.2fx [%.2f-%.2f]\n", run.Ratio.Median, run.Ratio.Min, run.Ratio.Max)
		fmt.Fprintf(w, "   stateful ct labels: %s; passed: stateless %.1f%%, stateful %.1f%%\n", labels(run.Labels), 100*run.StatelessPass, 100*run.StatefulPass)
	}
	return nil
}

// labels renders label shares, largest first.
func labels(m map[string]float64) string {
	type kv struct {
		k string
		v float64
	}
	var s []kv
	for k, v := range m {
		s = append(s, kv{k, v})
	}
	slices.SortFunc(s, func(a, b kv) int {
		if a.v != b.v {
			if a.v > b.v {
				return -1
			}
			return 1
		}
		return strings.Compare(a.k, b.k)
	})
	var parts []string
	for _, e := range s {
		parts = append(parts, fmt.Sprintf("%s %.2f%%", e.k, 100*e.v))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// rate renders packets/s: 12.3M, 456k.
func rate(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.0fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}

// thousands renders 1234567 as 1,234,567.
func thousands(n int) string {
	s := strconv.Itoa(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// CSVHeader is the header row of WriteCSV: one row per run and
// configuration, with the machine on every row so that files from several
// machines or dates can be concatenated.
var CSVHeader = []string{
	"setup", "group", "run", "traffic", "rules", "rule_count", "flows", "config",
	"reps", "packets_per_rep", "ns_per_packet_median", "ns_per_packet_min", "ns_per_packet_max",
	"packets_per_sec", "allocs_per_packet", "ct_entries", "bytes_per_conn",
	"stateful_stateless_ratio", "date", "cpu", "nproc", "kernel", "go",
}

// WriteCSV writes one row per run and configuration.
func (r *Report) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(CSVHeader); err != nil {
		return err
	}
	f := func(v float64, prec int) string { return strconv.FormatFloat(v, 'f', prec, 64) }
	for _, run := range r.Runs {
		for _, res := range run.Results {
			s := res.NsPerPacket
			row := []string{
				run.Setup, run.Group, run.Name, run.Traffic, run.Rules, strconv.Itoa(run.RuleCount), strconv.Itoa(run.Flows), res.Config,
				strconv.Itoa(len(s.Reps)), strconv.Itoa(run.Packets), f(s.Median, 2), f(s.Min, 2), f(s.Max, 2),
				f(res.PacketsPerSec, 0), f(res.AllocsPerPacket, 5), strconv.Itoa(run.CTEntries), f(run.BytesPerConn, 1),
				f(run.Ratio.Median, 3), r.Date.Format("2006-01-02T15:04:05Z"), r.Machine.CPU, strconv.Itoa(r.Machine.CPUs), r.Machine.Kernel, r.Machine.Go,
			}
			if err := cw.Write(row); err != nil {
				return err
			}
		}
	}
	cw.Flush()
	return cw.Error()
}

// Chart file names WriteFiles writes next to the Markdown report, with its
// base name in front ("offline-configs.svg").
const (
	ChartConfigs     = "configs.svg"
	ChartConnections = "connections.svg"
	ChartRules       = "rules.svg"
)

// WriteFiles writes base.md, base.csv, base.json and the SVG charts into
// dir and returns the paths written.
func (r *Report) WriteFiles(dir, base string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	charts := map[string]func(io.Writer) error{}
	if r.has(GroupConnections) || r.has(GroupCaptures) {
		charts[ChartConfigs] = r.WriteConfigsChart
	}
	if r.count(GroupConnections) > 1 {
		charts[ChartConnections] = r.WriteConnectionsChart
	}
	if r.count(GroupRules) > 1 {
		charts[ChartRules] = r.WriteRulesChart
	}
	chartName := func(c string) string {
		if charts[c] == nil {
			return ""
		}
		return base + "-" + c
	}
	files := []struct {
		name  string
		write func(io.Writer) error
	}{
		{base + ".md", func(w io.Writer) error {
			return r.WriteMarkdown(w, chartName(ChartConfigs), chartName(ChartConnections), chartName(ChartRules))
		}},
		{base + ".csv", r.WriteCSV},
		{base + ".json", r.WriteJSON},
	}
	for _, c := range []string{ChartConfigs, ChartConnections, ChartRules} {
		if charts[c] != nil {
			files = append(files, struct {
				name  string
				write func(io.Writer) error
			}{chartName(c), charts[c]})
		}
	}
	var paths []string
	for _, f := range files {
		p := filepath.Join(dir, f.name)
		if err := writeFile(p, f.write); err != nil {
			return paths, err
		}
		paths = append(paths, p)
	}
	return paths, nil
}

func writeFile(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	return f.Close()
}

func (r *Report) has(group string) bool { return r.count(group) > 0 }

func (r *Report) count(group string) int {
	n := 0
	for _, run := range r.Runs {
		if run.Group == group {
			n++
		}
	}
	return n
}

// WriteMarkdown writes the report as Markdown with the charts (file names
// relative to the report; "" for a chart not drawn).
func (r *Report) WriteMarkdown(w io.Writer, configsChart, connChart, rulesChart string) error {
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }
	p("# statewall offline benchmark\n\n")
	p("Made by this command (`make bench` runs it to write bench/results/; bench/README.md says how to read the numbers):\n\n")
	p("    %s\n\n", r.Command)
	p("| machine | |\n| --- | --- |\n")
	p("| nproc | %d (GOMAXPROCS %d) |\n", r.Machine.CPUs, r.Machine.GOMAXPROCS)
	p("| CPU | %s |\n", r.Machine.CPU)
	p("| kernel | %s %s |\n", r.Machine.OS, r.Machine.Kernel)
	p("| Go | %s %s/%s |\n", r.Machine.Go, r.Machine.OS, r.Machine.Arch)
	p("| date | %s |\n", r.Date.Format("2006-01-02 15:04 UTC"))
	p("| took | %.0f s |\n\n", r.Seconds)
	p("Method: %s. Every configuration has its own state and processes the same packets; every ratio below is between numbers of the same run. ", r.settings())
	p("ns/packet is wall time from bytes in memory to a verdict, per packet, on one core.\n\n")
	p("- **decode**: packet.Decode only;\n")
	p("- **stateless**: decode + direction (`set local`) + rules;\n")
	p("- **stateful**: decode + direction + conntrack + rules for new connections (and the new entry);\n")
	p("- **compare**: decode + both engines + their comparison (what `statewall replay` does per packet).\n\n")

	if r.has(GroupConnections) || r.has(GroupCaptures) {
		p("## By configuration\n\n")
		if configsChart != "" {
			p("![ns/packet by configuration](%s)\n\n", configsChart)
		}
		if r.has(GroupCaptures) {
			p("Captures replayed in a loop, with the rules above:\n\n")
			r.mdSummary(w, func(run *Run) bool { return run.Group == GroupCaptures }, "run")
		}
	}
	if r.has(GroupConnections) {
		p("## Connections: ns/packet versus concurrent connections\n\n")
		if connChart != "" {
			p("![ns/packet versus connections](%s)\n\n", connChart)
		}
		p("Generated traffic (bench/trafficgen) with the rules above. Connection-table entries include the sessions in their closing timeouts (TIME_WAIT, UDP streams).\n\n")
		r.mdSummary(w, func(run *Run) bool { return run.Group == GroupConnections }, "flows")
	}
	if r.has(GroupRules) {
		p("## Rules: ns/packet versus the number of rules\n\n")
		if rulesChart != "" {
			p("![ns/packet versus rules](%s)\n\n", rulesChart)
		}
		flows := 0
		for _, run := range r.Runs {
			if run.Group == GroupRules {
				flows = run.Flows
			}
		}
		p("Generated rulesets (`harness.GenerateRules`: the traffic's pass rules come last, after clutter it must get past) on generated traffic of %s flows. Established packets never reach the rules in the stateful engine: only new connections pay for them.\n\n", Count(flows))
		r.mdSummary(w, func(run *Run) bool { return run.Group == GroupRules }, "rules")
	}

	p("## Every measurement\n\n")
	p("| run | config | ns/packet median | min | max | packets/s | allocs/packet | ns/packet per repetition |\n")
	p("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |\n")
	for _, run := range r.Runs {
		for _, res := range run.Results {
			s := res.NsPerPacket
			var reps []string
			for _, v := range s.Reps {
				reps = append(reps, strconv.FormatFloat(v, 'f', 1, 64))
			}
			p("| %s %s | %s | %.1f | %.1f | %.1f | %s | %.4f | %s |\n", run.Group, run.Name, res.Config, s.Median, s.Min, s.Max, rate(res.PacketsPerSec), res.AllocsPerPacket, strings.Join(reps, ", "))
		}
	}
	p("\n| run | traffic | rules | warm-up packets | ct entries | ct limit | bytes/entry | stateful ct labels | stateless passed | stateful passed |\n")
	p("| --- | --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: |\n")
	for _, run := range r.Runs {
		p("| %s %s | %s | %s (%d) | %s | %s | %s | %.0f | %s | %.1f%% | %.1f%% |\n", run.Group, run.Name, run.Traffic, run.Rules, run.RuleCount,
			thousands(run.WarmPackets), thousands(run.CTEntries), thousands(run.CTLimit), run.BytesPerConn, labels(run.Labels), 100*run.StatelessPass, 100*run.StatefulPass)
	}
	p("\n## Live (NFQUEUE)\n\n")
	p("Not measured yet: the live half (packets through the kernel, NFQUEUE and back) adds runs with setup `nfqueue` to these tables and to the CSV.\n")
	return nil
}

// mdSummary writes one row per selected run: the four medians with their
// spread, the ratio, and the connection table.
func (r *Report) mdSummary(w io.Writer, sel func(*Run) bool, first string) {
	fmt.Fprintf(w, "| %s | decode | stateless | stateful | compare | stateful/stateless | stateful allocs/packet | ct entries | bytes/entry |\n", first)
	fmt.Fprintf(w, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for i := range r.Runs {
		run := &r.Runs[i]
		if !sel(run) {
			continue
		}
		name := run.Name
		switch run.Group {
		case GroupConnections:
			name = Count(run.Flows)
		case GroupRules:
			name = strconv.Itoa(run.RuleCount)
		}
		fmt.Fprintf(w, "| %s ", name)
		for _, c := range Configurations {
			if res := run.Result(c); res != nil {
				s := res.NsPerPacket
				fmt.Fprintf(w, "| %.1f [%.1f-%.1f] ", s.Median, s.Min, s.Max)
			} else {
				fmt.Fprintf(w, "| - ")
			}
		}
		allocs := 0.0
		if res := run.Result(Stateful); res != nil {
			allocs = res.AllocsPerPacket
		}
		fmt.Fprintf(w, "| %.2fx [%.2f-%.2f] | %.4f | %s | %.0f |\n", run.Ratio.Median, run.Ratio.Min, run.Ratio.Max, allocs, thousands(run.CTEntries), run.BytesPerConn)
	}
	fmt.Fprintln(w)
}
