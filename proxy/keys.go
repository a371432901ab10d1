package proxy

import (
	"bytes"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

// Facts about a Clerk instance that its keys carry. They are parsed here,
// once, for the config check and for proxy/clerk alike.

// DefaultClerkAPIURL is Clerk's Backend API base, with /v1, unless
// clerk.api_url says otherwise.
const DefaultClerkAPIURL = "https://api.clerk.com/v1"

// DefaultStripeAPIURL is Stripe's API base unless stripe.api_url says
// otherwise.
const DefaultStripeAPIURL = "https://api.stripe.com"

// PublishableKey is what a Clerk publishable key (pk_live_… or pk_test_…)
// encodes, and what follows from it.
type PublishableKey struct {
	// FrontendAPIHost is the instance's Frontend API host, e.g.
	// "clerk.example.com" or "foo-bar-13.clerk.accounts.dev". Session tokens
	// are issued by "https://" + FrontendAPIHost.
	FrontendAPIHost string
	// Production is true for pk_live_ keys, false for development (pk_test_).
	Production bool
	// AccountsURL is the base URL of the hosted Account Portal, e.g.
	// "https://accounts.example.com".
	AccountsURL string
	// CookieSuffix tells this instance's cookies (__session_<suffix>, …)
	// from those of other Clerk apps on the same site.
	CookieSuffix string
}

// ParsePublishableKey decodes a publishable key: "pk_test_" or "pk_live_"
// followed by the base64 of "<frontend-api-host>$".
func ParsePublishableKey(pk string) (PublishableKey, error) {
	// The value is never quoted back: a secret pasted into the wrong
	// place would land in logs (docs/SECURITY.md, "Never logged").
	bad := fmt.Errorf("%s is not a Clerk publishable key; want pk_live_… or pk_test_… as shown in the Clerk dashboard under API keys", describeKey(pk))
	parts := strings.Split(pk, "_")
	if len(parts) != 3 || parts[0] != "pk" || (parts[1] != "test" && parts[1] != "live") {
		return PublishableKey{}, bad
	}
	dec, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(parts[2], "="))
	if err != nil {
		return PublishableKey{}, bad
	}
	host, ok := strings.CutSuffix(string(dec), "$")
	if !ok || strings.Contains(host, "$") || !strings.Contains(host, ".") || !validHost(host) {
		return PublishableKey{}, bad
	}
	return PublishableKey{
		FrontendAPIHost: host,
		Production:      parts[1] == "live",
		AccountsURL:     accountsURL(host),
		CookieSuffix:    cookieSuffix(pk),
	}, nil
}

// validHost accepts host names with an optional port, nothing that could
// change the meaning of a URL built around it.
func validHost(h string) bool {
	if h == "" || h[0] == '.' || h[0] == '-' {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '-', c == ':':
		default:
			return false
		}
	}
	return true
}

// accountsURL ports @clerk/shared buildAccountsBaseUrl: the Account Portal
// lives at the Frontend API host with its leading "clerk." (or
// "clerk.accounts.") replaced by "accounts.".
func accountsURL(fapiHost string) string {
	h := strings.Replace(fapiHost, "clerk.accountsstage.", "accountsstage.", 1)
	if i := strings.Index(h, "clerk."); i >= 0 {
		n := len("clerk.")
		if strings.HasPrefix(h[i:], "clerk.accounts.") {
			n = len("clerk.accounts.")
		}
		h = h[:i] + "accounts." + h[i+n:]
	}
	return "https://" + h
}

// cookieSuffix ports @clerk/shared getCookieSuffix: the first 8 characters
// of the URL-safe base64 of SHA-1 over the whole publishable key.
func cookieSuffix(pk string) string {
	sum := sha1.Sum([]byte(pk))
	b := base64.StdEncoding.EncodeToString(sum[:])
	return strings.NewReplacer("+", "-", "/", "_").Replace(b)[:8]
}

// CheckJWTKey checks that Clerk's JWT verification key (CLERK_JWT_KEY) is
// a usable PEM RSA public key, so a mangled one fails at startup (the
// config check) rather than on the first request.
func CheckJWTKey(s string) error {
	const want = "want the PEM public key from the Clerk dashboard (API keys → JWT public key), with real newlines or \\n escapes"
	block, rest := pem.Decode([]byte(s))
	if block == nil {
		return errors.New("is not a PEM block; " + want)
	}
	if block.Type != "PUBLIC KEY" {
		return fmt.Errorf("is a %q PEM block; %s", block.Type, want)
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return errors.New("has text after the PEM block; " + want)
	}
	key, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return fmt.Errorf("does not parse (%v); %s", err, want)
	}
	if _, ok := key.(*rsa.PublicKey); !ok {
		return fmt.Errorf("is a %T, not an RSA key (Clerk signs session tokens with RS256); %s", key, want)
	}
	return nil
}

// describeKey names what a mistaken key value looks like, without its
// secret part: a secret key's prefix, or the first characters of anything
// else that is not a secret.
func describeKey(v string) string {
	for _, p := range []string{"sk_live_", "sk_test_", "rk_live_", "rk_test_", "whsec_"} {
		if strings.HasPrefix(v, p) {
			return "the value (which looks like a secret key, " + p + "…)"
		}
	}
	if len(v) > 12 {
		v = v[:12] + "…"
	}
	return fmt.Sprintf("%q", v)
}
