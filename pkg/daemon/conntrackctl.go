package daemon

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/statewall/statewall/pkg/conntrack"
	"github.com/statewall/statewall/pkg/conntrack/tcpstate"
	"github.com/statewall/statewall/pkg/packet"
	"github.com/statewall/statewall/pkg/rules"
)

// `statewall conntrack`: list (conntrack -L), delete (-D), flush (-F) and
// follow (-E) the tracked connections, all selected by the same filters
// (ConnFilter), all in the same field names (Conn).
//
// Requests: "conntrack" lists, "conntrack_delete" deletes what the filter
// selects (an empty filter is refused: "conntrack_flush" deletes all),
// "conntrack_events" is a stream: a JSON line saying it starts (or why it
// cannot), then one ConnEvent a line until the client hangs up.

// ConnFilter selects connections. Every field that is set must match;
// the zero value selects every connection.
type ConnFilter struct {
	// Addr: an address or prefix (198.18.1.0/24) on either end.
	Addr string `json:"addr,omitempty"`
	// Src and Dst: the original direction's source and destination
	// (conntrack -s, -d), addresses or prefixes.
	Src string `json:"src,omitempty"`
	Dst string `json:"dst,omitempty"`
	// Port: a port on either end; Sport and Dport: the original
	// direction's (conntrack --sport, --dport). 1-65535: ParsePort reads
	// service names. Protocols without ports never match them.
	Port  int `json:"port,omitempty"`
	Sport int `json:"sport,omitempty"`
	Dport int `json:"dport,omitempty"`
	// Proto: tcp, udp, icmp, icmp6, ... or a number 0-255.
	Proto string `json:"proto,omitempty"`
	// State: what the listing's state column shows (StateNames): a TCP
	// state (ESTABLISHED, SYN_SENT, TIME_WAIT...), an SCTP state, or for
	// the other protocols UNREPLIED, REPLIED or ASSURED. Any case.
	State string `json:"state,omitempty"`
}

// IsZero reports whether f selects every connection.
func (f ConnFilter) IsZero() bool { return f == ConnFilter{} }

// Check reports what is wrong with f, if anything: the command line
// checks a filter before it sends it (a usage error), the daemon again.
func (f ConnFilter) Check() error {
	_, err := f.compile()
	return err
}

// connMatch is a checked ConnFilter, for the table's callbacks: it is
// called with a shard locked, so it only compares.
type connMatch struct {
	addr, src, dst     netip.Prefix // zero: unset
	port, sport, dport int          // 0: unset
	proto              packet.Proto
	hasProto           bool
	state              string
}

func (f ConnFilter) compile() (*connMatch, error) {
	m := &connMatch{port: f.Port, sport: f.Sport, dport: f.Dport}
	var err error
	for _, a := range []struct {
		flag, s string
		p       *netip.Prefix
	}{{"addr", f.Addr, &m.addr}, {"src", f.Src, &m.src}, {"dst", f.Dst, &m.dst}} {
		if a.s == "" {
			continue
		}
		if *a.p, err = parsePrefix(a.s); err != nil {
			return nil, fmt.Errorf("bad --%s %q: want an address or a prefix (198.18.1.2, 198.18.1.0/24, fd00::/64)", a.flag, a.s)
		}
	}
	for _, p := range []struct {
		flag string
		n    int
	}{{"port", f.Port}, {"sport", f.Sport}, {"dport", f.Dport}} {
		if p.n < 0 || p.n > 65535 {
			return nil, fmt.Errorf("bad --%s %d: want 1-65535", p.flag, p.n)
		}
	}
	if f.Proto != "" {
		s := strings.ToLower(f.Proto)
		if s == "icmpv6" { // conntrack's spelling
			s = "icmp6"
		}
		p, ok := packet.ParseProto(s)
		if !ok {
			return nil, fmt.Errorf("bad --proto %q: want a name such as tcp, udp, icmp, icmp6, sctp, gre, or a number 0-255", f.Proto)
		}
		m.proto, m.hasProto = p, true
	}
	if f.State != "" {
		s := strings.ToUpper(f.State)
		if !slices.Contains(StateNames(), s) {
			return nil, fmt.Errorf("bad --state %q: want one of %s", f.State, strings.Join(StateNames(), ", "))
		}
		m.state = s
	}
	return m, nil
}

