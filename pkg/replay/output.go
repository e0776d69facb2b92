package replay

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"github.com/statewall/statewall/pkg/engine"
	"github.com/statewall/statewall/pkg/packet"
	"github.com/statewall/statewall/pkg/rules"
)

// ProtoName is the name the reports use for a record's protocol: its
// name (packet.Proto's String: tcp, udp, icmp, icmp6, gre, ...) or its
// number; "invalid" for packets that could not be decoded as IP.
func (r *Record) ProtoName() string {
	if r.Kind != packet.KindOK {
		return "invalid"
	}
	return r.Proto.String()
}

func appendEndpoint(b []byte, a netip.Addr, port uint16, hasPort bool) []byte {
	if !a.IsValid() {
		return b
	}
	if !hasPort {
		return a.AppendTo(b)
	}
	return netip.AddrPortFrom(a, port).AppendTo(b)
}

// JSONLWriter writes one JSON object per record, the contract other tools
// read:
//
//	{"file":"x.pcap","index":0,"ts":"2024-01-02T03:04:05.000006Z",
//	 "src":"198.18.0.1:40000","dst":"198.18.0.2:80","proto":"tcp","flags":"S","len":60,
//	 "stateless":"pass","stateless_reason":"rule 4 (line 9)",
//	 "stateful":"pass","stateful_reason":"rule 4 (line 9)","ct":"new"}
//
// Optional keys: "icmp_type"/"icmp_code" for ICMP, "frag":true for IP
// fragments, "kind" ("truncated", "malformed", "not-ip",
// "unsupported-link") for packets that could not be decoded, "dir"
// ("in"/"out") when `set local` tells, "in" and "out" (interface names,
// outside "dir": the interface the packet arrived on and the one it leaves
// by) when the capture or the flags name them, "logged" (the number of
// pflog records written for it) when a log rule logged it, and "differs"
// when the two verdicts disagree. After the packets, `statewall replay` writes one summary record
// (WriteSummary), told apart by its key "summary".
type JSONLWriter struct {
	w   *bufio.Writer
	buf []byte
}

// NewJSONLWriter writes to w; call Flush at the end.
func NewJSONLWriter(w io.Writer) *JSONLWriter {
	return &JSONLWriter{w: bufio.NewWriterSize(w, 1<<16)}
}

// Write is a Sink.
func (j *JSONLWriter) Write(r *Record) error {
	b := j.buf[:0]
	b = append(b, `{"file":`...)
	b = strconv.AppendQuote(b, r.File)
	b = append(b, `,"index":`...)
	b = strconv.AppendInt(b, int64(r.Index), 10)
	b = append(b, `,"ts":"`...)
	b = r.TS.UTC().AppendFormat(b, "2006-01-02T15:04:05.000000Z")
	b = append(b, '"')
	if r.Src.IsValid() {
		b = append(b, `,"src":"`...)
		b = appendEndpoint(b, r.Src, r.SrcPort, r.HasPorts)
		b = append(b, `","dst":"`...)
		b = appendEndpoint(b, r.Dst, r.DstPort, r.HasPorts)
		b = append(b, '"')
	}
	b = append(b, `,"proto":"`...)
	b = append(b, r.ProtoName()...)
	b = append(b, '"')
	if r.Kind != packet.KindOK {
		b = append(b, `,"kind":"`...)
		b = append(b, r.Kind.String()...)
		b = append(b, '"')
	}
	if r.Kind == packet.KindOK && r.Proto == packet.ProtoTCP && !r.Fragment || r.TCPFlags != 0 {
		b = append(b, `,"flags":"`...)
		b = append(b, packet.TCPFlagsString(r.TCPFlags)...)
		b = append(b, '"')
	}
	if r.Kind == packet.KindOK && (r.Proto == packet.ProtoICMP || r.Proto == packet.ProtoICMPv6) && !r.Fragment {
		b = append(b, `,"icmp_type":`...)
		b = strconv.AppendInt(b, int64(r.ICMPType), 10)
		b = append(b, `,"icmp_code":`...)
		b = strconv.AppendInt(b, int64(r.ICMPCode), 10)
	}
	if r.Fragment {
		b = append(b, `,"frag":true`...)
	}
	b = append(b, `,"len":`...)
	b = strconv.AppendInt(b, int64(r.Len), 10)
	if r.Dir != rules.DirUnknown {
		b = append(b, `,"dir":"`...)
		b = append(b, r.Dir.String()...)
		b = append(b, '"')
	}
	if r.In != "" {
		b = append(b, `,"in":`...)
		b = strconv.AppendQuote(b, r.In)
	}
	if r.Out != "" {
		b = append(b, `,"out":`...)
		b = strconv.AppendQuote(b, r.Out)
	}
	if r.HasStateless {
		b = append(b, `,"stateless":"`...)
		b = append(b, r.Stateless.Verdict.String()...)
		b = append(b, `","stateless_reason":`...)
		b = strconv.AppendQuote(b, r.Stateless.Reason())
	}
	if r.HasStateful {
		b = append(b, `,"stateful":"`...)
		b = append(b, r.Stateful.Verdict.String()...)
		b = append(b, `","stateful_reason":`...)
		b = strconv.AppendQuote(b, r.Stateful.Reason())
		b = append(b, `,"ct":"`...)
		b = append(b, r.Stateful.Label()...)
		b = append(b, '"')
	}
	if r.Logged > 0 {
		b = append(b, `,"logged":`...)
		b = strconv.AppendInt(b, int64(r.Logged), 10)
	}
	if r.Agreement() != engine.Agree {
		b = append(b, `,"differs":true`...)
	}
	b = append(b, "}\n"...)
	j.buf = b
	_, err := j.w.Write(b)
	return err
}

