package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/statewall/statewall/pkg/pflog"
	"github.com/statewall/statewall/pkg/replay"
	"github.com/statewall/statewall/pkg/rules"
)

func runReplay(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("replay", "[flags] FILE...", `Replay pcap or pcapng files (- for standard input) through the rules and
print every packet's verdict, with its reason. Files are replayed in order,
as one stream: their packets share connection state, and their timestamps
are the connection tracker's clock. That clock never goes back: a packet
stamped earlier than the latest one seen is decided at the latest time, and
the summary counts such steps (--strict-time refuses the capture instead).
With the hash seed fixed (--seed, 1 by default), a replay gives the same
output every time, full connection tables included.

Modes:
  compare    both engines on every packet; disagreements are marked and
             grouped by cause in the summary (default)
  stateless  every packet judged alone by the rules
  stateful   connection tracking in front of the rules

Formats:
  text       a table, one line a packet ('*' marks a disagreement), then a summary
  jsonl      one JSON object a packet (see README "Output formats")
  summary    only the summary

Direction and interfaces:
  A packet from an address of 'set local' is outbound, one to such an
  address inbound; any other is of neither side. A pcapng names the
  interface each packet was captured on; --iface names it for a pcap (and
  for a pcapng interface without a name). Inbound packets are decided on
  that interface, outbound ones on --iface-out if given, else on it. With
  --iface-out, packets of neither side are forwarded: decided inbound on
  their interface and outbound on --iface-out, as pf filters a routed
  packet, and they pass only if both pass. The capture is then taken to be
  of the router's input side: replies, which in fact arrive on --iface-out,
  are also read as arriving on --iface (stateful mode passes them by their
  connection's state anyway). Without --iface-out such packets have no
  direction: only rules without in or out match them, 'on IFACE' ones on
  the interface they were seen on. --iface-addr gives an interface its
  addresses, which 'antispoof for IFACE' needs (the daemon learns them from
  the kernel).

  The ruleset's warnings (rules that can never match here, interfaces
  that do not exist) are printed on stderr first. The interfaces they
  know are those of the flags; a pcapng's are known only as it is read.

Logging:
  --log FILE writes the packets that 'log' rules decide to FILE, a pflog
  capture as the daemon writes (read it with tcpdump -n -e -r FILE): the
  stateful decisions in modes compare and stateful, the stateless ones in
  mode stateless. 'log (all)' also logs the later packets of the
  connections its rule created (modes compare and stateful). A forwarded
  packet gets a record for each of its two evaluations whose rule logs;
  a packet of no direction is logged as in. Replay writes every record (it
  drops none) and counts them in its output (JSONL key "logged").`, stdout)
	rulesFile := fs.String("rules", "", "the ruleset `FILE` (required)")
	modeFlag := fs.String("mode", "compare", "`MODE`: compare, stateless or stateful")
	format := fs.String("format", "text", "output `FORMAT`: text, jsonl or summary")
	noChecksum := fs.Bool("no-checksum", false, "do not verify transport checksums (the kernel's nf_conntrack_checksum=0): for captures taken on the sending host, whose checksums the NIC had yet to fill in")
	seed := fs.Uint64("seed", replay.DefaultSeed, "conntrack's hash `SEED` (positive): it decides which unassured entry early drop evicts in a full table; the same seed gives the same output")
	strictTime := fs.Bool("strict-time", false, "refuse a capture whose timestamps go back, instead of deciding such packets at the latest time seen")
	var iface, ifaceOut string
	var ifaceAddrs []rules.Iface
	fs.Func("iface", "the interface `NAME` packets are seen on, for a pcap (a pcapng names its own; this names those it leaves unnamed)", func(s string) error {
		iface = s
		return replay.CheckIfaceName(s)
	})
	fs.Func("iface-out", "the interface `NAME` forwarded and outbound packets leave by; with it, packets of neither side of 'set local' are forwarded from their interface to NAME", func(s string) error {
		ifaceOut = s
		return replay.CheckIfaceName(s)
	})
	fs.Func("iface-addr", "give an interface its addresses, `NAME=PREFIX[,PREFIX...]` (eth1=198.18.1.1/24,fd00:198:18::1/64), for antispoof; repeatable", func(s string) error {
		f, err := replay.ParseIfaceAddr(s)
		if err == nil {
			ifaceAddrs = append(ifaceAddrs, f)
		}
		return err
	})
	logFile := fs.String("log", "", "write the packets that log rules decide to `FILE`, a pflog capture (tcpdump -n -e -r FILE); see Logging")
	cpuprofile := cpuProfileFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *rulesFile == "" {
		return usagef("--rules FILE is required")
	}
	if fs.NArg() == 0 {
		return usagef("no capture files given")
	}
	mode, err := replay.ParseMode(*modeFlag)
	if err != nil {
		return usagef("%v", err)
	}
	if *seed == 0 {
		return usagef("--seed 0: the seed must be positive (the default is %d)", replay.DefaultSeed)
	}
	rs, err := rules.ParseFile(*rulesFile)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return errReported
	}
	cfg := replay.Config{
		Rules: rs, Mode: mode, NoChecksum: *noChecksum, Seed: *seed, StrictTime: *strictTime,
		Iface: iface, IfaceOut: ifaceOut, Ifaces: ifaceAddrs,
	}
	for _, w := range replay.Lint(cfg) {
		fmt.Fprintln(stderr, w)
	}
	var closeLog func() error
	if *logFile != "" {
		if cfg.Log, closeLog, err = createLog(*logFile); err != nil {
			return err
		}
		defer closeLog()
	}
	stopProfile, err := startCPUProfile(*cpuprofile, stderr)
	if err != nil {
		return err
	}
	defer stopProfile()
	rp, err := replay.New(cfg)
	if err != nil {
		return err
	}

	var sum replay.Summary
	var sink replay.Sink
	var flush func() error
	switch *format {
	case "text":
		tw := replay.NewTextWriter(stdout)
		sink = func(r *replay.Record) error {
			sum.Add(r)
			return tw.Write(r)
		}
		flush = func() error {
			if err := tw.Flush(); err != nil {
				return err
			}
			fmt.Fprintln(stdout)
			sum.Finish(rp)
			return sum.WriteText(stdout)
		}
	case "jsonl":
		jw := replay.NewJSONLWriter(stdout)
		sink = func(r *replay.Record) error {
			sum.Add(r)
			return jw.Write(r)
		}
		flush = func() error {
			sum.Finish(rp)
			if err := jw.WriteSummary(&sum); err != nil {
				return err
			}
			return jw.Flush()
		}
	case "summary":
		sink = sum.Add
		flush = func() error {
			sum.Finish(rp)
			return sum.WriteText(stdout)
		}
	default:
		return usagef("unknown format %q (want text, jsonl or summary)", *format)
	}

	var readErr error
	for _, f := range fs.Args() {
		if err := rp.ReplayFile(f, sink); err != nil {
			readErr = err
			break
		}
	}
	if err := flush(); err != nil {
		return err
	}
	if closeLog != nil {
		if err := closeLog(); err != nil {
			return fmt.Errorf("--log %s: %w", *logFile, err)
		}
	}
	if readErr != nil {
		var fe *replay.FileError
		if errors.As(readErr, &fe) {
			return fmt.Errorf("%w (the %d packets before it were replayed)", readErr, fe.Index)
		}
		return readErr
	}
	return nil
}

