package daemon

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/statewall/statewall/pkg/rules"
	"github.com/statewall/statewall/pkg/table"
)

// Tables. The daemon makes each table of the ruleset a pkg/table Table,
// which `statewall table` changes at run time through the control socket,
// without a reload and without a lock on the packet path. A reload keeps
// the run-time content of every table whose definition did not change
// (same name, flags and content as written; files are read again, so a
// changed file is a changed definition); a table whose definition changed
// starts again from it. This is pf's behaviour for tables kept across a
// reload; `persist` keeps a table that no rule uses (pf does not create
// one without it).

// tableMaker gives Parse the run-time tables: an unchanged definition gets
// the table in force, a new one a new table. made holds what this parse
// used; it becomes the daemon's set only if the parse succeeds.
type tableMaker struct {
	old  map[string]*tableEntry
	made map[string]*tableEntry
}

type tableEntry struct {
	def *rules.TableDef
	t   *table.Table
}

func (m *tableMaker) make(def *rules.TableDef) (rules.Lookup, error) {
	if e := m.old[def.Name]; e != nil && e.def.Same(def) {
		m.made[def.Name] = &tableEntry{def: def, t: e.t}
		return e.t, nil
	}
	t, err := table.New(table.Config{Name: def.Name, Const: def.Const, Persist: def.Persist}, def.Addrs)
	if err != nil {
		return nil, err
	}
	m.made[def.Name] = &tableEntry{def: def, t: t}
	return t, nil
}

// parseRules parses the rules file with the daemon's tables; on success it
// returns the tables the new ruleset uses, for the caller to adopt with
// it.
func (d *Daemon) parseRules() (*rules.Ruleset, map[string]*tableEntry, error) {
	m := &tableMaker{old: d.tables, made: map[string]*tableEntry{}}
	rs, err := rules.ParseFileWith(d.cfg.RulesFile, rules.ParseOptions{Tables: m.make})
	if err != nil {
		return nil, nil, err
	}
	return rs, m.made, nil
}

// TableRequest is `statewall table`'s part of a Request.
type TableRequest struct {
	Name  string   `json:"name,omitempty"` // empty: list the tables
	Op    string   `json:"op,omitempty"`   // show, add, delete, replace, flush, test, zero
	Addrs []string `json:"addrs,omitempty"`
}

// TableInfo is one table as `statewall table` shows it.
type TableInfo struct {
	Name        string   `json:"name"`
	Entries     int      `json:"entries"`
	Const       bool     `json:"const"`
	Persist     bool     `json:"persist"`
	Evaluations uint64   `json:"evaluations"`
	Hits        uint64   `json:"hits"`
	Changed     int      `json:"changed,omitempty"` // entries an add, delete, replace or flush changed
	Addrs       []string `json:"addrs,omitempty"`   // show: the entries; test: the matching entry of each address, "" for none
}

func infoOf(e *tableEntry) TableInfo {
	st := e.t.Stats()
	return TableInfo{Name: e.def.Name, Entries: e.t.Len(), Const: e.t.Const(), Persist: e.t.Persist(), Evaluations: st.Evaluations, Hits: st.Hits}
}

// Tables answers a table request: a listing, or one table's content,
// test or change. A change of garbage (an address that does not parse)
// is refused whole and changes nothing; so is one past the table's
// limit, and any change of a const table.
func (d *Daemon) Tables(req TableRequest) ([]TableInfo, error) {
	d.reloadMu.Lock()
	tabs := d.tables
	d.reloadMu.Unlock()
	if req.Name == "" {
		var out []TableInfo
		for _, e := range tabs {
			out = append(out, infoOf(e))
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
		return out, nil
	}
	e := tabs[strings.Trim(req.Name, "<>")]
	if e == nil {
		var names []string
		for n := range tabs {
			names = append(names, n)
		}
		sort.Strings(names)
		return nil, fmt.Errorf("no table <%s> (tables: %s)", strings.Trim(req.Name, "<>"), strings.Join(names, ", "))
	}
	info := infoOf(e)
	var ps []netip.Prefix
	switch req.Op {
	case "add", "delete", "replace", "test":
		var err error
		if req.Op == "test" {
			for _, a := range req.Addrs {
				if _, err := netip.ParseAddr(a); err != nil {
					return nil, fmt.Errorf("test: %q is not an address", a)
				}
			}
		} else if ps, err = table.ParseAddrs(req.Addrs); err != nil {
			return nil, err
		}
		if req.Op != "replace" && len(req.Addrs) == 0 {
			return nil, fmt.Errorf("%s: no addresses given", req.Op)
		}
	}
	var n int
	var err error
	switch req.Op {
	case "", "show":
		for _, p := range e.t.Prefixes() {
			info.Addrs = append(info.Addrs, prefixString(p))
		}
		return []TableInfo{info}, nil
	case "test":
		for _, a := range req.Addrs {
			p, ok := e.t.Test(netip.MustParseAddr(a))
			s := ""
			if ok {
				s = prefixString(p)
			}
			info.Addrs = append(info.Addrs, s)
		}
		return []TableInfo{info}, nil
	case "add":
		n, err = e.t.Add(ps)
	case "delete":
		n, err = e.t.Delete(ps)
	case "replace":
		n = len(ps)
		err = e.t.Replace(ps)
	case "flush":
		n, err = e.t.Flush()
	case "zero":
		e.t.ZeroStats()
	default:
		return nil, fmt.Errorf("unknown table operation %q (show, add, delete, replace, flush, test, zero)", req.Op)
	}
	if err != nil {
		return nil, err
	}
	d.log.Info("table changed", "table", e.def.Name, "op", req.Op, "entries", n)
	info = infoOf(e)
	info.Changed = n
	return []TableInfo{info}, nil
}

func prefixString(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}