// Flush writes what is buffered.
func (j *JSONLWriter) Flush() error { return j.w.Flush() }

// WriteSummary writes the summary record, the last line of a JSONL replay;
// it is the one object with the key "summary":
//
//	{"summary":{"packets":12,"undecoded":0,"stateless":{"pass":7,"block":5},
//	 "stateful":{"pass":9,"block":3},"ct":{"established":6,"new":6},
//	 "disagreements":4,"clock_steps_back":0,"largest_step_back_ns":0,"seed":1}}
//
// "stateless", "stateful" and "ct" appear when that engine ran,
// "disagreements" when both did, "logged" (packets logged, and pflog
// records written) when the replay wrote a log:
//
//	"logged":{"packets":3,"records":4}
func (j *JSONLWriter) WriteSummary(s *Summary) error {
	b := j.buf[:0]
	b = append(b, `{"summary":{"packets":`...)
	b = strconv.AppendInt(b, int64(s.Packets), 10)
	b = append(b, `,"undecoded":`...)
	b = strconv.AppendInt(b, int64(s.Undecoded), 10)
	verdicts := func(b []byte, name string, v [2]int) []byte {
		b = append(b, `,"`+name+`":{"pass":`...)
		b = strconv.AppendInt(b, int64(v[engine.Pass]), 10)
		b = append(b, `,"block":`...)
		b = strconv.AppendInt(b, int64(v[engine.Block]), 10)
		return append(b, '}')
	}
	if s.ranStateless {
		b = verdicts(b, "stateless", s.Stateless)
	}
	if s.ranStateful {
		b = verdicts(b, "stateful", s.Stateful)
		counts := s.Labels()
		labels := make([]string, 0, len(counts))
		for l := range counts {
			labels = append(labels, l)
		}
		sort.Strings(labels)
		b = append(b, `,"ct":{`...)
		for i, l := range labels {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendQuote(b, l)
			b = append(b, ':')
			b = strconv.AppendInt(b, int64(counts[l]), 10)
		}
		b = append(b, '}')
	}
	if s.ranStateless && s.ranStateful {
		n := 0
		for _, g := range s.Groups {
			n += g.Count
		}
		b = append(b, `,"disagreements":`...)
		b = strconv.AppendInt(b, int64(n), 10)
	}
	b = append(b, `,"clock_steps_back":`...)
	b = strconv.AppendInt(b, int64(s.Clock.Back), 10)
	b = append(b, `,"largest_step_back_ns":`...)
	b = strconv.AppendInt(b, int64(s.Clock.Largest), 10)
	b = append(b, `,"seed":`...)
	b = strconv.AppendUint(b, s.Seed, 10)
	if s.Logging {
		b = append(b, `,"logged":{"packets":`...)
		b = strconv.AppendInt(b, int64(s.LoggedPackets), 10)
		b = append(b, `,"records":`...)
		b = strconv.AppendInt(b, int64(s.LoggedRecords), 10)
		b = append(b, '}')
	}
	b = append(b, "}}\n"...)
	j.buf = b
	_, err := j.w.Write(b)
	return err
}

// TextWriter writes a readable table, one line a packet. Packets whose two
// verdicts differ are marked with '*'. When packets have interfaces, a
// column "iface" says where each was decided: "in eth1" (arrived on
// eth1), "out eth2" (leaves by eth2), "eth1>eth2" (forwarded), "on eth1"
// (seen on eth1, of no direction). It starts with the first packet that
// has one, under a header of its own.
type TextWriter struct {
	w      *bufio.Writer
	header bool
	ifaces bool // the header has the iface column
	file   string
}

