// Command report turns the raw measurements of bench/live/run.sh (one CSV
// line per repetition, configuration and metric) into bench/results/live.md,
// live.csv and live.svg: medians with [min-max] over repetitions, and
// ratios to "no filter" of the same run.
package main

import (
	"encoding/csv"
	"flag"
	"fmt"
	"html"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/statewall/statewall/bench/harness"
)

type metric struct {
	key, title, unit string
	lowerBetter      bool
	format           string
}

var metrics = []metric{
	{"udp_pps", "UDP packets/s", "pkt/s", false, "%.0f"},
	{"tcp_mbps", "TCP bulk", "Mbit/s", false, "%.0f"},
	{"conn_per_s", "TCP connections/s", "conn/s", false, "%.0f"},
	{"rtt_p50_us", "RTT p50", "µs", true, "%.1f"},
	{"rtt_p99_us", "RTT p99", "µs", true, "%.1f"},
	{"rtt_loaded_p50_us", "RTT p50 under load", "µs", true, "%.1f"},
	{"rtt_loaded_p99_us", "RTT p99 under load", "µs", true, "%.1f"},
}

var extras = []metric{
	{"udp_sent_pps", "UDP sent/s", "pkt/s", false, "%.0f"},
	{"tcp_retrans", "TCP retransmits", "", true, "%.0f"},
	{"conn_failed", "failed connections", "", true, "%.0f"},
	{"queue_drops", "queue drops (per config run)", "", true, "%.0f"},
	{"load_pps", "background load delivered/s", "pkt/s", false, "%.0f"},
	{"load_sent_pps", "background load sent/s", "pkt/s", false, "%.0f"},
	{"load_queue_drops", "queue drops under load", "", true, "%.0f"},
	{"sync_lag_p50_ms", "sync lag p50 (bucket bound)", "ms", true, "%.1f"},
	{"sync_lag_p99_ms", "sync lag p99 (bucket bound)", "ms", true, "%.1f"},
	{"sync_records", "sync records sent", "", false, "%.0f"},
	{"sync_peer_installed", "entries the peer installed", "", false, "%.0f"},
}

var labels = map[string]string{
	"nofilter":        "no filter",
	"nft":             "nftables (kernel conntrack)",
	"nfqaccept":       "nfqaccept (go-nfqueue, accept all)",
	"sw-stateless-q1": "statewall stateless, 1 queue",
	"sw-stateful-q1":  "statewall stateful, 1 queue",
	"sw-shadow-q1":    "statewall shadow, 1 queue",
	"sw-stateless-q2": "statewall stateless, 2 queues",
	"sw-stateful-q2":  "statewall stateful, 2 queues",
	"sw-shadow-q2":    "statewall shadow, 2 queues",

	"sw-stateful-q1-sync":         "statewall stateful, 1 queue, sync to a peer",
	"sw-stateful-q1-sync-defer20": "statewall stateful, 1 queue, sync to a peer, deferral 20 ms",
	"sw-stateful-q2-addr":         "statewall stateful, 2 queues by address",
	"sw-stateful-q2-cpu":          "statewall stateful, 2 queues by CPU",
	"sw-stateful-offload-q1":      "statewall stateful + offload, 1 queue",
	"sw-shadow-offload-q1":        "statewall shadow + offload, 1 queue",
	"sw-stateful-offload-q2":      "statewall stateful + offload, 2 queues",
}

func label(c string) string {
	if l, ok := labels[c]; ok {
		return l
	}
	if l, ok := labels[strings.TrimPrefix(c, "alt-")]; ok {
		return l + " (" + *altLabel + ")"
	}
	return c
}

const base = "nofilter"

// loadAvg is the machine's load during the run, altLabel names the
// second binary of alt-sw-... configurations.
var (
	loadAvg  = flag.String("load-avg", "", "the machine's load average during the run (/proc/loadavg at its start and end), for the report")
	altLabel = flag.String("alt-label", "alt", "what the alt-sw-... configurations' binary is (STATEWALL_ALT), for the report")
)

type key struct{ config, metric string }

