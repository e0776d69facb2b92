package daemon

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/statewall/statewall/internal/pkttest"
	"github.com/statewall/statewall/pkg/engine"
	"github.com/statewall/statewall/pkg/rules"
)

// ctlDaemon is a daemon that is not running (nothing needs root) on a
// manual clock, with the rules text given.
func ctlDaemon(t *testing.T, text string) (*Daemon, *manualClock) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "ct.rules")
	if err := os.WriteFile(f, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	clk := &manualClock{}
	clk.advance(time.Hour)
	d, err := New(Config{RulesFile: f, Clock: clk}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return d, clk
}

// ctDecide gives the daemon's stateful verdict for a packet in pkttest's
// notation.
func ctDecide(t *testing.T, d *Daemon, line string) engine.Verdict {
	t.Helper()
	p, err := pkttest.Fields(line)
	if err != nil {
		t.Fatal(err)
	}
	return d.stateful.Decide(p, rules.DirIn, d.now()).Verdict
}

func ctPass(t *testing.T, d *Daemon, lines ...string) {
	t.Helper()
	for _, l := range lines {
		if v := ctDecide(t, d, l); v != engine.Pass {
			t.Fatalf("%s: %v, want pass", l, v)
		}
	}
}

// The router of the tests: clients may open connections, with a SYN for
// TCP (a plain keep-state rule: pf's flags S/SA).
const ctlRules = `set default block
pass from { 198.18.1.0/24, fd00:198:18::1:0/112 }
`

// ctlConns are the connections of TestConnFilter, each by its first packet
// and a reply.
var ctlConns = map[string][]string{
	"ssh": {
		"tcp 198.18.1.2:40000 > 198.18.2.2:22 S seq=100",
		"tcp 198.18.2.2:22 > 198.18.1.2:40000 SA seq=500 ack=101",
		"tcp 198.18.1.2:40000 > 198.18.2.2:22 A seq=101 ack=501",
	},
	"syn": {"tcp 198.18.1.3:40001 > 198.18.2.2:80 S seq=100"},
	"dns": {"udp 198.18.1.2:5353 > 198.18.2.3:53"},
	"dns-replied": {
		"udp 198.18.1.2:5354 > 198.18.2.3:53",
		"udp 198.18.2.3:53 > 198.18.1.2:5354",
	},
	"ping": {"icmp 198.18.1.2 > 198.18.2.2 type=8 id=7"},
	"v6":   {"tcp [fd00:198:18::1:2]:41000 > [fd00:198:18::2:2]:443 S seq=1"},
}

// name of a listed connection, by its original source port (or ICMP).
func ctlName(c Conn) string {
	switch {
	case c.Proto == "icmp":
		return "ping"
	case c.Original.Sport == 40000:
		return "ssh"
	case c.Original.Sport == 40001:
		return "syn"
	case c.Original.Sport == 5353:
		return "dns"
	case c.Original.Sport == 5354:
		return "dns-replied"
	case c.Original.Sport == 41000:
		return "v6"
	}
	return "?"
}

// TestConnFilter: every filter of `statewall conntrack`, on a table of a
// few connections: addresses and prefixes on either end or one, ports by
// number or service name on either end or one, protocol, state.
func TestConnFilter(t *testing.T) {
	d, _ := ctlDaemon(t, ctlRules)
	for _, lines := range ctlConns {
		ctPass(t, d, lines...)
	}
	port := func(s string) int {
		n, err := ParsePort(s)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	for _, tt := range []struct {
		f    ConnFilter
		want string
	}{
		{ConnFilter{}, "dns dns-replied ping ssh syn v6"},
		{ConnFilter{Addr: "198.18.2.2"}, "ping ssh syn"},
		{ConnFilter{Addr: "198.18.1.0/24"}, "dns dns-replied ping ssh syn"},
		{ConnFilter{Addr: "198.18.1.2/32"}, "dns dns-replied ping ssh"},
		{ConnFilter{Addr: "198.18.0.0/15"}, "dns dns-replied ping ssh syn"},
		{ConnFilter{Addr: "fd00:198:18::/64"}, "v6"},
		{ConnFilter{Addr: "fd00:198:18::2:2"}, "v6"},
		{ConnFilter{Src: "198.18.2.0/24"}, ""},
		{ConnFilter{Dst: "198.18.2.3"}, "dns dns-replied"},
		{ConnFilter{Src: "198.18.1.3", Dst: "198.18.2.0/24"}, "syn"},
		{ConnFilter{Port: port("ssh")}, "ssh"},
		{ConnFilter{Port: port("domain")}, "dns dns-replied"},
		{ConnFilter{Port: port("40000")}, "ssh"},
		{ConnFilter{Sport: port("53")}, ""},
		{ConnFilter{Dport: port("53")}, "dns dns-replied"},
		{ConnFilter{Sport: 5354}, "dns-replied"},
		{ConnFilter{Proto: "tcp"}, "ssh syn v6"},
		{ConnFilter{Proto: "UDP"}, "dns dns-replied"},
		{ConnFilter{Proto: "icmp"}, "ping"},
		{ConnFilter{Proto: "6", Addr: "198.18.1.0/24"}, "ssh syn"},
		{ConnFilter{State: "ESTABLISHED"}, "ssh"},
		{ConnFilter{State: "syn_sent"}, "syn v6"},
		{ConnFilter{State: "UNREPLIED"}, "dns ping"},
		{ConnFilter{State: "REPLIED"}, "dns-replied"},
		{ConnFilter{State: "TIME_WAIT"}, ""},
		{ConnFilter{Proto: "udp", State: "SYN_SENT"}, ""},
	} {
		resp := d.answer(Request{Cmd: "conntrack", Filter: tt.f})
		if resp.Error != "" {
			t.Errorf("%+v: %s", tt.f, resp.Error)
			continue
		}
		var got []string
		for _, c := range resp.Conns {
			got = append(got, ctlName(c))
		}
		slices.Sort(got)
		if strings.Join(got, " ") != tt.want {
			t.Errorf("%+v: %q, want %q", tt.f, strings.Join(got, " "), tt.want)
		}
	}
}

// TestConnFilterErrors: what the filters refuse, and why; the command line
// turns these into usage errors (exit 2) before it asks the daemon, which
// refuses them too.
func TestConnFilterErrors(t *testing.T) {
	for _, tt := range []struct {
		f    ConnFilter
		want string
	}{
		{ConnFilter{Proto: "foo"}, `bad --proto "foo"`},
		{ConnFilter{State: "OPEN"}, `bad --state "OPEN": want one of NONE, SYN_SENT`},
		{ConnFilter{Addr: "198.18.1"}, `bad --addr "198.18.1"`},
		{ConnFilter{Src: "198.18.1.0/33"}, `bad --src "198.18.1.0/33"`},
		{ConnFilter{Dst: "host.example"}, `bad --dst "host.example"`},
		{ConnFilter{Port: 70000}, `bad --port 70000`},
	} {
		err := tt.f.Check()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: %v, want %q", tt.f, err, tt.want)
		}
	}
	d, _ := ctlDaemon(t, ctlRules)
	if resp := d.answer(Request{Cmd: "conntrack", Filter: ConnFilter{Proto: "foo"}}); !strings.Contains(resp.Error, "bad --proto") {
		t.Errorf("the daemon lists with a bad filter: %+v", resp)
	}
	if resp := d.answer(Request{Cmd: "conntrack_delete", Filter: ConnFilter{State: "nope"}}); !strings.Contains(resp.Error, "bad --state") {
		t.Errorf("the daemon deletes with a bad filter: %+v", resp)
	}
	for s, want := range map[string]int{"ssh": 22, "HTTP": 80, "https": 443, "domain": 53, "8080": 8080, "65535": 65535} {
		if n, err := ParsePort(s); err != nil || n != want {
			t.Errorf("ParsePort(%q) = %d, %v; want %d", s, n, err, want)
		}
	}
	for _, s := range []string{"0", "65536", "-1", "sshh", ""} {
		if n, err := ParsePort(s); err == nil {
			t.Errorf("ParsePort(%q) = %d, want an error", s, n)
		}
	}
}

// TestDeleteDecidesAgain: a deleted connection's next packet is decided
// as new, by the rules. A TCP connection's next segment, an ACK
// mid-stream, is blocked: the pass rule keeps state with pf's default
// flags S/SA and so opens TCP connections only with a SYN. Another TCP
// connection, not deleted, goes on. A UDP flow's reply is then blocked
// (no rule passes the server's datagrams), its client's next datagram is
// passed by the rule again and makes a new entry. An empty filter deletes
// nothing and says to flush; flush deletes all.
func TestDeleteDecidesAgain(t *testing.T) {
	d, _ := ctlDaemon(t, ctlRules)
	web := []string{
		"tcp 198.18.1.2:40000 > 198.18.2.2:80 S seq=100",
		"tcp 198.18.2.2:80 > 198.18.1.2:40000 SA seq=500 ack=101",
		"tcp 198.18.1.2:40000 > 198.18.2.2:80 A seq=101 ack=501",
	}
	other := []string{
		"tcp 198.18.1.2:40001 > 198.18.2.2:81 S seq=100",
		"tcp 198.18.2.2:81 > 198.18.1.2:40001 SA seq=500 ack=101",
		"tcp 198.18.1.2:40001 > 198.18.2.2:81 A seq=101 ack=501",
	}
	ctPass(t, d, web...)
	ctPass(t, d, other...)
	ctPass(t, d, "udp 198.18.1.2:5353 > 198.18.2.3:53", "udp 198.18.2.3:53 > 198.18.1.2:5353")
	webData := "tcp 198.18.1.2:40000 > 198.18.2.2:80 PA seq=101 ack=501 len=10"
	ctPass(t, d, webData)

	resp := d.answer(Request{Cmd: "conntrack_delete", Filter: ConnFilter{Port: 80}})
	if resp.Error != "" || resp.Deleted != 1 {
		t.Fatalf("delete port 80: %+v", resp)
	}
	if v := ctDecide(t, d, "tcp 198.18.1.2:40000 > 198.18.2.2:80 PA seq=111 ack=501 len=10"); v != engine.Block {
		t.Errorf("the deleted connection's next segment: %v, want block (no SYN)", v)
	}
	if v := ctDecide(t, d, "tcp 198.18.2.2:80 > 198.18.1.2:40000 A seq=501 ack=111"); v != engine.Block {
		t.Errorf("the deleted connection's next reply: %v, want block", v)
	}
	ctPass(t, d, "tcp 198.18.1.2:40001 > 198.18.2.2:81 PA seq=101 ack=501 len=10",
		"tcp 198.18.2.2:81 > 198.18.1.2:40001 PA seq=501 ack=111 len=10")

	if resp := d.answer(Request{Cmd: "conntrack_delete", Filter: ConnFilter{Proto: "udp", Dport: 53}}); resp.Deleted != 1 {
		t.Fatalf("delete udp: %+v", resp)
	}
	if v := ctDecide(t, d, "udp 198.18.2.3:53 > 198.18.1.2:5353"); v != engine.Block {
		t.Errorf("the deleted UDP flow's reply: %v, want block (the rules decide, and pass only clients)", v)
	}
	ctPass(t, d, "udp 198.18.1.2:5353 > 198.18.2.3:53")
	if conns, _ := d.Conntrack(ConnFilter{Proto: "udp"}); len(conns) != 1 || conns[0].State != "UNREPLIED" {
		t.Errorf("the UDP flow after its next datagram: %+v, want a new unreplied entry", conns)
	}

	if resp := d.answer(Request{Cmd: "conntrack_delete"}); !strings.Contains(resp.Error, "--flush") || resp.Deleted != 0 {
		t.Errorf("delete without a filter: %+v", resp)
	}
	if resp := d.answer(Request{Cmd: "conntrack_flush"}); resp.Error != "" || resp.Deleted != 2 {
		t.Errorf("flush: %+v, want 2 deleted", resp)
	}
	if n := d.table.Live(d.now()); n != 0 {
		t.Errorf("%d entries after flush", n)
	}
}

// TestConnJSON: the listing's JSON, field by field, snake_case, tuples as
// objects (ICMP with type, code and id).
func TestConnJSON(t *testing.T) {
	d, _ := ctlDaemon(t, ctlRules)
	ctPass(t, d, ctlConns["ssh"]...)
	ctPass(t, d, ctlConns["ping"]...)
	for _, tt := range []struct {
		f    ConnFilter
		want string
	}{
		{ConnFilter{Proto: "tcp"}, `{"proto":"tcp","state":"ESTABLISHED","timeout_s":432000,` +
			`"original":{"src":"198.18.1.2","dst":"198.18.2.2","sport":40000,"dport":22},` +
			`"reply":{"src":"198.18.2.2","dst":"198.18.1.2","sport":22,"dport":40000},` +
			`"assured":true,"seen_reply":true,"packets":[2,1],"bytes":[80,40]}`},
		{ConnFilter{Proto: "icmp"}, `{"proto":"icmp","state":"UNREPLIED","timeout_s":30,` +
			`"original":{"src":"198.18.1.2","dst":"198.18.2.2","type":8,"code":0,"id":7},` +
			`"reply":{"src":"198.18.2.2","dst":"198.18.1.2","type":0,"code":0,"id":7},` +
			`"assured":false,"seen_reply":false,"packets":[1,0],"bytes":[28,0]}`},
	} {
		conns, err := d.Conntrack(tt.f)
		if err != nil || len(conns) != 1 {
			t.Fatalf("%+v: %v %v", tt.f, conns, err)
		}
		b, _ := json.Marshal(conns[0])
		if string(b) != tt.want {
			t.Errorf("JSON\n%s\nwant\n%s", b, tt.want)
		}
	}
	conns, _ := d.Conntrack(ConnFilter{Proto: "tcp"})
	want := "tcp      6 432000 ESTABLISHED src=198.18.1.2 dst=198.18.2.2 sport=40000 dport=22 packets=2 bytes=80 " +
		"src=198.18.2.2 dst=198.18.1.2 sport=22 dport=40000 packets=1 bytes=40 [ASSURED]"
	if got := conns[0].String(); got != want {
		t.Errorf("text\n%s\nwant\n%s", got, want)
	}
}

// TestEventStream: the event stream on a pipe: a JSON line that says it
// starts, then NEW, UPDATE and DESTROY lines for the connections the
// filter selects; a connection that times out is destroyed within the
// stream's sweep period although no packet comes (the daemon sweeps while
// someone listens). A bad filter is refused on the first line.
func TestEventStream(t *testing.T) {
	d, clk := ctlDaemon(t, ctlRules)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	open := func(f ConnFilter) (*json.Decoder, func()) {
		srv, cli := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			d.streamEvents(ctx, srv, bufio.NewReader(srv), f)
			srv.Close()
		}()
		return json.NewDecoder(cli), func() { cli.Close(); <-done }
	}
	dec, stop := open(ConnFilter{State: "nope"})
	var resp Response
	if err := dec.Decode(&resp); err != nil || !strings.Contains(resp.Error, "bad --state") {
		t.Errorf("bad filter: %+v %v", resp, err)
	}
	stop()

	dec, stop = open(ConnFilter{Dport: 53})
	defer stop()
	resp = Response{}
	if err := dec.Decode(&resp); err != nil || resp.Error != "" {
		t.Fatalf("first line: %+v %v", resp, err)
	}
	if d.table.Subscribers() != 1 {
		t.Fatalf("%d subscribers", d.table.Subscribers())
	}
	ctPass(t, d, ctlConns["ssh"]...) // not selected
	ctPass(t, d, ctlConns["dns-replied"]...)
	next := func() ConnEvent {
		t.Helper()
		var ev ConnEvent
		if err := dec.Decode(&ev); err != nil {
			t.Fatal(err)
		}
		return ev
	}
	for _, want := range []string{"NEW UNREPLIED", "UPDATE REPLIED"} {
		ev := next()
		if ev.Conn == nil || ev.Type+" "+ev.State != want || ev.Original.Dport != 53 {
			t.Fatalf("event %+v, want %s", ev, want)
		}
	}
	clk.advance(31 * time.Second) // past UDP's 30 s; no packet comes
	start := time.Now()
	ev := next()
	if ev.Conn == nil || ev.Type != "DESTROY" || ev.Timeout != 0 || ev.Packets != [2]uint64{1, 1} {
		t.Errorf("after the timeout: %+v", ev)
	}
	if dt := time.Since(start); dt > 3*time.Second {
		t.Errorf("the DESTROY of the timeout came %v after it", dt)
	}
	stop()
	for deadline := time.Now().Add(5 * time.Second); d.table.Subscribers() != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the subscription outlived its client")
		}
	}
}
