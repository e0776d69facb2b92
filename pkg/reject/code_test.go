package reject

import (
	"strings"
	"testing"
)

func TestParseCode(t *testing.T) {
	tests := []struct {
		version int
		name    string
		want    Code
		value   uint8
	}{
		{4, "net-unr", NetUnr, 0},
		{4, "host-unr", HostUnr, 1},
		{4, "proto-unr", ProtoUnr, 2},
		{4, "port-unr", PortUnr, 3},
		{4, "net-prohib", NetProhib, 9},
		{4, "host-prohib", HostProhib, 10},
		{4, "filter-prohib", FilterProhib, 13},
		{6, "noroute-unr", NoRouteUnr6, 0},
		{6, "admin-unr", AdminUnr6, 1},
		{6, "addr-unr", AddrUnr6, 3},
		{6, "port-unr", PortUnr6, 4},
	}
	for _, tt := range tests {
		c, err := ParseCode(tt.version, tt.name)
		if err != nil || c != tt.want || c.Value() != tt.value || c.Version() != tt.version {
			t.Errorf("ParseCode(%d, %q) = %v (%d/%d), %v", tt.version, tt.name, c, c.Value(), c.Version(), err)
		}
		if c.String() != tt.name {
			t.Errorf("%v.String() = %q, want %q", tt.want, c.String(), tt.name)
		}
	}
	bad := []struct {
		version int
		name    string
		err     string
	}{
		{4, "admin-unr", `unknown return-icmp code "admin-unr" (want one of net-unr, host-unr, proto-unr, port-unr, net-prohib, host-prohib, filter-prohib)`},
		{6, "filter-prohib", `unknown return-icmp6 code "filter-prohib" (want one of noroute-unr, admin-unr, addr-unr, port-unr)`},
		{4, "3", "unknown return-icmp code"},
		{4, "", "unknown return-icmp code"},
		{4, "PORT-UNR", "unknown return-icmp code"},
		{5, "port-unr", "IP version 5"},
	}
	for _, tt := range bad {
		if _, err := ParseCode(tt.version, tt.name); err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("ParseCode(%d, %q): error %v, want %q", tt.version, tt.name, err, tt.err)
		}
	}
}

func TestCodeString(t *testing.T) {
	for c, want := range map[Code]string{0: "default", 4<<8 | 4: "code(4/4)", 6<<8 | 2: "code(2/6)"} {
		if c.String() != want {
			t.Errorf("%d: %q, want %q", uint16(c), c.String(), want)
		}
	}
}

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{Drop: "drop", Return: "return", ReturnRST: "return-rst", ReturnICMP: "return-icmp", 9: "kind(9)"} {
		if k.String() != want {
			t.Errorf("%d: %q, want %q", uint8(k), k.String(), want)
		}
	}
}
