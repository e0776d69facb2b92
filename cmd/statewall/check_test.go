package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/statewall/statewall/pkg/rules"
)

// TestCheckExamples: every example ruleset checks, and what check prints
// is the normal form: it parses back to the same ruleset, printed the same.
func TestCheckExamples(t *testing.T) {
	files, err := filepath.Glob(rulesDir + "/*.rules")
	if err != nil || len(files) == 0 {
		t.Fatalf("no rulesets in %s: %v", rulesDir, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			// The one example without rules is warned about, as every
			// empty ruleset is; it means to pass everything.
			wantErrs := ""
			if filepath.Base(f) == "default-pass.rules" {
				wantErrs = f + ":1:1: warning: no rules: every packet gets the default (pass)\n"
			}
			// --no-host: each example is written for a host of its own,
			// not for the interfaces of the machine the test runs on.
			code, out, errs := statewall(t, "check", "--no-host", f)
			if code != 0 || errs != wantErrs {
				t.Fatalf("exit %d, stderr %q", code, errs)
			}
			orig, err := rules.ParseFile(f)
			if err != nil {
				t.Fatal(err)
			}
			back, err := rules.Parse("check-output", []byte(out))
			if err != nil {
				t.Fatalf("check's output does not parse: %v\n%s", err, out)
			}
			if back.String() != out || orig.String() != out {
				t.Errorf("normal form not stable:\ncheck printed:\n%s\nparsed back:\n%s", out, back.String())
			}
			if len(back.Rules) != len(orig.Rules) {
				t.Errorf("%d rules, %d after the round trip", len(orig.Rules), len(back.Rules))
			}
			// -q: nothing on success.
			if code, out, errs := statewall(t, "check", "-q", "--no-host", f); code != 0 || out != "" || errs != wantErrs {
				t.Errorf("check -q: exit %d, stdout %q, stderr %q", code, out, errs)
			}
		})
	}
}

// TestCheckErrors: a broken ruleset exits 1 with exactly one line on
// stderr, file:line:col: message, pointing at the offending word. The
// position is where the word first appears in the file outside comments.
func TestCheckErrors(t *testing.T) {
	t.Chdir(repoRoot) // so the file is named as a user at the root names it
	for _, tc := range []struct {
		file, at, msg string
	}{
		{"testdata/bad/unknown-keyword.rules", "quick", `unknown word "quick": the first matching rule always wins, so 'quick' is not needed`},
		{"testdata/bad/bad-port.rules", "65536", "port 65536 out of range 0-65535"},
		{"testdata/bad/undefined-name.rules", "$webs", "undefined $webs"},
		{"testdata/bad/bad-prefix.rules", "198.18.0.0/33", `bad prefix length "33" in "198.18.0.0/33": IPv4 allows 0-32`},
	} {
		t.Run(filepath.Base(tc.file), func(t *testing.T) {
			line, col := position(t, tc.file, tc.at)
			want := tc.file + ":" + strconv.Itoa(line) + ":" + strconv.Itoa(col) + ": " + tc.msg + "\n"
			code, out, errs := statewall(t, "check", tc.file)
			if code != 1 || errs != want || out != "" {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit 1, stderr %q", code, out, errs, want)
			}
			// replay reports the same error the same way, before any
			// packet.
			code, out, errs = statewall(t, "replay", "--rules", tc.file, "testdata/ping-v4.pcap")
			if code != 1 || errs != want || out != "" {
				t.Errorf("replay: exit %d, stdout %q, stderr %q; want exit 1, stderr %q", code, out, errs, want)
			}
		})
	}
	code, _, errs := statewall(t, "check", "testdata/bad/no-such.rules")
	if code != 1 || !strings.Contains(errs, "testdata/bad/no-such.rules") {
		t.Errorf("missing file: exit %d, stderr %q; want 1 and the file named", code, errs)
	}
}

