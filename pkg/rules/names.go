package rules

// Names the language knows for ports and ICMP types (protocols: package
// packet's ParseProto and Proto.String). The first
// name listed for a number is the canonical one that String prints; the
// others are accepted aliases (pf's and nft's spellings).

type named struct {
	name string
	num  uint8
}

var serviceNames = map[string]uint16{
	"ftp-data":   20,
	"ftp":        21,
	"ssh":        22,
	"telnet":     23,
	"smtp":       25,
	"domain":     53,
	"bootps":     67,
	"bootpc":     68,
	"tftp":       69,
	"http":       80,
	"kerberos":   88,
	"pop3":       110,
	"sunrpc":     111,
	"ntp":        123,
	"imap":       143,
	"snmp":       161,
	"bgp":        179,
	"ldap":       389,
	"https":      443,
	"isakmp":     500,
	"syslog":     514,
	"submission": 587,
	"ldaps":      636,
	"imaps":      993,
	"pop3s":      995,
}

var icmp4Names = []named{
	{"echo-reply", 0},
	{"dest-unreach", 3},
	{"source-quench", 4},
	{"redirect", 5},
	{"echo-request", 8},
	{"router-advert", 9},
	{"router-solicit", 10},
	{"time-exceeded", 11},
	{"param-problem", 12},
	{"timestamp", 13},
	{"timestamp-reply", 14},
	{"info-request", 15},
	{"info-reply", 16},
	{"mask-request", 17},
	{"mask-reply", 18},
	// pf
	{"echorep", 0},
	{"unreach", 3},
	{"squench", 4},
	{"redir", 5},
	{"echoreq", 8},
	{"routeradv", 9},
	{"routersol", 10},
	{"timex", 11},
	{"paramprob", 12},
	{"timereq", 13},
	{"timerep", 14},
	{"inforeq", 15},
	{"inforep", 16},
	{"maskreq", 17},
	{"maskrep", 18},
	// nft
	{"destination-unreachable", 3},
	{"router-advertisement", 9},
	{"router-solicitation", 10},
	{"parameter-problem", 12},
	{"timestamp-request", 13},
	{"address-mask-request", 17},
	{"address-mask-reply", 18},
}

var icmp6Names = []named{
	{"dest-unreach", 1},
	{"packet-too-big", 2},
	{"time-exceeded", 3},
	{"param-problem", 4},
	{"echo-request", 128},
	{"echo-reply", 129},
	{"mld-query", 130},
	{"mld-report", 131},
	{"mld-done", 132},
	{"router-solicit", 133},
	{"router-advert", 134},
	{"neighbor-solicit", 135},
	{"neighbor-advert", 136},
	{"redirect", 137},
	{"mld2-report", 143},
	// pf
	{"unreach", 1},
	{"toobig", 2},
	{"timex", 3},
	{"paramprob", 4},
	{"echoreq", 128},
	{"echorep", 129},
	{"routersol", 133},
	{"routeradv", 134},
	{"neighbrsol", 135},
	{"neighbradv", 136},
	{"redir", 137},
	// nft
	{"destination-unreachable", 1},
	{"parameter-problem", 4},
	{"nd-router-solicit", 133},
	{"nd-router-advert", 134},
	{"nd-neighbor-solicit", 135},
	{"nd-neighbor-advert", 136},
	{"nd-redirect", 137},
}

func lookupName(tab []named, s string) (uint8, bool) {
	for _, n := range tab {
		if n.name == s {
			return n.num, true
		}
	}
	return 0, false
}

// canonicalName returns the first name for num, or "".
func canonicalName(tab []named, num uint8) string {
	for _, n := range tab {
		if n.num == num {
			return n.name
		}
	}
	return ""
}

// ServicePort returns the port of a service name the rules language knows
// ("ssh": 22), for the command line's port filters.
func ServicePort(name string) (uint16, bool) {
	n, ok := serviceNames[name]
	return n, ok
}
