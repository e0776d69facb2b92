package nfq

import (
	"strings"
	"testing"
)

// badTags are tags that must never reach iptables or nft: each would
// break a chain name or add to the nft script EnableDefrag runs as root.
var badTags = []string{
	"x\nlist ruleset", // a second nft command (the finding used flush ruleset)
	"x;list ruleset",
	"x }",
	"x y",
	"x.y",
	"x/y",
	"-x", // iptables would read -x-INPUT as an option
	"STATEWÄLL",
	"x\x00",
	strings.Repeat("x", 21), // x...x-FORWARD would pass iptables' 28
}

// TestCheckTag: the bad tags are refused, the tags a user would write
// pass, the longest included.
func TestCheckTag(t *testing.T) {
	for _, tag := range badTags {
		if err := CheckTag(tag); err == nil || !strings.Contains(err.Error(), "bad tag") {
			t.Errorf("CheckTag(%q) = %v, want a bad tag error", tag, err)
		}
	}
	for _, tag := range []string{"STATEWALL", "sw2", "sw_router-1", strings.Repeat("x", 20)} {
		if err := CheckTag(tag); err != nil {
			t.Errorf("CheckTag(%q) = %v", tag, err)
		}
	}
}

// TestDefragScript: the scripts nft runs (nft -f -), as the daemon's
// TestRouterOutboundOnly finds the table ("nft list table inet
// statewall-defrag-STATEWALL").
func TestDefragScript(t *testing.T) {
	if got := DefragTable(""); got != "statewall-defrag-STATEWALL" {
		t.Errorf("DefragTable(\"\") = %q", got)
	}
	for _, tt := range []struct{ rule, want string }{
		{defragRules[0], `table inet statewall-defrag-sw2
delete table inet statewall-defrag-sw2
table inet statewall-defrag-sw2 {
	chain defrag {
		meta l4proto tcp tproxy to :1
	}
}
`},
		{"", `table inet statewall-defrag-sw2
delete table inet statewall-defrag-sw2
`},
	} {
		if got := defragScript("sw2", tt.rule); got != tt.want {
			t.Errorf("defragScript(%q):\n%s\nwant\n%s", tt.rule, got, tt.want)
		}
	}
}
