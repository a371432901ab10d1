package proxy

import (
	"slices"
	"strings"
	"unicode/utf8"
)

// The gate forwards the canonical path exactly as the rules saw it. Upstreams
// do not all route a path alike, though: Go's ServeMux, Express, Flask and
// nginx take "/a/..;/b" as three ordinary segments, while Tomcat and Spring
// drop ";params" first (and then climb with ".."), IIS reads "\" as "/" and
// ignores a segment's trailing dots and spaces, Spring's trimTokens drops a
// segment's leading and trailing white space and control characters, and an
// upstream that decodes once more reads "%2e" as ".". Letter case is read
// five ways too: byte for byte (ServeMux, Flask, Rails), ASCII only, with
// Unicode folding, upper-cased as Windows file names are (IIS), and
// lower-cased (.NET, Java). A request is therefore judged under every
// reading an upstream may apply to its path, and refused when the readings
// would choose different rules or route IDs (docs/SECURITY.md, "Rules in detail").

// maxReadings bounds the distinct readings of one path; a path with more is
// refused rather than judged.
const maxReadings = 16

// maxReadPathLen bounds the length of a decoded path that is judged under
// its readings: each reading copies, splits and joins the whole path, up to
// 2×maxReadings times over, so a 60 KB path took ~50 ms and an 8 KiB one
// ~8 ms (red team, issue 15). A longer path that may read differently is
// refused (400); one that cannot is judged as it is, at any length. 4 KiB
// of decoded path is more than any link a browser builds from a page's
// words; the worst path within it costs ~4 ms
// (BenchmarkJudge_LongestReadPath).
const maxReadPathLen = 4 << 10

// upstreamReadings are the ways an upstream may read a decoded path
// differently from the canonical form. A reading is matched after
// cleanDecodedPath, which merges slashes as nginx's merge_slashes does and
// resolves the dot segments a reading may have made; further readings start
// from it both cleaned and not (pathReadings).
var upstreamReadings = [...]func(string) string{
	withoutPathParams, // Tomcat, Spring, Jetty: "/admin;x=1" and "/a/..;/b"
	asWindowsPath,     // IIS: "\" is "/", "admin." and "admin " are "admin"
	trimmedSegments,   // Spring's trimTokens: "admin%09" and "%00admin" are "admin"
	unescapeOnce,      // an upstream that percent-decodes the forwarded path again
	unescapeWithU,     // ASP.NET's HttpUtility.UrlDecode: "%u002f" is "/" too
}

// unescapeWithU decodes p once as .NET's HttpUtility.UrlDecode does
// (HttpEncoder.UrlDecode in the .NET reference source): unescapeOnce, and
// the non-standard "%uXXXX" as a UTF-16 code unit, and "+" as a space
// (decodePercent). .NET reads only a lower-case "u"; an upper-case one is
// read too, since an extra reading can only refuse more (red team, issue
// 15: "/public/..%25u002fadmin/x" reached an app that decodes again, as
// "/admin/x").
func unescapeWithU(p string) string { return decodePercent(p, true) }

// mayReadDifferently reports whether some upstream reading could change the
// canonical decoded path p: it holds ";", "\", "%", white space or a control
// character, or a segment ending in ".". Most paths hold none, and are judged
// with no extra work.
func mayReadDifferently(p string) bool {
	for i := 0; i < len(p); i++ {
		if p[i] <= ' ' || p[i] == 0x7f {
			return true
		}
		switch p[i] {
		case ';', '\\', '%', '+':
			return true
		case '.', ' ':
			if i+1 == len(p) || p[i+1] == '/' {
				return true
			}
		}
	}
	return false
}

