package conntrack

import (
	"fmt"
	"testing"

	"github.com/statewall/statewall/internal/pkttest"
	"github.com/statewall/statewall/pkg/packet"
)

// sctp builds the bytes of an SCTP packet over IPv4 with one chunk of the
// given type and length after the ports (pkttest's "chunk=TYPE:LENGTH"),
// then more words: the CRC32c is right unless they say badsum.
func sctp(t *testing.T, ports string, typ, n int, more string) []byte {
	t.Helper()
	return pkttest.MustBytes(t, fmt.Sprintf("sctp %s chunk=%d:%d %s", ports, typ, n, more))
}

// TestSCTPAssociation pins what the kernel's SCTP tracker decides for
// labels: an INIT opens an association (ports in the tuple), the INIT ACK
// is established, DATA with no association is invalid (it cannot start
// one), a bad CRC32c is invalid, and INIT bundled with another chunk is
// invalid.
func TestSCTPAssociation(t *testing.T) {
	tab := New(Config{})
	var p packet.Packet
	track := func(b []byte) Result {
		p.Decode(b, packet.LinkIP)
		if p.Kind != packet.KindOK {
			t.Fatalf("decode: %v", p.Kind)
		}
		return tab.Track(&p, 0)
	}
	init := sctp(t, "198.18.0.1:2906 > 198.18.0.2:6303", sctpInit, 20, "")
	r := track(init)
	if r.Label != LabelNew || !tab.Commit(&p, &r, 0) {
		t.Fatalf("INIT: %v %v", r.Label, r.ReasonString())
	}
	if r := track(sctp(t, "198.18.0.2:6303 > 198.18.0.1:2906", sctpInitAck, 20, "")); r.Label != LabelEstablished {
		t.Errorf("INIT ACK: %v", r.Label)
	}
	if r := track(sctp(t, "198.18.0.1:2905 > 198.18.0.2:6303", sctpData, 20, "")); r.Label != LabelInvalid || r.Reason != ReasonSCTPNoInit {
		t.Errorf("DATA without association: %v %v", r.Label, r.ReasonString())
	}
	if r := track(sctp(t, "198.18.0.1:2907 > 198.18.0.2:6303", sctpInit, 20, "badsum")); r.Label != LabelInvalid || r.Reason != ReasonBadChecksum {
		t.Errorf("bad CRC32c: %v %v", r.Label, r.ReasonString())
	}
	if r := track(sctp(t, "198.18.0.1:2908 > 198.18.0.2:6303", sctpInit, 20, fmt.Sprintf("chunk=%d:16", sctpData))); r.Label != LabelInvalid || r.Reason != ReasonSCTPChunks {
		t.Errorf("INIT bundled: %v %v", r.Label, r.ReasonString())
	}
}