// ifaceColumn is the text of the iface column for r.
func ifaceColumn(r *Record) string {
	switch {
	case r.In != "" && r.Out != "":
		return r.In + ">" + r.Out
	case r.Out != "":
		return "out " + r.Out
	case r.In == "":
		return ""
	case r.Dir == rules.DirIn:
		return "in " + r.In
	}
	return "on " + r.In
}

// NewTextWriter writes to w; call Flush at the end.
func NewTextWriter(w io.Writer) *TextWriter {
	return &TextWriter{w: bufio.NewWriterSize(w, 1<<16)}
}

// Write is a Sink.
func (t *TextWriter) Write(r *Record) error {
	if r.File != t.file {
		t.file = r.File
		fmt.Fprintf(t.w, "== %s\n", r.File)
		t.header, t.ifaces = false, false
	}
	if !t.ifaces && (r.In != "" || r.Out != "") {
		t.header, t.ifaces = false, true
	}
	if !t.header {
		t.header = true
		fmt.Fprintf(t.w, "  %5s %-15s %-44s %-6s %-5s", "#", "time", "packet", "proto", "flags")
		if t.ifaces {
			fmt.Fprintf(t.w, " %-13s", "iface")
		}
		if r.HasStateless {
			fmt.Fprintf(t.w, " %-42s", "stateless")
		}
		if r.HasStateful {
			fmt.Fprintf(t.w, " %-12s %s", "ct", "stateful")
		}
		fmt.Fprintln(t.w)
	}
	mark := ' '
	if r.Agreement() != engine.Agree {
		mark = '*'
	}
	var pk []byte
	if r.Src.IsValid() {
		pk = appendEndpoint(pk, r.Src, r.SrcPort, r.HasPorts)
		pk = append(pk, " > "...)
		pk = appendEndpoint(pk, r.Dst, r.DstPort, r.HasPorts)
	} else {
		pk = append(pk, r.Kind.String()...)
	}
	flags := ""
	switch {
	case r.Fragment:
		flags = "frag"
	case r.Kind == packet.KindOK && r.Proto == packet.ProtoTCP:
		flags = packet.TCPFlagsString(r.TCPFlags)
	case r.Kind == packet.KindOK && (r.Proto == packet.ProtoICMP || r.Proto == packet.ProtoICMPv6):
		flags = strconv.Itoa(int(r.ICMPType)) + "/" + strconv.Itoa(int(r.ICMPCode))
	}
	fmt.Fprintf(t.w, "%c %5d %-15s %-44s %-6s %-5s", mark, r.Index, r.TS.UTC().Format("15:04:05.000000"), pk, r.ProtoName(), flags)
	if t.ifaces {
		fmt.Fprintf(t.w, " %-13s", ifaceColumn(r))
	}
	if r.HasStateless {
		fmt.Fprintf(t.w, " %-42s", r.Stateless.Action()+" "+r.Stateless.Reason())
	}
	if r.HasStateful {
		fmt.Fprintf(t.w, " %-12s %s", r.Stateful.Label(), r.Stateful.Action()+" "+r.Stateful.Reason())
	}
	switch {
	case r.Logged == 1:
		fmt.Fprint(t.w, " [logged]")
	case r.Logged > 1:
		fmt.Fprintf(t.w, " [logged %d]", r.Logged)
	}
	_, err := fmt.Fprintln(t.w)
	return err
}

// Flush writes what is buffered.
func (t *TextWriter) Flush() error { return t.w.Flush() }

// Summary counts verdicts and labels and groups the disagreements by cause.
// The zero value is ready to use.
type Summary struct {
	Packets                   int
	Undecoded                 int
	Stateless                 [2]int // indexed by engine.Verdict
	Stateful                  [2]int
	labels                    []labelCount // the stateful labels seen, in order of appearance
	Groups                    map[string]*Group
	HasBoth                   bool
	ranStateless, ranStateful bool

	// LoggedPackets and LoggedRecords count the packets logged
	// (Record.Logged > 0) and the pflog records written.
	LoggedPackets, LoggedRecords int

	// Set by Finish, from the Replayer, once the replay is done.
	Clock   ClockSteps // how often the timestamps went back
	Seed    uint64     // conntrack's hash seed
	Logging bool       // the replay wrote a pflog log (Config.Log)
}

// Finish records what the replayer knows of the whole replay (its clock
// steps and seed), for WriteText and JSONLWriter.WriteSummary.
func (s *Summary) Finish(r *Replayer) {
	s.Clock, s.Seed, s.Logging = r.Clock(), r.Seed(), r.cfg.Log != nil
}