// pathReadings returns every distinct path an upstream may route the
// canonical decoded path p to, p first, closed under applying the readings
// in any order. ok is false when there are more than maxReadings of them.
//
// An upstream may apply one reading to the output of another without
// cleaning between them (an app that decodes the path again and maps it to
// a Windows file: "x%5c..%2f.." climbs twice), so the readings are also
// applied to each uncleaned result.
func pathReadings(p string) (readings []string, ok bool) {
	readings = []string{p}
	reached := []string{p} // every path met, cleaned or not
	for i := 0; i < len(reached); i++ {
		for _, read := range upstreamReadings {
			raw := read(reached[i])
			q := cleanDecodedPath(raw)
			for _, r := range [...]string{q, raw} {
				if !slices.Contains(reached, r) {
					if len(reached) == 2*maxReadings {
						return nil, false
					}
					reached = append(reached, r)
				}
			}
			if slices.Contains(readings, q) {
				continue
			}
			if len(readings) == maxReadings {
				return nil, false
			}
			readings = append(readings, q)
		}
	}
	return readings, true
}

// withoutPathParams drops the ";params" of every segment, as a servlet
// container does before it routes.
func withoutPathParams(p string) string {
	if !strings.Contains(p, ";") {
		return p
	}
	var b strings.Builder
	b.Grow(len(p))
	for i := 0; i < len(p); i++ {
		if p[i] != ';' {
			b.WriteByte(p[i])
			continue
		}
		for i+1 < len(p) && p[i+1] != '/' {
			i++
		}
	}
	return b.String()
}

// asWindowsPath reads p as IIS maps it to a file: "\" separates segments,
// and a segment's trailing dots and spaces are ignored.
func asWindowsPath(p string) string {
	p = strings.ReplaceAll(p, "\\", "/")
	segs := strings.Split(p, "/")
	for i, s := range segs {
		if s != "." && s != ".." {
			segs[i] = strings.TrimRight(s, ". ")
		}
	}
	return strings.Join(segs, "/")
}

// trimmedSegments reads p as Spring's tokenizer with trimTokens does: each
// segment without leading or trailing bytes up to " " (Java's String.trim).
func trimmedSegments(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		segs[i] = strings.TrimFunc(s, func(r rune) bool { return r <= ' ' })
	}
	return strings.Join(segs, "/")
}

// caseReadings are the ways of reading letter case a request may meet,
// beyond the folded reading that decides: none when every way reads path
// alike, because neither the path nor any literal of the rules holds an
// upper-case or non-ASCII letter; byte for byte only when both are ASCII,
// for then every folding reads them as ASCII folding does (no ASCII letter
// upper- or lower-cases, or full-upper-cases, to anything but its ASCII
// pair); and all of them otherwise.
func (rs *RuleSet) caseReadings(path string) []caseMode {
	if rs == nil {
		return nil
	}
	upper, nonASCII := letterKinds(path)
	switch {
	case !upper && !nonASCII && !rs.caseSensitiveLiterals:
		return nil
	case !nonASCII && !rs.nonASCIILiterals:
		return byteForByte
	}
	return caseModes
}

// byteForByte is the one case reading that may differ from folding when a
// path and the literals are all ASCII.
var byteForByte = []caseMode{exactCase}

// letterKinds reports whether s holds an ASCII upper-case letter, and
// whether it holds a byte outside ASCII.
func letterKinds(s string) (upper, nonASCII bool) {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= utf8.RuneSelf:
			return upper, true
		case 'A' <= c && c <= 'Z':
			upper = true
		}
	}
	return upper, false
}

// widerCaseReadings returns the longer of a and b: caseReadings returns
// nil, byteForByte or caseModes, each holding the one before.
func widerCaseReadings(a, b []caseMode) []caseMode {
	if len(b) > len(a) {
		return b
	}
	return a
}

// otherMethod stands for every method no rule names. It is not an HTTP
// token, so no rule can list it.
const otherMethod = "\x00"

