package main

import (
	"bytes"
	"fmt"
	"go/doc/comment"
	"strings"

	"github.com/statewall/statewall/pkg/daemon"
)

// The man pages, statewall(8) and statewall.rules(5), are made from the
// text the program and the packages already hold: statewall(8) from the
// usage and every command's help and flags (commandHelps), the rules page
// from pkg/rules' package documentation, the grammar. docs/man/ keeps them
// as 'make install' installs them; TestManPages fails when they differ
// from what this file makes of the sources now, and rewrites them with
// -update:
//
//	go test ./cmd/statewall -run TestManPages -update

// manPage is statewall(8).
func manPage(hs []cmdHelp) string {
	var b roff
	b.line(`.TH STATEWALL 8 "" "statewall" "System Administration"`)
	b.noHyphens()
	b.section("NAME")
	b.text("statewall - a stateful packet filter in userspace")
	b.section("SYNOPSIS")
	b.line(`.B statewall`)
	b.line(`.I COMMAND`)
	b.text("[ARGS]")
	b.line(`.br`)
	b.line(`.B statewall`)
	b.text("--version | --help")
	b.section("DESCRIPTION")
	var u bytes.Buffer
	usage(&u)
	intro, _, _ := strings.Cut(u.String(), "\nUsage:")
	_, intro, _ = strings.Cut(intro, "\n") // the first line is NAME's
	b.doc(intro)
	b.section("COMMANDS")
	for _, h := range hs {
		b.line(".SS " + quoteArg(strings.TrimSpace("statewall "+h.name+" "+h.args)))
		b.doc(h.doc)
		if len(h.flags) == 0 {
			continue
		}
		b.line(".PP")
		b.text("Flags (-name works as --name does):")
		for _, f := range h.flags {
			b.line(".TP")
			head := `\fB` + escape("--"+f.name) + `\fR`
			if f.arg != "" {
				head += ` \fI` + escape(f.arg) + `\fR`
			}
			b.line(head)
			u := f.usage
			if f.def != "" {
				u += " (default: " + f.def + ")"
			}
			b.text(u)
		}
	}
	b.section("FILES")
	for _, f := range [][2]string{
		{"/etc/statewall/statewall.rules", "the ruleset the systemd unit enforces (see statewall.rules(5)); 'make install' puts an example there"},
		{daemon.DefaultControlSocket, "the control socket of status, conntrack, reload, table and log (--socket)"},
		{daemon.DefaultLogFile, "packets decided by 'log' rules, as a PFLOG capture (--log-file)"},
		{"/var/lib/statewall/", "the unit's StateDirectory=, where the connection table is kept across restarts"},
	} {
		b.line(".TP")
		b.line(`\fI` + escape(f[0]) + `\fR`)
		b.text(f[1])
	}
	b.section("SEE ALSO")
	b.line(`.BR statewall.rules (5),`)
	b.line(`.BR iptables (8),`)
	b.line(`.BR systemd.service (5),`)
	b.line(`.BR tcpdump (8)`)
	return b.String()
}

// rulesDropSections are the rules package's sections about its Go
// implementation, not about the files a user writes.
var rulesDropSections = map[string]bool{"Matching": true}

// rulesManPage is statewall.rules(5), from pkg/rules' package
// documentation (its doc comment's text, as go/doc gives it): its
// sections from the first heading on.
func rulesManPage(pkgDoc string) string {
	var b roff
	b.line(`.TH STATEWALL.RULES 5 "" "statewall" "File Formats"`)
	b.noHyphens()
	b.section("NAME")
	b.text("statewall.rules - the rules files of statewall")
	b.section("DESCRIPTION")
	b.text("A statewall rules file, such as /etc/statewall/statewall.rules, says which packets statewall passes and which it blocks; 'statewall check FILE' validates one and prints it back normalised. This page is the rules package's documentation, the grammar as implemented.")
	var p comment.Parser
	d := p.Parse(pkgDoc)
	started, drop := false, false
	for _, blk := range d.Content {
		if h, ok := blk.(*comment.Heading); ok {
			started = true
			title := plain(h.Text)
			drop = rulesDropSections[title]
			if !drop {
				b.section(strings.ToUpper(title))
			}
			continue
		}
		if started && !drop {
			b.block(blk)
		}
	}
	b.section("SEE ALSO")
	b.line(`.BR statewall (8),`)
	b.line(`.BR pf.conf (5)`)
	return b.String()
}

