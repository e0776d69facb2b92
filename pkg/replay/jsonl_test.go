package replay_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"

	"github.com/statewall/statewall/pkg/replay"
)

// The JSONL output is a contract other tools read: these are the promises
// the JSONLWriter documents, checked on every capture we have.

var (
	// RFC 3339 in UTC with exactly six fractional digits.
	jsonlTsRE       = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$`)
	jsonlRequired   = []string{"file", "index", "ts", "proto", "len", "stateless", "stateless_reason", "stateful", "stateful_reason", "ct"}
	jsonlOptional   = map[string]bool{"src": true, "dst": true, "flags": true, "icmp_type": true, "icmp_code": true, "frag": true, "kind": true, "dir": true, "in": true, "out": true, "differs": true}
	jsonlVerdicts   = map[string]bool{"pass": true, "block": true}
	jsonlCtLabels   = map[string]bool{"new": true, "established": true, "related": true, "invalid": true, "untracked": true}
	jsonlBadKinds   = map[string]bool{"truncated": true, "malformed": true, "not-ip": true, "unsupported-link": true}
	jsonlDirections = map[string]bool{"in": true, "out": true}
)

func TestJSONLContract(t *testing.T) {
	files := corpus(t)
	rs := loadRules(t, "webserver.rules")
	rp, err := replay.New(replay.Config{Rules: rs, Mode: replay.Compare})
	if err != nil {
		t.Fatal(err)
	}
	// One Replayer for all files, as `statewall replay` does: indexes must
	// still restart at 0 for every file.
	var out bytes.Buffer
	jw := replay.NewJSONLWriter(&out)
	for _, f := range files {
		if err := rp.ReplayFile(f, jw.Write); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
	}
	if err := jw.Flush(); err != nil {
		t.Fatal(err)
	}

	sc := bufio.NewScanner(&out)
	sc.Buffer(nil, 1<<20)
	fi := 0 // the file the lines are in
	var pkts []rawPacket
	var link layers.LinkType
	next := 0 // the index the next line of this file must have
	lineNo := 0
	startFile := func() {
		p, l := readPcap(t, files[fi])
		pkts, link, next = p, l, 0
	}
	endFile := func() {
		if next != len(pkts) {
			t.Errorf("%s: %d lines, but the file has %d packets", files[fi], next, len(pkts))
		}
	}
	startFile()
	for sc.Scan() {
		lineNo++
		line := sc.Bytes()
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.UseNumber()
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			t.Fatalf("line %d is not JSON: %v\n%s", lineNo, err, line)
		}
		if dec.More() {
			t.Fatalf("line %d holds more than one JSON value: %s", lineNo, line)
		}
		file, _ := m["file"].(string)
		for file != files[fi] && next == len(pkts) && fi+1 < len(files) {
			endFile()
			fi++
			startFile()
		}
		if file != files[fi] {
			t.Fatalf("line %d: file %q, want %q (packet %d of %d)", lineNo, file, files[fi], next, len(pkts))
		}
		where := file + "#" + strconv.Itoa(next)
		checkLine(t, where, m, next, pkts, link, rs.IsLocal)
		next++
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	endFile()
	if fi != len(files)-1 {
		t.Errorf("output ends in %s; files after it produced no lines", files[fi])
	}
}

func checkLine(t *testing.T, where string, m map[string]any, index int, pkts []rawPacket, link layers.LinkType, isLocal func(netip.Addr) bool) {
	t.Helper()
	for _, k := range jsonlRequired {
		if _, ok := m[k]; !ok {
			t.Errorf("%s: key %q missing: %v", where, k, m)
		}
	}
	for k := range m {
		if !jsonlOptional[k] && !slices.Contains(jsonlRequired, k) {
			t.Errorf("%s: undocumented key %q", where, k)
		}
	}
	if index >= len(pkts) {
		t.Fatalf("%s: more lines than packets (%d)", where, len(pkts))
	}
	pk := pkts[index]

	if n, ok := m["index"].(json.Number); !ok || n.String() != strconv.Itoa(index) {
		t.Errorf("%s: index %v, want %d", where, m["index"], index)
	}
	ts, _ := m["ts"].(string)
	if !jsonlTsRE.MatchString(ts) {
		t.Errorf("%s: ts %q is not RFC 3339 UTC with microseconds", where, ts)
	} else if got, err := time.Parse(time.RFC3339Nano, ts); err != nil {
		t.Errorf("%s: ts %q: %v", where, ts, err)
	} else if want := usec(pk.ci.Timestamp).UTC(); !got.Equal(want) {
		t.Errorf("%s: ts %s, the capture says %s", where, got.Format(time.RFC3339Nano), want.Format(time.RFC3339Nano))
	}
	if n, ok := m["len"].(json.Number); !ok || n.String() != strconv.Itoa(pk.ci.Length) {
		t.Errorf("%s: len %v, the capture says %d", where, m["len"], pk.ci.Length)
	}

	for _, k := range []string{"stateless", "stateful"} {
		if v, _ := m[k].(string); !jsonlVerdicts[v] {
			t.Errorf("%s: %s %q is not pass or block", where, k, m[k])
		}
		if v, _ := m[k+"_reason"].(string); v == "" {
			t.Errorf("%s: %s_reason empty", where, k)
		}
	}
	if v, _ := m["ct"].(string); !jsonlCtLabels[v] {
		t.Errorf("%s: ct %q is not a conntrack label", where, m["ct"])
	}
	differ := m["stateless"] != m["stateful"]
	if d, ok := m["differs"]; ok != differ || ok && d != true {
		t.Errorf("%s: differs=%v, but stateless %v and stateful %v", where, d, m["stateless"], m["stateful"])
	}

	proto, _ := m["proto"].(string)
	if proto == "" {
		t.Errorf("%s: proto empty", where)
	}
	ref := decodeRef(pk.data, link)
	if proto == "invalid" {
		if k, _ := m["kind"].(string); !jsonlBadKinds[k] {
			t.Errorf("%s: proto invalid with kind %q", where, m["kind"])
		}
		if _, ok := m["src"]; ok {
			t.Errorf("%s: undecoded packet has src", where)
		}
		return
	}
	if _, ok := m["kind"]; ok {
		t.Errorf("%s: decoded packet (proto %s) has kind %v", where, proto, m["kind"])
	}
	src, sok := m["src"].(string)
	dst, dok := m["dst"].(string)
	if !sok || !dok {
		t.Errorf("%s: IP packet without src/dst: %v", where, m)
		return
	}
	srcIP, err1 := endpointAddr(src)
	dstIP, err2 := endpointAddr(dst)
	if err1 != nil || err2 != nil {
		t.Errorf("%s: src %q / dst %q: %v %v", where, src, dst, err1, err2)
		return
	}
	// The outermost IP header, as gopacket reads it.
	if want := ref.src(); want != "" && srcIP.String() != want {
		t.Errorf("%s: src %s, gopacket reads %s", where, srcIP, want)
	}
	if want := ref.dst(); want != "" && dstIP.String() != want {
		t.Errorf("%s: dst %s, gopacket reads %s", where, dstIP, want)
	}
	if proto == "tcp" && m["frag"] == nil {
		if _, ok := m["flags"].(string); !ok {
			t.Errorf("%s: tcp without flags", where)
		}
	}
	if f, ok := m["frag"]; ok && f != true {
		t.Errorf("%s: frag %v", where, f)
	}
	// webserver.rules says `set local 198.18.0.2`: direction is known
	// exactly for packets from or to it.
	wantDir := ""
	switch {
	case isLocal(srcIP):
		wantDir = "out"
	case isLocal(dstIP):
		wantDir = "in"
	}
	if d, _ := m["dir"].(string); d != wantDir || d != "" && !jsonlDirections[d] {
		t.Errorf("%s: dir %q, want %q", where, d, wantDir)
	}
}

func endpointAddr(s string) (netip.Addr, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr(), nil
	}
	return netip.ParseAddr(s)
}