// position is the 1-based line and byte column of the first occurrence of
// word in file, outside comment lines.
func position(t *testing.T, file, word string) (int, int) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "#") {
			continue
		}
		if c := strings.Index(l, word); c >= 0 {
			return i + 1, c + 1
		}
	}
	t.Fatalf("%s: %q not found", file, word)
	return 0, 0
}

// TestCheckLimits: check is safe on untrusted input (issue #19). Defines
// that each double the one before, 1 KB of them, ran out of memory before
// rules.MaxRuleEntries; 2 MB of '!' overflowed the stack, which killed the
// process. Both now exit 1 with one line, file:line:col: message, and
// quickly (0.3 s here; bounded at 20 s, as the machine may be busy).
func TestCheckLimits(t *testing.T) {
	dir := t.TempDir()
	var bomb strings.Builder
	bomb.WriteString("define d0 = { 198.18.0.1, 198.18.0.2 }\n")
	for k := 1; k < 40; k++ {
		fmt.Fprintf(&bomb, "define d%d = { $d%d, $d%d }\n", k, k-1, k-1)
	}
	bomb.WriteString("pass from $d39\n")
	for _, tc := range []struct{ name, src, want string }{
		{"bomb.rules", bomb.String(), `:19:22: too many addresses and ports: "$d17" brings 'define d18' to 524288, more than the 262144 a rule, define or 'set local' may hold`},
		{"deep.rules", "pass from " + strings.Repeat("!", 2<<20) + "198.18.0.1\n", ":1:75: '{' and '!' nest more than 64 deep"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name)
			if err := os.WriteFile(path, []byte(tc.src), 0o644); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			code, out, errs := statewall(t, "check", path)
			if took := time.Since(start); took > 20*time.Second {
				t.Errorf("check took %v", took)
			}
			if want := path + tc.want + "\n"; code != 1 || errs != want || out != "" {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit 1, stderr %q", code, out, errs, want)
			}
		})
	}
}

// TestCheckWarnings: rules that can never match where they would run are
// warned about with their position; --strict makes that an error.
func TestCheckWarnings(t *testing.T) {
	f := filepath.Join(t.TempDir(), "router.rules")
	src := "antispoof for nosuch0\nblock in on nosuch1 from 198.18.2.0/24\npass out proto tcp\n"
	if err := os.WriteFile(f, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errs := statewall(t, "check", "-q", f)
	for _, want := range []string{
		f + ":1:1: warning: antispoof for nosuch0: there is no interface nosuch0 (yet); it blocks nothing until there is\n",
		f + ":2:1: warning: rule 3: there is no interface nosuch1 (yet); 'on nosuch1' matches nothing until there is\n",
	} {
		if code != 0 || !strings.Contains(errs, want) {
			t.Errorf("check: exit %d, stderr %q; want exit 0 and %q", code, errs, want)
		}
	}
	code, _, errs = statewall(t, "check", "-q", "--hooks", "output", "--no-host", f)
	if want := f + ":2:1: warning: rule 3 matches only inbound packets ('in'), and the output hook decides none: it never matches\n"; code != 0 || !strings.Contains(errs, want) || strings.Contains(errs, "nosuch1 (yet)") {
		t.Errorf("check --hooks output --no-host: exit %d, stderr %q; want %q and nothing about missing interfaces", code, errs, want)
	}
	if code, _, errs = statewall(t, "check", "-q", "--strict", f); code != 1 || !strings.Contains(errs, "--strict makes them errors") {
		t.Errorf("check --strict: exit %d, stderr %q; want exit 1", code, errs)
	}
	code, out, _ := statewall(t, "check", "--expand", "--no-host", f)
	want := "@1 # block in on { !nosuch0, !lo } from <nosuch0 networks: interfaces not known here; matches nothing>  # antispoof for nosuch0\n" +
		"@2 # block in on !lo from <nosuch0 addresses: interfaces not known here; matches nothing>  # antispoof for nosuch0\n" +
		"@3 block in on nosuch1 from 198.18.2.0/24\n@4 pass out proto tcp\n"
	if code != 0 || out != want {
		t.Errorf("check --expand: exit %d\n got %q\nwant %q", code, out, want)
	}
}
