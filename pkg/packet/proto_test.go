package packet

import "testing"

// TestProto: one name per protocol for every report, the rules language's
// names and aliases parsed back, numbers for the rest.
func TestProto(t *testing.T) {
	for _, c := range []struct {
		p     Proto
		name  string
		ports bool
	}{
		{ProtoTCP, "tcp", true}, {ProtoUDP, "udp", true}, {ProtoUDPLite, "udplite", true}, {ProtoSCTP, "sctp", true},
		{ProtoICMP, "icmp", false}, {ProtoICMPv6, "icmp6", false}, {ProtoGRE, "gre", false},
		{50, "esp", false}, {0, "0", false}, {253, "253", false},
	} {
		if got := c.p.String(); got != c.name {
			t.Errorf("Proto(%d).String() = %q, want %q", c.p, got, c.name)
		}
		if got := c.p.HasPorts(); got != c.ports {
			t.Errorf("Proto(%d).HasPorts() = %v", c.p, got)
		}
		if got, ok := ParseProto(c.name); !ok || got != c.p {
			t.Errorf("ParseProto(%q) = %d, %v; want %d", c.name, got, ok, c.p)
		}
	}
	for s, want := range map[string]Proto{"ipv6-icmp": ProtoICMPv6, "icmpv6": ProtoICMPv6, "6": ProtoTCP, "255": 255} {
		if got, ok := ParseProto(s); !ok || got != want {
			t.Errorf("ParseProto(%q) = %d, %v; want %d", s, got, ok, want)
		}
	}
	for _, s := range []string{"", "foo", "256", "-1", "TCP6", "0x6"} {
		if got, ok := ParseProto(s); ok {
			t.Errorf("ParseProto(%q) = %d, want an error", s, got)
		}
	}
}