// data: values by (config, metric), indexed by repetition (1-based; NaN-free:
// missing repetitions are absent from the map).
type data map[key]map[int]float64

func main() {
	raw := flag.String("raw", "", "raw CSV from run.sh")
	out := flag.String("out", "bench/results", "output directory")
	reps := flag.Int("reps", 3, "repetitions")
	dur := flag.Int("dur", 3, "seconds per measurement")
	offloads := flag.String("offloads", "", "offload setting, for the report")
	configs := flag.String("configs", "", "configurations in order")
	command := flag.String("command", "make bench-live", "the command, for the report")
	statusDir := flag.String("status-dir", "", "directory with status-CONFIG.txt from `statewall status`")
	build := flag.String("build", "", "what statewall was built from, for the report")
	loadPPS := flag.Int("load-pps", 50000, "packets/s of the background stream of the loaded-latency test, for the report")
	flag.Parse()
	if err := run(*raw, *out, *reps, *dur, *loadPPS, *offloads, strings.Fields(*configs), *command, *statusDir, *build); err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
}

func run(raw, out string, reps, dur, loadPPS int, offloads string, configs []string, command, statusDir, build string) error {
	f, err := os.Open(raw)
	if err != nil {
		return err
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		return err
	}
	d := data{}
	for i, r := range rows {
		if i == 0 || len(r) != 4 || r[3] == "" {
			continue
		}
		rep, err1 := strconv.Atoi(r[0])
		v, err2 := strconv.ParseFloat(r[3], 64)
		if err1 != nil || err2 != nil || rep < 1 { // rep 0: the warm-up
			continue
		}
		k := key{r[1], r[2]}
		if d[k] == nil {
			d[k] = map[int]float64{}
		}
		d[k][rep] = v
	}
	m := harness.DetectMachine()
	now := time.Now().UTC()
	if err := writeCSV(filepath.Join(out, "live.csv"), d, configs, m, now); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(out, "live.svg"), []byte(svg(d, configs)), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(out, "live.md"), []byte(markdown(d, configs, m, now, reps, dur, loadPPS, offloads, command, statusDir, build)), 0o644)
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func values(m map[int]float64) []float64 {
	var v []float64
	for _, x := range m {
		v = append(v, x)
	}
	return v
}

type stat struct {
	ok             bool
	med, min, max  float64
	ratio          float64 // median / base median
	rmin, rmax     float64 // range of same-repetition ratios
	ratioOK, rngOK bool
}

func summarize(d data, config, metric string) stat {
	vals := d[key{config, metric}]
	if len(vals) == 0 {
		return stat{}
	}
	v := values(vals)
	s := stat{ok: true, med: median(v), min: slices.Min(v), max: slices.Max(v)}
	bv := d[key{base, metric}]
	if len(bv) == 0 {
		return s
	}
	if bm := median(values(bv)); bm != 0 {
		s.ratio, s.ratioOK = s.med/bm, true
	}
	var rs []float64
	for rep, x := range vals {
		if b, ok := bv[rep]; ok && b != 0 {
			rs = append(rs, x/b)
		}
	}
	if len(rs) > 0 {
		s.rmin, s.rmax, s.rngOK = slices.Min(rs), slices.Max(rs), true
	}
	return s
}

