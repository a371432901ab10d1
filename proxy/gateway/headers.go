package gateway

import (
	"net/http"
	"net/netip"
	"strings"
)

// Request headers are judged by name after folding case, and every byte
// that is not a letter or a digit to "-": CGI, WSGI (HTTP_X_TOLLGATE_USER),
// PHP and Rack read "X_Tollgate_User" and "X-Tollgate-User" as one header,
// and PHP also reads "." and " " as "_" (php_register_variable_ex), so
// "X-Tollgate.User" is the same header there too. A spelling tollgate did
// not strip would reach the app as the real thing (docs/SECURITY.md, "Rules
// in detail").

// headerClass is what tollgate makes of a request header, by name.
type headerClass uint8

const (
	headerOther          headerClass = iota
	headerTollgate                   // X-Tollgate-*: only tollgate sets these
	headerForwarding                 // X-Forwarded-*, Forwarded, X-Real-IP, …: believed only from trusted_proxies
	headerMethodOverride             // X-HTTP-Method-Override and kin: the method an app may act on
)

// forwardingHeaders are the headers (folded) that describe a hop rather than
// the client's request: which client, host, scheme, port, prefix or URL the
// request was for. Frameworks believe them, so only a trusted proxy may set
// them. Names ending in "-" are prefixes.
var forwardingHeaders = [...]string{
	"x-forwarded", // X-Forwarded-For, -Host, -Proto, -Port, -Prefix, -Server, -Uri, -Method, -Ssl, …
	"x-original-", // X-Original-URL (IIS, Symfony), -URI, -Method, -Host
	"forwarded",
	"x-real-ip",
	"x-rewrite-url",
	"x-host",
	"true-client-ip",
	"x-client-ip",
	"x-cluster-client-ip",
	"cf-connecting-ip",
	"fastly-client-ip",
}

var methodOverrideHeaders = [...]string{"x-http-method-override", "x-http-method", "x-method-override"}

// classifyHeader says what a header name is, and whether it was spelled
// with a separator other than "-" (a spelling no proxy sets, so never
// believed).
func classifyHeader(name string) (class headerClass, underscored bool) {
	if len(name) < 6 { // shorter than every name above
		return headerOther, false
	}
	underscored = strings.IndexFunc(name, func(r rune) bool { return r != '-' && !isAlnum(r) }) >= 0
	if foldedHasPrefix(name, "x-tollgate-") {
		return headerTollgate, underscored
	}
	for _, f := range forwardingHeaders {
		if f[len(f)-1] == '-' || f == "x-forwarded" {
			if foldedHasPrefix(name, f) {
				return headerForwarding, underscored
			}
		} else if foldedEqual(name, f) {
			return headerForwarding, underscored
		}
	}
	for _, m := range methodOverrideHeaders {
		if foldedEqual(name, m) {
			return headerMethodOverride, underscored
		}
	}
	return headerOther, underscored
}

// foldedEqual compares a header name with a lower-case, dashed name,
// ignoring ASCII case and reading every byte other than a letter or a digit
// as "-".
func foldedEqual(name, lowerDashed string) bool {
	if len(name) != len(lowerDashed) {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		case !isAlnum(rune(c)):
			c = '-'
		}
		if c != lowerDashed[i] {
			return false
		}
	}
	return true
}

func foldedHasPrefix(name, lowerDashedPrefix string) bool {
	return len(name) >= len(lowerDashedPrefix) && foldedEqual(name[:len(lowerDashedPrefix)], lowerDashedPrefix)
}

// sanitizeRequestHeaders removes, in every spelling, the headers a client
// may not set: tollgate's own family always, and the forwarding family
// unless the peer is a trusted proxy (which may set them only in their
// standard spelling). It returns the methods named by method-override
// headers, in any spelling, for the gate to judge.
func sanitizeRequestHeaders(h http.Header, trustedPeer bool) (overrides []string) {
	for k, vs := range h {
		class, underscored := classifyHeader(k)
		switch class {
		case headerTollgate:
			delete(h, k)
		case headerForwarding:
			if !trustedPeer || underscored {
				delete(h, k)
			}
		case headerMethodOverride:
			for _, v := range vs {
				for m := range strings.SplitSeq(v, ",") {
					if m = strings.TrimSpace(m); m != "" {
						overrides = append(overrides, m)
					}
				}
			}
		}
	}
	return overrides
}

// foldHeaderName is name as foldedEqual compares it: lower case, every
// byte other than a letter or a digit read as "-".
func foldHeaderName(name string) string {
	b := []byte(strings.ToLower(name))
	for i, c := range b {
		if !isAlnum(rune(c)) {
			b[i] = '-'
		}
	}
	return string(b)
}

// stripFoldedHeader removes the header whose folded name is folded in
// every spelling.
func stripFoldedHeader(h http.Header, folded string) {
	for k := range h {
		if foldedEqual(k, folded) {
			delete(h, k)
		}
	}
}

// stripTollgateHeaders removes X-Tollgate-* in every spelling.
func stripTollgateHeaders(h http.Header) {
	for k := range h {
		if class, _ := classifyHeader(k); class == headerTollgate {
			delete(h, k)
		}
	}
}

// ClientAddr is the visitor's address, for per-client limits: the peer's,
// or, when the peer is in trustedProxies, the rightmost X-Forwarded-For
// entry that is not itself a trusted proxy (the entries left of it are the
// client's to write). It returns the address alone, without a port; "" when
// there is none to read.
func ClientAddr(r *http.Request, trustedProxies []netip.Prefix) string {
	peer := r.RemoteAddr
	if ap, err := netip.ParseAddrPort(peer); err == nil {
		peer = ap.Addr().Unmap().String()
	}
	if !trusted(r.RemoteAddr, trustedProxies) {
		return peer
	}
	xff := r.Header.Values("X-Forwarded-For")
	for i := len(xff) - 1; i >= 0; i-- {
		hops := strings.Split(xff[i], ",")
		for j := len(hops) - 1; j >= 0; j-- {
			a, err := netip.ParseAddr(strings.TrimSpace(hops[j]))
			if err != nil {
				return peer // unreadable: the proxy is the client we know
			}
			a = a.Unmap()
			if !containsAddr(trustedProxies, a) {
				return a.String()
			}
		}
	}
	return peer
}

func containsAddr(prefixes []netip.Prefix, a netip.Addr) bool {
	for _, p := range prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func isAlnum(r rune) bool {
	return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9'
}
