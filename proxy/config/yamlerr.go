package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// yaml.v3's messages for the indentation mistakes people make most, which
// yamlError puts in plain words.
const (
	yamlTabToken     = "found character that cannot start any token" // also for @ and ` starting a value
	yamlTabIndent    = "found a tab character that violates indentation"
	yamlTabBlock     = "found a tab character where an indentation space is expected"
	yamlNoKey        = "did not find expected key"
	yamlNoDash       = "did not find expected '-' indicator"
	yamlMappingValue = "mapping values are not allowed in this context"
)

// yamlError reports a YAML syntax error. yaml.v3 places a parser error at a
// line of the enclosing block, counted from 0 (so at none when that is line
// 1), not at the line at fault; for the mistakes above the line is found
// again (the first at which the file fails the same way) and the message
// says in plain words what is wrong with it.
func (p *configParser) yamlError(data []byte, err error) {
	msg, line := strings.TrimPrefix(err.Error(), "yaml: "), 0
	if m := yamlErrorLine.FindStringSubmatch(err.Error()); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	switch msg {
	case yamlTabToken, yamlTabIndent, yamlTabBlock, yamlNoKey, yamlNoDash, yamlMappingValue:
		if l := firstFailingLine(data, msg); l > 0 {
			if plain := explainYAMLError(yamlLines(data), l, msg); plain != "" {
				p.errorf(l, "", "%s", plain)
				return
			}
			line = l
		}
	}
	p.errorf(line, "", "invalid YAML: %s", msg)
}

// maxSearchedYAML bounds the files firstFailingLine searches: each step
// parses the file again, and a config is a few kilobytes.
const maxSearchedYAML = 1 << 20

