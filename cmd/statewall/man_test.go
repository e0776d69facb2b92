package main

import (
	"bytes"
	"flag"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite docs/man/ from the sources")

const manDir = repoRoot + "/docs/man"

// generatedManPages are the pages as the sources make them now: the
// commands' help for statewall(8), pkg/rules' package documentation for
// statewall.rules(5).
func generatedManPages(t *testing.T) map[string]string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), repoRoot+"/pkg/rules/doc.go", nil, parser.ParseComments|parser.PackageClauseOnly)
	if err != nil {
		t.Fatal(err)
	}
	if f.Doc == nil {
		t.Fatal("pkg/rules/doc.go has no package documentation")
	}
	return map[string]string{
		"statewall.8":       manPage(commandHelps()),
		"statewall.rules.5": rulesManPage(f.Doc.Text()),
	}
}

// TestManPages: the shipped man pages are what the sources say now, so
// they cannot drift from the help text and the grammar.
func TestManPages(t *testing.T) {
	for name, want := range generatedManPages(t) {
		path := filepath.Join(manDir, name)
		if *update {
			if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != want {
			t.Errorf("docs/man/%s differs from what the help text and pkg/rules' documentation give: run\n\tgo test ./cmd/statewall -run TestManPages -update\n%s", name, firstDiff(string(got), want))
		}
	}
}

func firstDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := range max(len(g), len(w)) {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return "first difference at line " + strconv.Itoa(i+1) + ":\n\tshipped:   " + gl + "\n\tgenerated: " + wl
		}
	}
	return ""
}

// TestManPagesContent: what a reader looks for is there: every command,
// every flag of run, the rules grammar, the defaults that are constants.
func TestManPagesContent(t *testing.T) {
	pages := generatedManPages(t)
	m8 := pages["statewall.8"]
	for _, c := range commands {
		if !strings.Contains(m8, `.SS "statewall `+escape(c.name)) {
			t.Errorf("statewall.8 lacks command %s", c.name)
		}
	}
	for _, w := range []string{`\fB\-\-rules\fR \fIFILE\fR`, `\fB\-\-on\-bad\-rules\fR \fIWHAT\fR`, `\fB\-\-fail\-open\fR`,
		`\fI/run/statewall/statewall.sock\fR`} {
		if !strings.Contains(m8, w) {
			t.Errorf("statewall.8 lacks %q", w)
		}
	}
	m5 := pages["statewall.rules.5"]
	for _, w := range []string{`.SH "GRAMMAR AS IMPLEMENTED"`, `statement = setting | define`, `.SH "ERRORS"`} {
		if !strings.Contains(m5, w) {
			t.Errorf("statewall.rules.5 lacks %q", w)
		}
	}
	if strings.Contains(m5, `.SH "MATCHING"`) {
		t.Error("statewall.rules.5 has the implementation's section MATCHING")
	}
}

// TestManPagesRender: man(1) formats both pages without a warning (groff
// -ww), where man is installed (make test installs it: scripts/install-deps.sh).
func TestManPagesRender(t *testing.T) {
	if _, err := exec.LookPath("man"); err != nil {
		t.Skip("man is not installed")
	}
	dir := t.TempDir()
	for name, page := range generatedManPages(t) {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(page), 0o644); err != nil {
			t.Fatal(err)
		}
		checkManRenders(t, path)
	}
}

// checkManRenders runs man -l on a page with groff's warnings on and fails
// on any output on stderr or an empty page.
func checkManRenders(t *testing.T, path string) {
	t.Helper()
	cmd := exec.Command("man", "--warnings=w", "-l", path)
	cmd.Env = append(os.Environ(), "MANPAGER=cat", "PAGER=cat", "MANWIDTH=80", "LC_ALL=C.UTF-8")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Errorf("man -l %s: %v\n%s", path, err, errb.String())
		return
	}
	if errb.Len() > 0 {
		t.Errorf("man -l %s warns:\n%s", path, errb.String())
	}
	if out.Len() < 1000 {
		t.Errorf("man -l %s: only %d bytes out", path, out.Len())
	}
}