// createLog creates the --log file with its pcap header. close flushes
// and closes it; calling it again does nothing.
func createLog(name string) (w *pflog.Writer, close func() error, err error) {
	f, err := os.Create(name)
	if err != nil {
		return nil, nil, fmt.Errorf("--log: %w", err)
	}
	bw := bufio.NewWriterSize(f, 1<<16)
	if w, err = pflog.NewWriter(bw); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("--log %s: %w", name, err)
	}
	closed := false
	return w, func() error {
		if closed {
			return nil
		}
		closed = true
		err := bw.Flush()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	}, nil
}

// loadRules parses the rules file of an offline command (bench),
// printing a parse error as it is (it names file:line), and warns when
// rules say in or out but the file has no 'set local': offline, only 'set
// local' gives packets a direction, so such rules would match nothing.
func loadRules(cmd, path string, stderr io.Writer) (*rules.Ruleset, error) {
	rs, err := rules.ParseFile(path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return nil, errReported
	}
	if len(rs.Local) == 0 && usesDirection(rs) {
		fmt.Fprintf(stderr, "statewall %s: warning: %s has rules with 'in' or 'out' but no 'set local': they match nothing in %s\n", cmd, path, cmd)
	}
	return rs, nil
}

// usesDirection reports whether any rule says in or out.
func usesDirection(rs *rules.Ruleset) bool {
	for i := range rs.Rules {
		if rs.Rules[i].Dir != rules.DirUnknown {
			return true
		}
	}
	return false
}