// roff writes man(7) source.
type roff struct{ bytes.Buffer }

func (b *roff) line(s string) { b.WriteString(s); b.WriteByte('\n') }

// noHyphens: no hyphenation, ragged right; names, options and addresses
// stay whole.
func (b *roff) noHyphens() { b.line(".nh"); b.line(".ad l") }

func (b *roff) section(s string) { b.line(".SH " + quoteArg(s)) }

// text writes running text, escaped, filled by the formatter.
func (b *roff) text(s string) {
	s = strings.Join(strings.Fields(s), " ")
	if s == "" {
		return
	}
	// One sentence or so a line keeps the source readable; where the
	// formatter breaks lines is its own business.
	for len(s) > 0 {
		n := len(s)
		if n > 78 {
			if i := strings.LastIndexByte(s[:78], ' '); i > 0 {
				n = i
			} else if i := strings.IndexByte(s, ' '); i > 0 {
				n = i
			}
		}
		b.line(escapeLine(s[:n]))
		s = strings.TrimPrefix(s[n:], " ")
	}
}

// doc writes help text: go doc comment syntax (paragraphs, indented
// blocks, lists), which the commands' help already is.
func (b *roff) doc(s string) {
	var p comment.Parser
	for _, blk := range p.Parse(s).Content {
		b.block(blk)
	}
}

func (b *roff) block(blk comment.Block) {
	switch x := blk.(type) {
	case *comment.Paragraph:
		b.line(".PP")
		b.text(plain(x.Text))
	case *comment.Heading:
		b.line(".SS " + quoteArg(plain(x.Text)))
	case *comment.Code:
		b.line(".PP")
		b.line(".RS 4")
		b.line(".nf")
		for _, l := range strings.Split(strings.TrimSuffix(x.Text, "\n"), "\n") {
			b.line(escapeLine(l))
		}
		b.line(".fi")
		b.line(".RE")
	case *comment.List:
		for _, it := range x.Items {
			mark := `\(bu`
			if it.Number != "" {
				mark = it.Number + "."
			}
			b.line(fmt.Sprintf(".IP %s 4", mark))
			for j, c := range it.Content {
				if j > 0 {
					b.line(".IP \"\" 4")
				}
				if p, ok := c.(*comment.Paragraph); ok {
					b.text(plain(p.Text))
				}
			}
		}
		b.line(".PP")
	}
}

// plain is the text of inline comment text, links as their text.
func plain(ts []comment.Text) string {
	var s strings.Builder
	for _, t := range ts {
		switch x := t.(type) {
		case comment.Plain:
			s.WriteString(string(x))
		case comment.Italic:
			s.WriteString(string(x))
		case *comment.Link:
			s.WriteString(plain(x.Text))
		case *comment.DocLink:
			s.WriteString(plain(x.Text))
		}
	}
	return s.String()
}

// escape makes s safe inside a line of man(7) text: backslashes, and the
// characters groff would set as typographic ones (- as a hyphen, ` and '
// as quotes), so that options and code copy back as typed.
func escape(s string) string {
	return strings.NewReplacer(`\`, `\e`, "-", `\-`, "`", `\(ga`, "'", `\(aq`).Replace(s)
}

// escapeLine is escape for a whole line, which must not start a request.
func escapeLine(s string) string {
	s = escape(s)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, `\(aq`) {
		s = `\&` + s
	}
	return s
}

// quoteArg is a macro argument: escaped and in double quotes.
func quoteArg(s string) string {
	return `"` + strings.ReplaceAll(escape(s), `"`, `\(dq`) + `"`
}
