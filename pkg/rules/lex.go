package rules

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

type tokKind uint8

const (
	tEOF    tokKind = iota
	tEOL            // end of a statement: a newline not preceded by '\'
	tWord           // keywords, numbers, addresses, prefixes, ranges, flags, durations
	tVar            // $name; text is the name without '$'
	tString         // "..."; text is the unescaped value
	tLBrace
	tRBrace
	tComma
	tBang
	tEq
	tLParen
	tRParen
	tTable // <name>; text is the name without the brackets
	tErr   // where the lexer failed; the parser stops there
)

type token struct {
	kind      tokKind
	text      string
	line, col int
}

// describe renders the token for "got ..." in error messages.
func (t token) describe() string {
	switch t.kind {
	case tEOF, tEOL:
		return "end of line"
	case tWord:
		return fmt.Sprintf("%q", t.text)
	case tVar:
		return fmt.Sprintf("%q", "$"+t.text)
	case tString:
		return fmt.Sprintf("string %q", t.text)
	case tLBrace:
		return "'{'"
	case tRBrace:
		return "'}'"
	case tComma:
		return "','"
	case tBang:
		return "'!'"
	case tEq:
		return "'='"
	case tLParen:
		return "'('"
	case tRParen:
		return "')'"
	case tTable:
		return fmt.Sprintf("%q", "<"+t.text+">")
	case tErr:
		return "an unreadable token"
	}
	return "token?"
}

func isWordByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '.' || c == '_' || c == '-' || c == ':' || c == '/' || c == '%'
}

func isNameByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_'
}

// lexer splits src into tokens on demand, so the parser holds one token,
// not the whole file's: lexing 4 MiB of "pass" lines into a slice
// allocated 320 MB. Positions are physical: a token after a `\`
// continuation is reported on the line it is written on.
type lexer struct {
	file            string
	src             []byte
	i               int
	line, lineStart int
	end             int // tokens returned after the last byte: 1 is the final tEOL, then tEOF
}

func newLexer(file string, src []byte) *lexer {
	return &lexer{file: file, src: src, line: 1}
}

func (lx *lexer) errAt(pos int, format string, args ...any) error {
	return &Error{File: lx.file, Line: lx.line, Col: pos - lx.lineStart + 1, Msg: fmt.Sprintf(format, args...)}
}

func (lx *lexer) tok(k tokKind, text string, pos int) token {
	return token{kind: k, text: text, line: lx.line, col: pos - lx.lineStart + 1}
}

// next returns the next token. At the end of src it returns a tEOL (the
// last line need not end in a newline) and then tEOF, again and again.
func (lx *lexer) next() (token, error) {
	src := lx.src
	for lx.i < len(src) {
		i := lx.i
		c := src[i]
		switch {
		case c == ' ' || c == '\t' || c == '\r':
			lx.i++
		case c == '\n':
			t := lx.tok(tEOL, "", i)
			lx.i++
			lx.line, lx.lineStart = lx.line+1, lx.i
			return t, nil
		case c == '#':
			for lx.i < len(src) && src[lx.i] != '\n' {
				lx.i++
			}
		case c == '\\':
			j := i + 1
			if j < len(src) && src[j] == '\r' {
				j++
			}
			if j < len(src) && src[j] != '\n' {
				return token{}, lx.errAt(i, "unexpected '\\': a '\\' continues a line only as its last character")
			}
			lx.i = j
			if lx.i < len(src) {
				lx.i++ // the newline, which does not end the statement
				lx.line, lx.lineStart = lx.line+1, lx.i
			}
		case c == '{':
			lx.i++
			return lx.tok(tLBrace, "{", i), nil
		case c == '}':
			lx.i++
			return lx.tok(tRBrace, "}", i), nil
		case c == ',':
			lx.i++
			return lx.tok(tComma, ",", i), nil
		case c == '!':
			lx.i++
			return lx.tok(tBang, "!", i), nil
		case c == '=':
			lx.i++
			return lx.tok(tEq, "=", i), nil
		case c == '<':
			j := i + 1
			for j < len(src) && (isNameByte(src[j]) || src[j] == '-') {
				j++
			}
			if j == i+1 || j >= len(src) || src[j] != '>' || j-i-1 > 31 {
				return token{}, lx.errAt(i, "expected a table name (up to 31 letters, digits, '_' and '-') and '>' after '<'")
			}
			lx.i = j + 1
			return lx.tok(tTable, string(src[i+1:j]), i), nil
		case c == '(':
			lx.i++
			return lx.tok(tLParen, "(", i), nil
		case c == ')':
			lx.i++
			return lx.tok(tRParen, ")", i), nil
		case c == '$':
			j := i + 1
			for j < len(src) && isNameByte(src[j]) {
				j++
			}
			if j == i+1 {
				return token{}, lx.errAt(i, "expected a name after '$'")
			}
			lx.i = j
			return lx.tok(tVar, string(src[i+1:j]), i), nil
		case c == '"':
			return lx.str()
		case isWordByte(c):
			j := i
			for j < len(src) && isWordByte(src[j]) {
				j++
			}
			lx.i = j
			return lx.tok(tWord, string(src[i:j]), i), nil
		default:
			r, _ := utf8.DecodeRune(src[i:])
			if r == utf8.RuneError {
				return token{}, lx.errAt(i, "unexpected byte %#02x", c)
			}
			return token{}, lx.errAt(i, "unexpected character %q", r)
		}
	}
	if lx.end == 0 {
		lx.end++
		return lx.tok(tEOL, "", lx.i), nil
	}
	return lx.tok(tEOF, "", lx.i), nil
}

// str reads a "..." string starting at lx.i.
func (lx *lexer) str() (token, error) {
	src := lx.src
	start := lx.i
	var b strings.Builder
	i := start + 1
	for {
		if i >= len(src) || src[i] == '\n' {
			return token{}, lx.errAt(start, "unterminated string")
		}
		c := src[i]
		if c == '"' {
			i++
			break
		}
		if c == '\\' {
			if i+1 < len(src) && (src[i+1] == '"' || src[i+1] == '\\') {
				b.WriteByte(src[i+1])
				i += 2
				continue
			}
			return token{}, lx.errAt(i, "unknown escape in string: only \\\" and \\\\ are allowed")
		}
		if c < 0x20 || c == 0x7f {
			return token{}, lx.errAt(i, "control character %#02x in string", c)
		}
		r, n := utf8.DecodeRune(src[i:])
		if r == utf8.RuneError && n <= 1 {
			return token{}, lx.errAt(i, "invalid UTF-8 in string")
		}
		b.Write(src[i : i+n])
		i += n
	}
	lx.i = i
	return lx.tok(tString, b.String(), start), nil
}