// parsePrefix reads an address (a prefix of its full length) or a prefix,
// with its host bits masked.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

// match reports whether e passes the filter. It allocates nothing and
// takes no lock: the table calls it with a shard locked.
func (m *connMatch) match(e *conntrack.EntryInfo) bool {
	o := &e.Original
	if m.hasProto && o.Proto() != m.proto {
		return false
	}
	if m.addr.IsValid() || m.src.IsValid() || m.dst.IsValid() {
		src, dst := o.Src(), o.Dst()
		if m.addr.IsValid() && !m.addr.Contains(src) && !m.addr.Contains(dst) ||
			m.src.IsValid() && !m.src.Contains(src) ||
			m.dst.IsValid() && !m.dst.Contains(dst) {
			return false
		}
	}
	sp, dp := int(o.SrcPort()), int(o.DstPort())
	if m.port != 0 && sp != m.port && dp != m.port ||
		m.sport != 0 && sp != m.sport ||
		m.dport != 0 && dp != m.dport {
		return false
	}
	return m.state == "" || e.StateName() == m.state
}

// ParsePort reads a port filter: a number 1-65535 or a service name the
// rules language knows (ssh, http, domain...).
func ParsePort(s string) (int, error) {
	if n, ok := rules.ServicePort(strings.ToLower(s)); ok {
		return int(n), nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("bad port %q: want a number 1-65535 or a service name (ssh, http, https, domain, ...)", s)
	}
	return n, nil
}

// StateNames are the states a filter may name, as the listing shows them:
// the TCP states, the SCTP states, then UNREPLIED, REPLIED and ASSURED
// for the other protocols.
func StateNames() []string {
	var out []string
	for s := tcpstate.State(0); s < tcpstate.NumStates; s++ {
		out = append(out, s.String())
	}
	for s := conntrack.SCTPState(0); s.String() != (conntrack.SCTPState(255)).String(); s++ {
		if !slices.Contains(out, s.String()) {
			out = append(out, s.String())
		}
	}
	return append(out, "UNREPLIED", "REPLIED", "ASSURED")
}

// Tuple is one direction of a connection: addresses, and the ports
// (TCP, UDP, UDP-Lite, SCTP), the ICMP type, code and identifier, or the
// GRE keys, by protocol.
type Tuple struct {
	Src   string  `json:"src"`
	Dst   string  `json:"dst"`
	Sport uint16  `json:"sport,omitempty"`
	Dport uint16  `json:"dport,omitempty"`
	Type  *uint8  `json:"type,omitempty"` // ICMP, ICMPv6
	Code  *uint8  `json:"code,omitempty"`
	ID    *uint16 `json:"id,omitempty"`
	// GRE: the source key is always 0 here; the destination key is an
	// enhanced GRE (PPTP) call id, 0 for plain GRE.
	SrcKey *uint16 `json:"src_key,omitempty"`
	DstKey *uint16 `json:"dst_key,omitempty"`
}

func tupleOf(k conntrack.Key) Tuple {
	t := Tuple{Src: k.Src().String(), Dst: k.Dst().String(), Sport: k.SrcPort(), Dport: k.DstPort()}
	switch k.Proto() {
	case packet.ProtoICMP, packet.ProtoICMPv6:
		typ, code, id := k.ICMPType(), k.ICMPCode(), k.ICMPID()
		t.Type, t.Code, t.ID = &typ, &code, &id
	case packet.ProtoGRE:
		s, d := k.GREKeys()
		t.SrcKey, t.DstKey = &s, &d
	}
	return t
}

// String renders the tuple as conntrack -L does: "src=198.18.1.2
// dst=198.18.2.2 sport=40000 dport=80", "... type=8 code=0 id=7" for
// ICMP, "... srckey=0x0 dstkey=0x4001" for GRE.
func (t Tuple) String() string {
	switch {
	case t.Type != nil && t.Code != nil && t.ID != nil:
		return fmt.Sprintf("src=%s dst=%s type=%d code=%d id=%d", t.Src, t.Dst, *t.Type, *t.Code, *t.ID)
	case t.SrcKey != nil && t.DstKey != nil:
		return fmt.Sprintf("src=%s dst=%s srckey=%#x dstkey=%#x", t.Src, t.Dst, *t.SrcKey, *t.DstKey)
	case t.Sport != 0 || t.Dport != 0:
		return fmt.Sprintf("src=%s dst=%s sport=%d dport=%d", t.Src, t.Dst, t.Sport, t.Dport)
	}
	return fmt.Sprintf("src=%s dst=%s", t.Src, t.Dst)
}

