package daemon

import (
	"net/netip"
	"sort"
	"time"

	"github.com/statewall/statewall/pkg/srctrack"
)

// Source nodes of the stateful tracking options (max-src-*, overload):
// listed by `statewall conntrack --sources`, counted in status and the
// metrics.

// Source is one source node.
type Source struct {
	Rule    int     `json:"rule"` // the rule's number now (0: a rule a reload removed)
	Label   string  `json:"label,omitempty"`
	Addr    string  `json:"addr"`
	States  int     `json:"states"`
	Conns   int     `json:"conns"`                // TCP connections that completed their handshake
	Rate    float64 `json:"rate,omitempty"`       // the moving connection count
	RatePer float64 `json:"rate_per_s,omitempty"` // over this many seconds
	Expires float64 `json:"expires_s,omitempty"`  // seconds left, for a node without states (src.track)
}

// SourceStatus is the source tracker's part of Status.
type SourceStatus struct {
	Nodes     int               `json:"nodes"`
	Limit     int               `json:"limit"`
	Inserted  uint64            `json:"inserted"`
	Expired   uint64            `json:"expired"`
	Refused   map[string]uint64 `json:"refused,omitempty"` // by limit: max, max-src-nodes, max-src-states, src-nodes-limit
	ConnLimit uint64            `json:"conn_limit"`        // handshakes past max-src-conn
	RateLimit uint64            `json:"conn_rate_limit"`   // handshakes past max-src-conn-rate
	Overloads uint64            `json:"overloads"`         // of those, on rules with an overload table
}

func (d *Daemon) sourceStatus() *SourceStatus {
	src := d.stateful.Sources()
	if src == nil {
		return nil
	}
	st := src.Stats()
	s := &SourceStatus{Nodes: st.Nodes, Limit: d.srcLimit, Inserted: st.Inserted, Expired: st.Expired,
		ConnLimit: st.ConnLimit, RateLimit: st.ConnRateLimit, Overloads: st.Overloads}
	for r, n := range st.Refused {
		if n > 0 {
			if s.Refused == nil {
				s.Refused = map[string]uint64{}
			}
			s.Refused[srctrack.Refusal(r).String()] = n
		}
	}
	return s
}

// Sources lists the source nodes, those of addr only if it is valid.
func (d *Daemon) Sources(addr netip.Addr) []Source {
	src := d.stateful.Sources()
	if src == nil {
		return nil
	}
	now := d.now()
	var out []Source
	src.Sources(now, func(si srctrack.SourceInfo) bool {
		if addr.IsValid() && si.Addr != addr {
			return true
		}
		s := Source{Addr: si.Addr.String(), States: si.States, Conns: si.Conns, Rate: si.Rate, RatePer: si.RatePer.Seconds()}
		if r := d.stateful.TaggedRule(si.Tag); r != nil {
			s.Rule, s.Label = r.Index, r.Label
		}
		if si.Expires != 0 {
			s.Expires = time.Duration(si.Expires - now).Seconds()
		}
		out = append(out, s)
		return true
	})
	sort.Slice(out, func(i, j int) bool {
		if out[i].Rule != out[j].Rule {
			return out[i].Rule < out[j].Rule
		}
		return out[i].Addr < out[j].Addr
	})
	return out
}