// Judge chooses the rule that decides a request: method and host as for
// Match, canonicalPath from CanonicalPath, and overrides the methods named
// by the request's method-override headers (X-HTTP-Method-Override and
// kin). ok is false when the request must be refused (400):
//
//   - the readings an upstream may apply to the path choose different rules
//     or route IDs;
//   - the methods the app may handle the request as choose rules that cannot
//     be ranked (paid rules for different route IDs).
//
// An app may handle a request as the method an override header names, and
// Rails, Laravel and Symfony take a POST's "_method" parameter as the
// method, so a request with an override, and a POST to a path whose rules
// differ by method, is judged by the strictest rule among those methods.
func (rs *RuleSet) Judge(method, host, canonicalPath string, overrides []string) (RouteMatch, bool) {
	var readings []string
	if mayReadDifferently(canonicalPath) {
		if len(canonicalPath) > maxReadPathLen {
			return RouteMatch{}, false
		}
		var ok bool
		if readings, ok = pathReadings(canonicalPath); !ok {
			return RouteMatch{}, false
		}
	}
	// A reading may make letters the canonical path lacks: an upstream that
	// decodes "%c4%b1" once more reads "ı", which upper-cases to "I". Each
	// path is judged under the case readings the widest of them needs.
	cases := rs.caseReadings(canonicalPath)
	for _, p := range readings {
		cases = widerCaseReadings(cases, rs.caseReadings(p))
	}
	m, ok := rs.matchReadings(method, host, canonicalPath, readings, cases)
	if !ok {
		return RouteMatch{}, false
	}
	post := requestMethod(method) == "POST"
	if len(overrides) == 0 && !post {
		return m, true
	}
	var named []string
	if post {
		named = rs.namedMethods()
		if len(named) > 0 {
			named = append(named, otherMethod)
		}
	}
	for _, cm := range slices.Concat(overrides, named) {
		c, ok := rs.matchReadings(cm, host, canonicalPath, readings, cases)
		if !ok {
			return RouteMatch{}, false
		}
		if m, ok = stricter(m, c); !ok {
			return RouteMatch{}, false
		}
	}
	return m, true
}

// matchReadings matches path under each of its readings (none: path alone)
// and each way of reading case (none: folded), and reports whether they all
// choose the same rule and route ID.
func (rs *RuleSet) matchReadings(method, host, path string, readings []string, cases []caseMode) (RouteMatch, bool) {
	m := rs.match(method, host, path, foldUnicode)
	same := func(p string, mode caseMode) bool {
		o := rs.match(method, host, p, mode)
		return o.Rule == m.Rule && o.RouteID == m.RouteID
	}
	for _, mode := range cases {
		if !same(path, mode) {
			return RouteMatch{}, false
		}
	}
	for _, p := range readings {
		if !same(p, foldUnicode) {
			return RouteMatch{}, false
		}
		for _, mode := range cases {
			if !same(p, mode) {
				return RouteMatch{}, false
			}
		}
	}
	return m, true
}

// namedMethods lists every method some rule names, once each.
func (rs *RuleSet) namedMethods() []string {
	if rs == nil {
		return nil
	}
	var out []string
	for _, r := range rs.Rules {
		for _, m := range r.Methods {
			if !slices.Contains(out, m) {
				out = append(out, m)
			}
		}
	}
	return out
}

// stricter returns the stronger of two matches for one request. Two paid
// matches for different route IDs cannot be ranked (holding one says
// nothing of the other); a paid match without an ID is unlocked by any plan,
// so one with an ID is the stricter.
func stricter(a, b RouteMatch) (RouteMatch, bool) {
	if a.Rule == b.Rule && a.RouteID == b.RouteID {
		return a, true
	}
	ra, rb := accessRank(a.Access), accessRank(b.Access)
	switch {
	case ra > rb:
		return a, true
	case rb > ra:
		return b, true
	case a.Access != AccessPaid, strings.EqualFold(a.RouteID, b.RouteID), b.RouteID == "":
		return a, true
	case a.RouteID == "":
		return b, true
	}
	return RouteMatch{}, false
}