// Conn is one tracked connection, in the listing and in the events.
type Conn struct {
	Proto     string    `json:"proto"` // packet.Proto's name: tcp, udp, icmp, icmp6, ...
	State     string    `json:"state"` // see ConnFilter.State
	Timeout   float64   `json:"timeout_s"`
	Original  Tuple     `json:"original"`
	Reply     Tuple     `json:"reply"`
	Assured   bool      `json:"assured"`
	SeenReply bool      `json:"seen_reply"`
	Packets   [2]uint64 `json:"packets"` // original, reply
	Bytes     [2]uint64 `json:"bytes"`
}

func connOf(e *conntrack.EntryInfo) Conn {
	return Conn{
		Proto: e.Proto().String(), State: e.StateName(), Timeout: e.Timeout.Seconds(),
		Original: tupleOf(e.Original), Reply: tupleOf(e.Reply),
		Assured: e.Assured, SeenReply: e.SeenReply,
		Packets: e.Packets, Bytes: e.Bytes,
	}
}

// String renders the connection as conntrack -L does (with accounting):
//
//	tcp      6 431999 ESTABLISHED src=198.18.1.2 dst=198.18.2.2 sport=40000 dport=80 packets=3 bytes=180 src=198.18.2.2 dst=198.18.1.2 sport=80 dport=40000 packets=2 bytes=120 [ASSURED]
//
// The state is left out for protocols without one (UNREPLIED, REPLIED,
// ASSURED are flags there).
func (c Conn) String() string {
	var b strings.Builder
	num := 0
	if p, ok := packet.ParseProto(c.Proto); ok {
		num = int(p)
	}
	fmt.Fprintf(&b, "%-8s %d %d ", c.Proto, num, int64(c.Timeout))
	switch c.State {
	case "UNREPLIED", "REPLIED", "ASSURED":
	default:
		b.WriteString(c.State)
		b.WriteByte(' ')
	}
	fmt.Fprintf(&b, "%s packets=%d bytes=%d ", c.Original, c.Packets[0], c.Bytes[0])
	if !c.SeenReply {
		b.WriteString("[UNREPLIED] ")
	}
	fmt.Fprintf(&b, "%s packets=%d bytes=%d", c.Reply, c.Packets[1], c.Bytes[1])
	if c.Assured {
		b.WriteString(" [ASSURED]")
	}
	return b.String()
}

// Conntrack lists the tracked connections that match f.
func (d *Daemon) Conntrack(f ConnFilter) ([]Conn, error) {
	m, err := f.compile()
	if err != nil {
		return nil, err
	}
	var out []Conn
	d.table.Walk(d.now(), func(e conntrack.EntryInfo) bool {
		if m.match(&e) {
			out = append(out, connOf(&e))
		}
		return true
	})
	return out, nil
}

// errNoFilter: a delete must say what it deletes.
var errNoFilter = errors.New("no filter: say which connections to delete, or flush them all (statewall conntrack --flush)")

// DeleteConns deletes the connections that match f, which must not be
// empty (FlushConns deletes all), and returns how many. The next packet
// of a deleted connection is decided as a new one: by the rules, which
// may block it (a mid-stream TCP segment, unless a rule says flags any).
func (d *Daemon) DeleteConns(f ConnFilter) (int, error) {
	if f.IsZero() {
		return 0, errNoFilter
	}
	m, err := f.compile()
	if err != nil {
		return 0, err
	}
	n := d.table.Delete(d.now(), m.match)
	d.offloadDeleted()
	d.log.Info("conntrack: connections deleted", "n", n, "filter", fmt.Sprintf("%+v", f))
	return n, nil
}