func writeCSV(path string, d data, configs []string, m harness.Machine, now time.Time) error {
	var b strings.Builder
	w := csv.NewWriter(&b)
	w.Write([]string{"date", "cpus", "cpu", "kernel", "go", "setup", "config", "metric", "rep", "value", "nofilter_value", "ratio_to_nofilter"})
	for _, c := range configs {
		for _, mt := range append(slices.Clone(metrics), extras...) {
			vals := d[key{c, mt.key}]
			reps := make([]int, 0, len(vals))
			for r := range vals {
				reps = append(reps, r)
			}
			slices.Sort(reps)
			for _, r := range reps {
				bv, ratio := "", ""
				if b, ok := d[key{base, mt.key}][r]; ok {
					bv = strconv.FormatFloat(b, 'f', -1, 64)
					if b != 0 {
						ratio = strconv.FormatFloat(vals[r]/b, 'f', 4, 64)
					}
				}
				w.Write([]string{now.Format(time.RFC3339), strconv.Itoa(m.CPUs), m.CPU, m.Kernel, m.Go, "nfqueue",
					c, mt.key, strconv.Itoa(r), strconv.FormatFloat(vals[r], 'f', -1, 64), bv, ratio})
			}
		}
	}
	w.Flush()
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

func cell(s stat, format string) string {
	if !s.ok {
		return "-"
	}
	return fmt.Sprintf(format+" ["+format+"-"+format+"]", s.med, s.min, s.max)
}

func ratioCell(s stat) string {
	if !s.ratioOK {
		return "-"
	}
	if !s.rngOK {
		return fmt.Sprintf("%.2f", s.ratio)
	}
	return fmt.Sprintf("%.2f [%.2f-%.2f]", s.ratio, s.rmin, s.rmax)
}

func markdown(d data, configs []string, m harness.Machine, now time.Time, reps, dur, loadPPS int, offloads, command, statusDir, build string) string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	p("# Live benchmark: statewall on a router's forward path\n\n")
	p("Written by `bench/live/run.sh` (bench/README.md, section \"Live\"). Command:\n\n    %s\n\n", command)
	p("Machine: %d CPUs (nproc), %s, kernel %s, %s, %s/%s; %s.\n\n", m.CPUs, m.CPU, m.Kernel, m.Go, m.OS, m.Arch, now.Format("2006-01-02 15:04 UTC"))
	if *loadAvg != "" {
		p("Load average (1, 5, 15 min; /proc/loadavg): %s.\n\n", *loadAvg)
	}
	if build != "" {
		p("statewall built from: %s.\n\n", build)
	}
	p("Setup: three network namespaces joined by veth pairs, client 198.18.1.2 -- router -- server 198.18.2.2; ")
	p("the configuration under test filters the router's forward path. Offloads: %s. ", offloads)
	p("%d repetitions; in each, every configuration runs once, in an order rotated from one repetition to the next, ", reps)
	p("and runs every workload for at most %d s:\n\n", dur)
	p("- **UDP packets/s**: one sender (`loadgen udpblast`, Go, one write per datagram) sends 64-byte payloads as fast as it can, ")
	p("from eight client addresses in turn (198.18.1.2 to .9); ")
	p("counted as they arrive at the server's interface (rx_packets), divided by the sending time.\n")
	p("- **TCP bulk**: `iperf3 -c -t %d`, one stream, receiver's Mbit/s.\n", dur)
	p("- **TCP connections/s**: 4 connectors open, wait for the server's close, and close TCP connections (at most 5000), ")
	p("from the eight client addresses in turn.\n")
	p("- **RTT**: 64-byte request and response over one TCP connection (TCP_NODELAY), back to back, p50 and p99, unloaded.\n")
	p("- **RTT under load**: the same probe, for %d s, while a paced UDP stream of %d 64-byte datagrams/s ", dur, loadPPS)
	p("(`loadgen udpblast -rate`, from the eight client addresses, started 0.3 s before the probe and running %d s) ", dur+1)
	p("crosses the router: latency with the filter busy, not saturated (the rate is below every configuration's UDP packets/s here). ")
	p("What the stream delivered and the queue drops during it are in the side table.\n\n")
	p("Numbers are **median [min-max]** over repetitions. Ratios are to \"no filter\" in the same run: the ratio of the medians, ")
	p("with [the range of the same-repetition ratios]. For throughput higher is better; for RTT a ratio above 1 is added latency. ")
	p("All processes share 2 cores (senders, the kernel's forwarding in softirq, the NFQUEUE readers), so absolute numbers are this VM's ")
	p("on that day and the ratios are what to compare.\n\n")

	p("## Absolute\n\n| configuration |")
	for _, mt := range metrics {
		p(" %s (%s) |", mt.title, mt.unit)
	}
	p("\n| --- |%s\n", strings.Repeat(" ---: |", len(metrics)))
	for _, c := range configs {
		p("| %s |", label(c))
		for _, mt := range metrics {
			p(" %s |", cell(summarize(d, c, mt.key), mt.format))
		}
		p("\n")
	}
	p("\n## Ratio to no filter\n\n| configuration |")
	for _, mt := range metrics {
		p(" %s |", mt.title)
	}
	p("\n| --- |%s\n", strings.Repeat(" ---: |", len(metrics)))
	for _, c := range configs {
		p("| %s |", label(c))
		for _, mt := range metrics {
			p(" %s |", ratioCell(summarize(d, c, mt.key)))
		}
		p("\n")
	}
	p("\n![UDP packets/s, ratio to no filter](live.svg)\n\n")
	p("## What the numbers do and do not show\n\n")
	p("- **UDP packets/s is bounded by the sender.** One Go goroutine, one `write` per datagram, and on veth the sender's CPU also ")
	p("does the router's and the server's receive work in softirq. Where a configuration's UDP sent/s (below) and packets/s are ")
	p("about equal, the filter kept up with the sender: a ratio near 1 then means \"not measurably slower than this sender\", ")
	p("not \"free\". Where they differ, the difference was dropped on the way (for NFQUEUE: the queue drops below).\n")
	p("- **TCP bulk rides on GSO** (offloads on): the sender hands 64 KB segments down the veth pairs, the kernel forwards them ")
	p("whole, and the NFQUEUE readers bind with the GSO flag, so they get them whole too: a verdict per 64 KB, not per 1500 bytes. ")
	p("`OFFLOADS=off` measures wire-sized packets instead.\n")
	p("- **statewall's reader is not go-nfqueue.** `statewall run` reads the queue with pkg/nfq's own netlink reader, ")
	p("which may be faster than `nfqaccept`, the go-nfqueue path that does nothing per packet: then `nfqaccept` is the ceiling ")
	p("of the library path only, not of statewall.\n")
	p("- **Noise.** The VM is shared, and other jobs may run during the benchmark; the configurations are interleaved so that a ")
	p("disturbance spreads over all of them, and [min-max] shows how far one repetition was from another.\n")
	p("- **Two queues.** statewall spreads by flow (a keyed hash of addresses, ports and protocol, HMARK; both directions of a ")
	p("flow on one queue); \"by address\" is the kernel's `--queue-balance`, which hashes the addresses and the protocol, not the ports: ")
	p("all packets between one pair of addresses and one protocol go to one queue. UDP and the connection test use eight client addresses ")
	p("for its sake (its seed is drawn at boot, so the split varies from boot to boot); TCP bulk and RTT are one flow, so with 2 queues ")
	p("they still use one. The per-queue packet counts of `statewall status` are below.\n")
	p("- **Offload** (`--offload`): once a connection is established and assured, the kernel carries its packets past the queue, ")
	p("with its own conntrack (which the connmark rules switch on in the router). The UDP tests' datagrams never get a reply, so they ")
	p("are never offloaded; the RTT probe's connection is, after its first round trips. `statewall status`'s offload line is below.\n")
	p("- **Latency**: one request in flight. \"RTT\" has nothing else on the path; \"under load\" shares it with the paced ")
	p("UDP stream, which the sender paces in bursts (about rate/5000 datagrams after each sleep of about 200 µs, more when a sleep runs late), so a ")
	p("probe may queue behind a burst, in the kernel and, for NFQUEUE, in the queue. One probe flow: with 2 queues it lands on one, ")
	p("shared with the part of the stream whose source address hashes there. Where the queue drops under load are not 0, the filter ")
	p("did not keep up with the stream and the loaded RTT includes a full queue.\n\n")
	p("## Drops and side numbers\n\n")
	p("Queue drops are `queue_dropped + user_dropped` of `/proc/net/netfilter/nfnetlink_queue` in the router namespace, ")
	p("read at the end of each configuration's run (all five workloads): packets the kernel dropped because the queue ")
	p("(4096 packets) or the reader's socket buffer was full. Fail-closed, as statewall runs by default: a dropped packet is lost. ")
	p("UDP sent/s is what the sender managed; the difference to UDP packets/s was lost on the way. ")
	p("Background load delivered/s counts the stream's datagrams at the server's UDP layer (InDatagrams + InErrors of /proc/net/snmp) ")
	p("over the stream's sending time; queue drops under load are the queue drops during the loaded-latency test alone.\n\n| configuration |")
	for _, mt := range extras {
		p(" %s |", mt.title)
	}
	p("\n| --- |%s\n", strings.Repeat(" ---: |", len(extras)))
	for _, c := range configs {
		p("| %s |", label(c))
		for _, mt := range extras {
			p(" %s |", cell(summarize(d, c, mt.key), mt.format))
		}
		p("\n")
	}
	if statusDir != "" {
		var notes []string
		for _, c := range configs {
			bs, err := os.ReadFile(filepath.Join(statusDir, "status-"+c+".txt"))
			if err != nil {
				continue
			}
			for line := range strings.Lines(string(bs)) {
				l := strings.ToLower(line)
				if strings.Contains(l, "disagree") || strings.Contains(l, "enobufs") || strings.Contains(l, "drop") || strings.Contains(l, "invalid") || strings.HasPrefix(l, "offload:") {
					notes = append(notes, fmt.Sprintf("%s: %s", c, strings.TrimSpace(line)))
				}
			}
		}
		if len(notes) > 0 {
			p("\n`statewall status` at the end of the last repetition (lines about drops, ENOBUFS, invalid, shadow disagreements, offload; ")
			p("\"handed back\" counts, at a start, the connections an earlier configuration's run offloaded, still in the router's conntrack):\n\n")
			for _, n := range notes {
				p("    %s\n", n)
			}
		}
	}
	return b.String()
}