// labelCount counts one stateful label. A handful of distinct labels
// exist, all constant strings, so a linear search (whose string compares
// stop at the equal pointers) beats a map on every packet.
type labelCount struct {
	label string
	n     int
}

// Labels returns how many stateful decisions got each conntrack label.
func (s *Summary) Labels() map[string]int {
	m := make(map[string]int, len(s.labels))
	for _, c := range s.labels {
		m[c.label] = c.n
	}
	return m
}

func (s *Summary) countLabel(l string) {
	for i := range s.labels {
		if s.labels[i].label == l {
			s.labels[i].n++
			return
		}
	}
	s.labels = append(s.labels, labelCount{l, 1})
}

// Group is one cause of disagreement.
type Group struct {
	Agreement engine.Agreement
	Cause     string
	Count     int
	First     []string // "file#index" of the first few packets
}

const firstN = 5

// Add is a Sink.
func (s *Summary) Add(r *Record) error {
	s.Packets++
	if r.Kind != packet.KindOK {
		s.Undecoded++
	}
	if r.Logged > 0 {
		s.LoggedPackets++
		s.LoggedRecords += int(r.Logged)
	}
	if r.HasStateless {
		s.ranStateless = true
		s.Stateless[r.Stateless.Verdict]++
	}
	if r.HasStateful {
		s.ranStateful = true
		s.Stateful[r.Stateful.Verdict]++
		s.countLabel(r.Stateful.Label())
	}
	if a := r.Agreement(); a != engine.Agree {
		cause := engine.Explain(r.Stateless, r.Stateful)
		key := a.String() + "\x00" + cause
		if s.Groups == nil {
			s.Groups = map[string]*Group{}
		}
		g := s.Groups[key]
		if g == nil {
			g = &Group{Agreement: a, Cause: cause}
			s.Groups[key] = g
		}
		g.Count++
		if len(g.First) < firstN {
			g.First = append(g.First, shortName(r.File)+"#"+strconv.Itoa(r.Index))
		}
	}
	return nil
}

func shortName(f string) string {
	if i := strings.LastIndexByte(f, '/'); i >= 0 {
		return f[i+1:]
	}
	return f
}

// Disagreements returns the groups, largest first.
func (s *Summary) Disagreements() []*Group {
	gs := make([]*Group, 0, len(s.Groups))
	for _, g := range s.Groups {
		gs = append(gs, g)
	}
	sort.Slice(gs, func(i, j int) bool {
		if gs[i].Agreement != gs[j].Agreement {
			return gs[i].Agreement < gs[j].Agreement
		}
		if gs[i].Count != gs[j].Count {
			return gs[i].Count > gs[j].Count
		}
		return gs[i].Cause < gs[j].Cause
	})
	return gs
}

// WriteText writes the summary for people.
func (s *Summary) WriteText(w io.Writer) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "packets: %d", s.Packets)
	if s.Undecoded > 0 {
		fmt.Fprintf(bw, " (%d not decoded as IP)", s.Undecoded)
	}
	fmt.Fprintln(bw)
	if s.ranStateless {
		fmt.Fprintf(bw, "stateless: %d pass, %d block\n", s.Stateless[engine.Pass], s.Stateless[engine.Block])
	}
	if s.ranStateful {
		fmt.Fprintf(bw, "stateful:  %d pass, %d block\n", s.Stateful[engine.Pass], s.Stateful[engine.Block])
		counts := s.Labels()
		labels := make([]string, 0, len(counts))
		for l := range counts {
			labels = append(labels, l)
		}
		sort.Strings(labels)
		fmt.Fprintf(bw, "ct:")
		for _, l := range labels {
			fmt.Fprintf(bw, " %s %d", l, counts[l])
		}
		fmt.Fprintln(bw)
	}
	if s.Logging {
		fmt.Fprintf(bw, "logged: %d packets, %d records\n", s.LoggedPackets, s.LoggedRecords)
	}
	if s.Clock.Back > 0 {
		fmt.Fprintf(bw, "clock: %d packets stamped before an earlier packet (largest step back %v), decided at the latest time seen\n",
			s.Clock.Back, s.Clock.Largest)
	}
	if s.ranStateless && s.ranStateful {
		gs := s.Disagreements()
		n := 0
		for _, g := range gs {
			n += g.Count
		}
		fmt.Fprintf(bw, "disagreements: %d\n", n)
		for _, g := range gs {
			fmt.Fprintf(bw, "  %-21s %5d  %s  [%s]\n", g.Agreement.String()+":", g.Count, g.Cause, strings.Join(g.First, " "))
		}
	}
	return bw.Flush()
}
