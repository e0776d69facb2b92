package rules

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/statewall/statewall/pkg/conntrack"
)

// TestSCTPAndGRETimeouts: the SCTP state timeouts and the two GRE ones
// are set by the kernel's names, land in their fields, and print back
// (what `statewall check` shows), sorted by name.
func TestSCTPAndGRETimeouts(t *testing.T) {
	src := `set timeout sctp.established 1h
set timeout sctp.cookie_wait 5s
set timeout sctp.heartbeat_sent 45s
set timeout sctp.closed 20s
set timeout sctp.cookie_echoed 4s
set timeout sctp.shutdown_sent 6s
set timeout sctp.shutdown_recd 7s
set timeout sctp.shutdown_ack_sent 8s
set timeout gre 1m
set timeout gre.stream 10m
pass all
`
	rs := mustParse(t, src)
	want := conntrack.Timeouts{
		SCTP: conntrack.SCTPTimeouts{
			Closed: 20 * time.Second, CookieWait: 5 * time.Second, CookieEchoed: 4 * time.Second,
			Established: time.Hour, ShutdownSent: 6 * time.Second, ShutdownRecd: 7 * time.Second,
			ShutdownAckSent: 8 * time.Second, HeartbeatSent: 45 * time.Second,
		},
		GRE:       time.Minute,
		GREStream: 10 * time.Minute,
	}
	if rs.Timeouts != want {
		t.Errorf("Timeouts = %+v\nwant %+v", rs.Timeouts, want)
	}
	printed := rs.String()
	wantPrinted := `set timeout gre 1m
set timeout gre.stream 10m
set timeout sctp.closed 20s
set timeout sctp.cookie_echoed 4s
set timeout sctp.cookie_wait 5s
set timeout sctp.established 1h
set timeout sctp.heartbeat_sent 45s
set timeout sctp.shutdown_ack_sent 8s
set timeout sctp.shutdown_recd 7s
set timeout sctp.shutdown_sent 6s
`
	if !strings.HasPrefix(printed, wantPrinted) {
		t.Errorf("printed:\n%s\nwant it to start with:\n%s", printed, wantPrinted)
	}
	roundTrip(t, rs)
}

// TestTimeoutNamesDocumented: every timeout name the parser takes is in
// the package documentation's timeout section (doc.go).
func TestTimeoutNamesDocumented(t *testing.T) {
	doc := docTimeouts(t)
	for _, n := range conntrack.TimeoutNames() {
		if !strings.Contains(doc, n+" ") {
			t.Errorf("timeout %q is not in doc.go's # Timeouts section", n)
		}
	}
}

// docTimeouts returns doc.go's # Timeouts section.
func docTimeouts(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(b), "// # Timeouts\n")
	if !ok {
		t.Fatal("doc.go has no # Timeouts section")
	}
	sec, _, _ = strings.Cut(sec, "// # ")
	return sec
}