// svg draws the UDP packets/s ratio to no filter per configuration:
// horizontal bars with min-max whiskers of the same-repetition ratios.
func svg(d data, configs []string) string {
	const (
		rowH   = 28
		left   = 260
		width  = 760
		plotW  = width - left - 60
		top    = 50
		bottom = 40
	)
	type row struct {
		name string
		s    stat
	}
	var rows []row
	maxR := 1.0
	for _, c := range configs {
		s := summarize(d, c, "udp_pps")
		if !s.ratioOK {
			continue
		}
		rows = append(rows, row{label(c), s})
		maxR = max(maxR, s.ratio, s.rmax)
	}
	height := top + rowH*len(rows) + bottom
	x := func(r float64) float64 { return left + r/maxR*plotW }
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", width, height)
	w(`<rect width="100%%" height="100%%" fill="white"/>` + "\n")
	w(`<text x="%d" y="22" font-size="15">UDP 64-byte packets/s through the router, ratio to no filter (median, min-max whiskers)</text>`+"\n", 10)
	for _, t := range []float64{0, 0.25, 0.5, 0.75, 1} {
		if t > maxR {
			continue
		}
		w(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ccc"/>`+"\n", x(t), top-5, x(t), height-bottom)
		w(`<text x="%.1f" y="%d" text-anchor="middle" fill="#555">%.2f</text>`+"\n", x(t), height-bottom+16, t)
	}
	for i, r := range rows {
		y := top + i*rowH
		color := "#4e79a7"
		switch {
		case strings.HasPrefix(r.name, "no filter"):
			color = "#999"
		case strings.HasPrefix(r.name, "nftables"):
			color = "#59a14f"
		case strings.HasPrefix(r.name, "nfqaccept"):
			color = "#f28e2b"
		}
		w(`<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", left-8, y+rowH/2+4, html.EscapeString(r.name))
		w(`<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>`+"\n", left, y+4, x(r.s.ratio)-left, rowH-8, color)
		if r.s.rngOK {
			my := y + rowH/2
			w(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="black"/>`+"\n", x(r.s.rmin), my, x(r.s.rmax), my)
			for _, e := range []float64{r.s.rmin, r.s.rmax} {
				w(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="black"/>`+"\n", x(e), my-5, x(e), my+5)
			}
		}
		w(`<text x="%.1f" y="%d" fill="#222">%.2f</text>`+"\n", max(x(r.s.ratio), x(r.s.rmax))+6, y+rowH/2+4, r.s.ratio)
	}
	w("</svg>\n")
	return b.String()
}