// firstFailingLine returns the first line n such that the file's first n
// lines fail to parse with the problem msg, or 0. A YAML parser stops at the
// first problem, so lines after it do not change it and a binary search
// finds it.
func firstFailingLine(data []byte, msg string) int {
	if len(data) > maxSearchedYAML {
		return 0
	}
	var ends []int // ends[i]: the length of the first i+1 lines
	for i, b := range data {
		if b == '\n' {
			ends = append(ends, i+1)
		}
	}
	if len(ends) == 0 || ends[len(ends)-1] != len(data) {
		ends = append(ends, len(data))
	}
	if yamlProblem(data) != msg {
		return 0
	}
	lo, hi := 0, len(ends)-1 // the answer is in ends[lo..hi]
	for lo < hi {
		mid := (lo + hi) / 2
		if yamlProblem(data[:ends[mid]]) == msg {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo + 1
}

// yamlProblem parses every document in data as document does and returns
// the first problem without its "yaml: line N: ", or "".
func yamlProblem(data []byte) (problem string) {
	defer func() {
		if r := recover(); r != nil {
			problem = fmt.Sprint(r)
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return ""
		}
		if err != nil {
			if m := yamlErrorLine.FindStringSubmatch(err.Error()); m != nil {
				return m[2]
			}
			return strings.TrimPrefix(err.Error(), "yaml: ")
		}
	}
}

// reservedStart finds a value starting with @ or `, which YAML reserves: at
// the start of the line or after "key: ", "- ", "[", "{" or ",".
var reservedStart = regexp.MustCompile("(?:^|: |- |[\\[{,] *)([@`])")

// yamlLine is one line of the file, for explaining indentation.
type yamlLine struct {
	indent  int    // leading spaces
	tab     bool   // a tab among the leading white space
	content string // the rest, without a trailing \r
}

func yamlLines(data []byte) []yamlLine {
	var out []yamlLine
	for _, s := range strings.Split(string(data), "\n") {
		s = strings.TrimSuffix(s, "\r")
		rest := strings.TrimLeft(s, " \t")
		lead := s[:len(s)-len(rest)]
		out = append(out, yamlLine{indent: strings.IndexByte(lead+"\t", '\t'), tab: strings.Contains(lead, "\t"), content: rest})
	}
	return out
}

// significant reports whether a line holds YAML content, not only a comment.
func (l yamlLine) significant() bool { return l.content != "" && l.content[0] != '#' }

// yamlKeyPattern is a mapping key as written in a config, followed by ":".
var yamlKeyPattern = regexp.MustCompile(`^("[^"]{1,64}"|'[^']{1,64}'|[A-Za-z0-9_.${}<-]{1,64}):(\s|$)`)

// item splits a line's content into its list dashes and what follows them:
// "- - a: b" at indent 2 is content "a: b" at column 6, inside lists at
// columns 2 and 4.
func (l yamlLine) item() (lists []int, col int, rest string) {
	col, rest = l.indent, l.content
	for rest == "-" || strings.HasPrefix(rest, "- ") {
		lists = append(lists, col)
		after := strings.TrimLeft(rest[1:], " ")
		col += len(rest) - len(after)
		rest = after
	}
	return lists, col, rest
}

// key returns the mapping key a line's content starts with, and the value
// after it on the same line.
func (l yamlLine) key() (key, value string, ok bool) {
	_, _, rest := l.item()
	m := yamlKeyPattern.FindStringSubmatch(rest)
	if m == nil {
		return "", "", false
	}
	value = strings.TrimSpace(rest[len(m[0]):])
	if i := strings.Index(value, " #"); i >= 0 || strings.HasPrefix(value, "#") {
		value = strings.TrimSpace(value[:max(i, 0)])
	}
	return strings.Trim(m[1], `"'`), value, true
}

// openBlocks lists the columns of the mappings and lists still open after
// lines[:n], skipping comments and the contents of block scalars (| and >).
func openBlocks(lines []yamlLine, n int) (maps, lists []int) {
	type block struct {
		col  int
		list bool
	}
	var stack []block
	push := func(b block) {
		if len(stack) == 0 || stack[len(stack)-1] != b {
			stack = append(stack, b)
		}
	}
	scalarIndent := -1 // inside a block scalar: the indent of the line that began it
	for _, l := range lines[:n] {
		if scalarIndent >= 0 {
			if l.content == "" || l.indent > scalarIndent {
				continue
			}
			scalarIndent = -1
		}
		if !l.significant() {
			continue
		}
		for len(stack) > 0 && stack[len(stack)-1].col > l.indent {
			stack = stack[:len(stack)-1]
		}
		itemLists, col, rest := l.item()
		for _, c := range itemLists {
			push(block{c, true})
		}
		if _, value, ok := l.key(); ok {
			push(block{col, false})
			rest = value
		}
		if strings.HasPrefix(rest, "|") || strings.HasPrefix(rest, ">") {
			scalarIndent = l.indent
		}
	}
	for _, b := range stack {
		if b.list {
			lists = appendNew(lists, b.col)
		} else {
			maps = appendNew(maps, b.col)
		}
	}
	return maps, lists
}

func appendNew(s []int, v int) []int {
	if slices.Contains(s, v) {
		return s
	}
	return append(s, v)
}

// explainYAMLError puts yaml.v3's problem msg at line n (from 1) in plain
// words, or returns "" when the lines do not show the usual mistake.
func explainYAMLError(lines []yamlLine, n int, msg string) string {
	if n > len(lines) {
		return ""
	}
	l := lines[n-1]
	if l.tab {
		return "a tab character is used for indentation; YAML indents with spaces only"
	}
	switch msg {
	case yamlTabToken:
		if m := reservedStart.FindStringSubmatch(l.content); m != nil {
			return fmt.Sprintf("a value starts with %q, which YAML reserves; put the value in quotes", m[1])
		}
	case yamlNoKey, yamlNoDash:
		maps, lists := openBlocks(lines, n-1)
		itemLists, _, _ := l.item()
		if len(itemLists) > 0 {
			if len(lists) == 0 || slices.Contains(lists, l.indent) {
				return ""
			}
			return fmt.Sprintf("this list item is indented %s, but %s above it %s; the dashes of one list's items must line up, so indent it like the items it belongs with",
				spaces(l.indent), plural(len(lists), "the list", "the lists"), indentedAt(lists))
		}
		if len(maps) == 0 || slices.Contains(maps, l.indent) {
			return ""
		}
		what := "this line"
		if key, _, ok := l.key(); ok {
			what = strconv.Quote(key)
		}
		return fmt.Sprintf("%s is indented %s, but the keys above it are indented %s; the keys of one mapping must line up, so indent it like the keys it belongs with",
			what, spaces(l.indent), columnsText(maps))
	case yamlMappingValue:
		key, value, ok := l.key()
		if !ok {
			return ""
		}
		for i := n - 2; i >= 0; i-- {
			prev := lines[i]
			if !prev.significant() {
				continue
			}
			_, prevCol, _ := prev.item()
			prevKey, prevValue, prevOK := prev.key()
			if prevOK && prevValue != "" && l.indent > prevCol {
				return fmt.Sprintf("%q is indented more than %q on line %d, which already has a value; line it up with %q",
					key, prevKey, i+1, prevKey)
			}
			break
		}
		if strings.Contains(value, ": ") {
			return fmt.Sprintf(`the value of %q holds ": ", which YAML reads as the start of another key; put the value in quotes`, key)
		}
	}
	return ""
}

func spaces(n int) string {
	if n == 1 {
		return "1 space"
	}
	return fmt.Sprintf("%d spaces", n)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// indentedAt says "is indented 2" or "are indented 2 or 6".
func indentedAt(cols []int) string {
	return plural(len(cols), "is", "are") + " indented " + columnsText(cols)
}

// columnsText lists columns as "0", "0 or 2", "0, 2 or 4".
func columnsText(cols []int) string {
	s := make([]string, len(cols))
	for i, c := range cols {
		s[i] = strconv.Itoa(c)
	}
	if len(s) == 1 {
		return s[0]
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}
