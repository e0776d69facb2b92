package main

import (
	"encoding/json"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/statewall/statewall/pkg/daemon"
	"github.com/statewall/statewall/pkg/engine"
)

// fakeDaemon answers every request on a control socket with resp, and
// records the commands it was sent.
func fakeDaemon(t *testing.T, resp daemon.Response) (socket string, cmds chan string) {
	t.Helper()
	socket = filepath.Join(t.TempDir(), "statewall.sock")
	ln, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	cmds = make(chan string, 10)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			var req daemon.Request
			if json.NewDecoder(c).Decode(&req) == nil {
				cmds <- req.Cmd
				json.NewEncoder(c).Encode(resp)
			}
			c.Close()
		}
	}()
	return socket, cmds
}

var fakeRules = &daemon.RuleCounters{Rules: []daemon.RuleStat{
	{Number: 1, Line: 3, Rule: `block in on ! eth0 inet from 198.18.1.0/24 label "spoofed"  # antispoof for eth0 inet label "spoofed"`, Label: "spoofed",
		RuleCount: engine.RuleCount{Evaluations: 1200, Packets: 2, Bytes: 168}},
	{Number: 2, Line: 4, Rule: `pass proto icmp no state label "ping"`, Label: "ping",
		RuleCount: engine.RuleCount{Evaluations: 1198, Packets: 10, Bytes: 840}},
	{Number: 3, Line: 5, Rule: `pass proto tcp to any port 80`,
		RuleCount: engine.RuleCount{Evaluations: 1188, Packets: 1188, Bytes: 71280, States: 1188}},
}}

// TestRules: `statewall rules` asks the daemon for "rules" and prints
// each rule as pfctl -vsr does; --json prints the daemon's answer.
func TestRules(t *testing.T) {
	socket, cmds := fakeDaemon(t, daemon.Response{RuleCounters: fakeRules})
	code, out, errs := statewall(t, "rules", "--socket", socket)
	if code != 0 || errs != "" {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	if c := <-cmds; c != "rules" {
		t.Errorf("sent %q, want rules", c)
	}
	want := `@1 block in on ! eth0 inet from 198.18.1.0/24 label "spoofed"  # antispoof for eth0 inet label "spoofed"
  [ Evaluations: 1200       Packets: 2          Bytes: 168          States: 0      ]
@2 pass proto icmp no state label "ping"
  [ Evaluations: 1198       Packets: 10         Bytes: 840          States: 0      ]
@3 pass proto tcp to any port 80
  [ Evaluations: 1188       Packets: 1188       Bytes: 71280        States: 1188   ]
`
	if out != want {
		t.Errorf("got:\n%s\nwant:\n%s", out, want)
	}

	code, out, errs = statewall(t, "rules", "--socket", socket, "--json")
	if code != 0 || errs != "" {
		t.Fatalf("--json: exit %d, stderr %q", code, errs)
	}
	var got daemon.RuleCounters
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("--json: %v: %q", err, out)
	}
	if len(got.Rules) != 3 || got.Rules[2] != fakeRules.Rules[2] || got.Rules[0].Label != "spoofed" {
		t.Errorf("--json: %+v", got)
	}
	for _, k := range []string{`"number":3`, `"evaluations":1188`, `"packets":1188`, `"bytes":71280`, `"states":1188`, `"label":"ping"`, `"line":4`} {
		if !strings.Contains(out, k) {
			t.Errorf("--json lacks %s: %s", k, out)
		}
	}
}

// TestRulesLost: packets a reload race left uncounted are reported on
// stderr, not mixed into the rules.
func TestRulesLost(t *testing.T) {
	socket, _ := fakeDaemon(t, daemon.Response{RuleCounters: &daemon.RuleCounters{Rules: []daemon.RuleStat{}, Lost: 2}})
	code, out, errs := statewall(t, "rules", "--socket", socket)
	if code != 0 || out != "" || !strings.Contains(errs, "2 packets counted for no rule") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errs)
	}
}

// TestRulesUsage: no arguments, and no daemon means an error that says
// where it looked.
func TestRulesUsage(t *testing.T) {
	if code, _, errs := statewall(t, "rules", "extra"); code != 2 || !strings.Contains(errs, `unexpected argument "extra"`) {
		t.Errorf("rules extra: exit %d, stderr %q", code, errs)
	}
	sock := filepath.Join(t.TempDir(), "none.sock")
	if code, _, errs := statewall(t, "rules", "--socket", sock); code != 1 || !strings.Contains(errs, sock) {
		t.Errorf("no daemon: exit %d, stderr %q", code, errs)
	}
}
