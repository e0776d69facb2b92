package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/statewall/statewall/bench/harness"
	"github.com/statewall/statewall/bench/trafficgen"
)

func runBench(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench", "--rules FILE [flags] [PCAP...]", `Measure how long a packet takes from bytes in memory to a verdict, in four
configurations, interleaved in one run (round robin, chunk by chunk, over
--reps repetitions; medians with min and max):

  decode     packet decoding only
  stateless  decode + direction + rules
  stateful   decode + direction + conntrack + rules for new connections
  compare    decode + both engines + their comparison

on the captures given (loaded into memory once and replayed in a loop; each
loop's timestamps move past every conntrack timeout, so every loop is
labelled like the first) and/or on generated traffic: --flows concurrent
sessions (TCP, UDP, ICMP echo, IPv4 and IPv6, in 198.18.0.0/15 and
fd00:198:18::/64), which first warm the connection tables and then go on
from repetition to repetition, so the tables stay in a steady state.

Reports ns/packet, packets/s, allocations/packet, bytes per tracked
connection, and the stateful/stateless ratio. --rule-counts adds runs on
generated rulesets of those sizes. --out writes offline.md, offline.csv,
offline.json and SVG charts into a directory (what 'make bench' commits in
bench/results/).

Counts take k and M: --flows 1k,100k,1M.`, stdout)
	rulesFile := fs.String("rules", "", "the ruleset `FILE` (required)")
	flowsFlag := fs.String("flows", "", "concurrent generated flows, a comma `LIST` (default 10k when no PCAP is given)")
	packets := fs.String("packets", "1M", "packets measured per configuration and repetition (`N`)")
	seed := fs.Uint64("seed", 1, "seed of the generated traffic")
	format := fs.String("format", "text", "output `FORMAT`: text or json")
	reps := fs.Int("reps", 5, "repetitions")
	ruleCounts := fs.String("rule-counts", "", "also measure generated rulesets of these sizes, a comma `LIST` (e.g. 10,100,1k,10k)")
	ruleFlows := fs.String("rule-flows", "10k", "concurrent flows of the --rule-counts runs (`N`)")
	warm := fs.Int("warm-rounds", 20, "generated packets per flow that warm the connection tables before measuring")
	attacks := fs.String("attacks", "", "mix attack packets into generated traffic, per 1000 packets: `SPEC` like ack-scan=5,fin-scan=5,out-of-window=5,syn-flood=20")
	out := fs.String("out", "", "write offline.md, offline.csv, offline.json and SVG charts into `DIR`")
	writePcap := fs.String("write-pcap", "", "write --packets packets of generated traffic (--flows, --seed, --attacks) to `FILE` as raw-IP pcap, and measure nothing")
	cpuprofile := cpuProfileFlag(fs)
	checksum := fs.Bool("checksum", false, "conntrack verifies transport checksums, as replay does (default: as the daemon runs, the kernel has checked them)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	nPackets, err := harness.ParseCount(*packets)
	if err != nil {
		return usagef("--packets: %v", err)
	}
	flows, err := harness.ParseCounts(*flowsFlag)
	if err != nil {
		return usagef("--flows: %v", err)
	}
	var tc trafficgen.Config
	if tc.Attacks, err = harness.ParseAttacks(*attacks); err != nil {
		return usagef("--attacks: %v", err)
	}

	if *writePcap != "" {
		tc.Seed = *seed
		tc.Flows = 10000
		if len(flows) > 0 {
			tc.Flows = flows[0]
		}
		g, err := trafficgen.New(tc)
		if err != nil {
			return usagef("%v", err)
		}
		f, err := os.Create(*writePcap)
		if err != nil {
			return err
		}
		if err := trafficgen.WritePcap(f, g, nPackets); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "statewall bench: wrote %d packets of %d flows (seed %d) to %s\n", nPackets, tc.Flows, tc.Seed, *writePcap)
		return nil
	}

	if *rulesFile == "" {
		return usagef("--rules FILE is required")
	}
	if *format != "text" && *format != "json" {
		return usagef("unknown format %q (want text or json)", *format)
	}
	if *reps < 1 || *warm < 1 {
		return usagef("--reps and --warm-rounds must be at least 1")
	}
	counts, err := harness.ParseCounts(*ruleCounts)
	if err != nil {
		return usagef("--rule-counts: %v", err)
	}
	rf, err := harness.ParseCount(*ruleFlows)
	if err != nil {
		return usagef("--rule-flows: %v", err)
	}
	if !set["flows"] && fs.NArg() == 0 {
		flows = []int{10000}
	}
	rs, err := loadRules("bench", *rulesFile, stderr)
	if err != nil {
		return err
	}
	stopProfile, err := startCPUProfile(*cpuprofile, stderr)
	if err != nil {
		return err
	}
	defer stopProfile()

	cfg := harness.Config{
		Rules:      rs,
		RulesFile:  *rulesFile,
		Flows:      flows,
		Captures:   fs.Args(),
		RuleCounts: counts,
		RuleFlows:  rf,
		Packets:    nPackets,
		Reps:       *reps,
		WarmRounds: *warm,
		Seed:       *seed,
		Traffic:    tc,
		Checksum:   *checksum,
		Log:        stderr,
	}
	rep, err := harness.Measure(cfg)
	if err != nil {
		return err
	}
	rep.Command = commandLine(append([]string{os.Args[0], "bench"}, args...))
	if *out != "" {
		paths, err := rep.WriteFiles(*out, "offline")
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "statewall bench: wrote %s\n", strings.Join(paths, ", "))
	}
	if *format == "json" {
		return rep.WriteJSON(stdout)
	}
	return rep.WriteText(stdout)
}

// commandLine renders argv as a shell command, quoting what needs it.
func commandLine(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		if a == "" || strings.ContainsAny(a, " \t\n'\"\\$`*?[]{}()<>|&;#~") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}