// FlushConns deletes every connection and returns how many.
func (d *Daemon) FlushConns() int {
	n := d.table.Delete(d.now(), func(*conntrack.EntryInfo) bool { return true })
	d.offloadDeleted()
	d.log.Info("conntrack: table flushed", "n", n)
	return n
}

// ConnEvent is one line of the event stream: an event (Type NEW, UPDATE
// or DESTROY, and the connection, after the change; a DESTROY's timeout
// is 0), or, Type DROPPED, the number of events the daemon dropped so
// far because this client did not keep up.
type ConnEvent struct {
	Type string `json:"type"`
	*Conn
	Dropped uint64 `json:"dropped,omitempty"`
}

// eventQueue is a stream's queue in the table, in events (136 bytes
// each: 544 KiB): a burst of about a thousand short connections (four
// events or more each) while the stream writes to a slow reader.
const eventQueue = 4096

// streamEvents serves "conntrack_events" until the client hangs up or ctx
// ends. While it runs it sweeps the table every conntrack.SweepEvery, so
// that connections that time out are reported (reaped) within that delay;
// without a listener the daemon keeps reading no clock when idle.
func (d *Daemon) streamEvents(ctx context.Context, c net.Conn, r *bufio.Reader, f ConnFilter) {
	c.SetDeadline(time.Time{})
	enc := json.NewEncoder(c)
	m, err := f.compile()
	if err != nil {
		enc.Encode(Response{Error: err.Error()})
		return
	}
	sub := d.table.Subscribe(eventQueue, m.match)
	defer sub.Close()
	d.log.Debug("conntrack events: a reader follows", "filter", fmt.Sprintf("%+v", f))
	if err := enc.Encode(Response{}); err != nil {
		return
	}
	// The client sends nothing more: a read returns when it hangs up.
	gone := make(chan struct{})
	go func() {
		io.Copy(io.Discard, r)
		close(gone)
	}()
	tick := time.NewTicker(conntrack.SweepEvery)
	defer tick.Stop()
	w := bufio.NewWriter(c)
	enc = json.NewEncoder(w)
	var reported uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-gone:
			return
		case <-tick.C:
			d.table.Sweep(d.now())
		case ev := <-sub.Events():
			// Write what is queued, then flush once.
			for more := true; more; {
				conn := connOf(&ev.Entry)
				if err := enc.Encode(ConnEvent{Type: ev.Type.String(), Conn: &conn}); err != nil {
					return
				}
				select {
				case ev = <-sub.Events():
				default:
					more = false
				}
			}
		}
		if n := sub.Dropped(); n != reported {
			reported = n
			if err := enc.Encode(ConnEvent{Type: "DROPPED", Dropped: n}); err != nil {
				return
			}
		}
		if w.Buffered() > 0 {
			c.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if err := w.Flush(); err != nil {
				return
			}
		}
	}
}

// EventStream follows a running daemon's connection events that match f.
// Next returns them one by one; Close stops.
func EventStream(socket string, f ConnFilter) (*EventReader, error) {
	c, err := net.DialTimeout("unix", socket, 2*time.Second)
	if err != nil {
		return nil, fmt.Errorf("cannot reach statewall at %s (is it running? are you root?): %w", socket, err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := json.NewEncoder(c).Encode(Request{Cmd: "conntrack_events", Filter: f}); err != nil {
		c.Close()
		return nil, fmt.Errorf("sending the request: %w", err)
	}
	dec := json.NewDecoder(bufio.NewReader(c))
	var resp Response
	if err := dec.Decode(&resp); err != nil {
		c.Close()
		return nil, fmt.Errorf("reading the answer: %w", err)
	}
	if resp.Error != "" {
		c.Close()
		return nil, errors.New(resp.Error)
	}
	c.SetDeadline(time.Time{})
	return &EventReader{c: c, dec: dec}, nil
}

// EventReader reads an event stream (EventStream).
type EventReader struct {
	c   net.Conn
	dec *json.Decoder
}

// Next returns the next event, waiting for it. It returns io.EOF when the
// daemon ends the stream.
func (r *EventReader) Next() (ConnEvent, error) {
	var ev ConnEvent
	err := r.dec.Decode(&ev)
	return ev, err
}

// Close ends the stream.
func (r *EventReader) Close() error { return r.c.Close() }
