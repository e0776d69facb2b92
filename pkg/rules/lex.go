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

// lex splits src into tokens. Positions are physical: a token after a `\`
// continuation is reported on the line it is written on.
func lex(file string, src []byte) ([]token, error) {
	var toks []token
	line, lineStart := 1, 0
	i := 0
	errAt := func(pos int, format string, args ...any) error {
		return &Error{File: file, Line: line, Col: pos - lineStart + 1, Msg: fmt.Sprintf(format, args...)}
	}
	emit := func(k tokKind, text string, pos int) {
		toks = append(toks, token{kind: k, text: text, line: line, col: pos - lineStart + 1})
	}
	for i < len(src) {
		c := src[i]
		switch {
		case c == ' ' || c == '\t' || c == '\r':
			i++
		case c == '\n':
			emit(tEOL, "", i)
			i++
			line, lineStart = line+1, i
		case c == '#':
			for i < len(src) && src[i] != '\n' {
				i++
			}
		case c == '\\':
			j := i + 1
			if j < len(src) && src[j] == '\r' {
				j++
			}
			if j < len(src) && src[j] != '\n' {
				return nil, errAt(i, "unexpected '\\': a '\\' continues a line only as its last character")
			}
			i = j
			if i < len(src) {
				i++ // the newline, which does not end the statement
				line, lineStart = line+1, i
			}
		case c == '{':
			emit(tLBrace, "{", i)
			i++
		case c == '}':
			emit(tRBrace, "}", i)
			i++
		case c == ',':
			emit(tComma, ",", i)
			i++
		case c == '!':
			emit(tBang, "!", i)
			i++
		case c == '=':
			emit(tEq, "=", i)
			i++
		case c == '$':
			j := i + 1
			for j < len(src) && isNameByte(src[j]) {
				j++
			}
			if j == i+1 {
				return nil, errAt(i, "expected a name after '$'")
			}
			emit(tVar, string(src[i+1:j]), i)
			i = j
		case c == '"':
			start := i
			var b strings.Builder
			i++
			for {
				if i >= len(src) || src[i] == '\n' {
					return nil, errAt(start, "unterminated string")
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
					return nil, errAt(i, "unknown escape in string: only \\\" and \\\\ are allowed")
				}
				if c < 0x20 || c == 0x7f {
					return nil, errAt(i, "control character %#02x in string", c)
				}
				r, n := utf8.DecodeRune(src[i:])
				if r == utf8.RuneError && n <= 1 {
					return nil, errAt(i, "invalid UTF-8 in string")
				}
				b.Write(src[i : i+n])
				i += n
			}
			emit(tString, b.String(), start)
		case isWordByte(c):
			j := i
			for j < len(src) && isWordByte(src[j]) {
				j++
			}
			emit(tWord, string(src[i:j]), i)
			i = j
		default:
			r, _ := utf8.DecodeRune(src[i:])
			if r == utf8.RuneError {
				return nil, errAt(i, "unexpected byte %#02x", c)
			}
			return nil, errAt(i, "unexpected character %q", r)
		}
	}
	emit(tEOL, "", i)
	emit(tEOF, "", i)
	return toks, nil
}
