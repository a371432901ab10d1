package clerk

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unsafe"

	"github.com/clerk/clerk-sdk-go/v2"
	"github.com/clerk/clerk-sdk-go/v2/jwt"
	jose "github.com/go-jose/go-jose/v3"
	josejwt "github.com/go-jose/go-jose/v3/jwt"

	"github.com/tollgate/tollgate/proxy"
)

// Token categories (JOSE header "cat") a session verifier accepts. Any other
// category, a JWT template for instance, is signed by the same key but is not
// a session token.
const (
	catSession = "cl_B7d4PD111AAA"
	catIgnore  = "cl_I7d4PD111III"
)

// Verification failure reasons (Clerk's names where Clerk has one).
const (
	reasonTokenInvalid        = "token-invalid"
	reasonTokenTypeMismatch   = "token-type-mismatch"
	reasonTokenExpired        = "token-expired"
	reasonTokenNotActiveYet   = "token-not-active-yet"
	reasonTokenIATInFuture    = "token-iat-in-the-future"
	reasonInvalidAlgorithm    = "token-invalid-algorithm"
	reasonInvalidSignature    = "token-invalid-signature"
	reasonInvalidIssuer       = "token-invalid-issuer"
	reasonInvalidAuthzParties = "token-invalid-authorized-parties"
	reasonInvalidSubject      = "token-invalid-subject"
	reasonInvalidSessionID    = "token-invalid-sid"
	reasonMissingExpiry       = "token-missing-exp"
	reasonKIDMismatch         = "jwk-kid-mismatch"
	reasonJWKFailedToLoad     = "jwk-failed-to-load"
)

// verifyError is a failed verification, with the reason reported in
// AuthResult.Reason. It wraps the underlying error (go-jose's ErrExpired and
// friends included).
type verifyError struct {
	reason string
	err    error
}

func (e *verifyError) Error() string {
	if e.err == nil {
		return e.reason
	}
	return e.reason + ": " + e.err.Error()
}

func (e *verifyError) Unwrap() error { return e.err }

func reasonOf(err error) string {
	var ve *verifyError
	if errors.As(err, &ve) {
		return ve.reason
	}
	return "unexpected-error"
}

// tokenInfo is what a JWT says about itself, before anyone checked it.
type tokenInfo struct {
	alg, kid, typ, cat string
	iss, sub, sid, azp string
	iat, exp           int64
	hasIAT, hasExp     bool
}

type jwtHeader struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
	Typ string `json:"typ"`
	Cat string `json:"cat"`
}

type jwtPayload struct {
	Iss string   `json:"iss"`
	Sub string   `json:"sub"`
	Sid string   `json:"sid"`
	Azp string   `json:"azp"`
	Iat *float64 `json:"iat"`
	Exp *float64 `json:"exp"`
}

// decodeToken reads a compact JWT (three base64url parts, the signature
// possibly empty) without verifying anything.
func decodeToken(tok string) (tokenInfo, bool) {
	h, rest, ok1 := strings.Cut(tok, ".")
	p, sig, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || h == "" || p == "" || strings.Contains(sig, ".") {
		return tokenInfo{}, false
	}
	var hdr jwtHeader
	var pl jwtPayload
	if !decodeSegment(h, &hdr) || !decodeSegment(p, &pl) {
		return tokenInfo{}, false
	}
	info := tokenInfo{
		alg: hdr.Alg, kid: hdr.Kid, typ: hdr.Typ, cat: hdr.Cat,
		iss: pl.Iss, sub: pl.Sub, sid: pl.Sid, azp: pl.Azp,
	}
	if pl.Iat != nil {
		info.iat, info.hasIAT = int64(*pl.Iat), true
	}
	if pl.Exp != nil {
		info.exp, info.hasExp = int64(*pl.Exp), true
	}
	return info, true
}

func decodeSegment(seg string, v any) bool {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	return err == nil && json.Unmarshal(b, v) == nil
}

// typeError rejects what is not a session token: other categories, typed
// access tokens (at+jwt) and machine tokens (sub mch_…). Clerk calls all of
// these token-type-mismatch.
func typeError(typ, cat, sub string) error {
	switch {
	case typ != "" && typ != "JWT":
		return &verifyError{reasonTokenTypeMismatch, fmt.Errorf("typ %q is not a session token", typ)}
	case cat != "" && cat != catSession && cat != catIgnore:
		return &verifyError{reasonTokenTypeMismatch, fmt.Errorf("category %q is not a session token", cat)}
	case strings.HasPrefix(sub, "mch_"):
		return &verifyError{reasonTokenTypeMismatch, errors.New("machine token")}
	}
	return nil
}

// verified is a session token that passed every check at least once: the
// value of the verified-token cache. It is never modified once cached.
type verified struct {
	// signed is the token's header.payload, compared on a cache hit (the
	// cache is keyed by the signature's SHA-256: tokenKey).
	signed                  string
	userID, sessionID       string
	orgID, orgSlug, orgRole string
	iat, exp                int64
	hasIAT                  bool
	pending                 bool // sts "pending": signed in, but with tasks to finish first
}

func (v *verified) identity(source string) *proxy.Identity {
	id := &proxy.Identity{
		UserID:    v.userID,
		SessionID: v.sessionID,
		OrgID:     v.orgID,
		OrgSlug:   v.orgSlug,
		OrgRole:   v.orgRole,
		ExpiresAt: time.Unix(v.exp, 0).UTC(),
		Source:    source,
	}
	if v.hasIAT {
		id.IssuedAt = time.Unix(v.iat, 0).UTC()
	}
	return id
}

// expired applies go-jose's rule (now - leeway > exp) to a cached token.
func (v *verified) expired(now time.Time, leeway time.Duration) bool {
	return now.Add(-leeway).After(time.Unix(v.exp, 0))
}

// customClaims are the claims clerk-sdk-go does not expose, or exposes only
// for some token versions.
type customClaims struct {
	Sts string     `json:"sts"`
	O   *orgClaims `json:"o"`
}

type orgClaims struct {
	ID   string `json:"id"`
	Slug string `json:"slg"`
	Role string `json:"rol"`
}

func newCustomClaims(context.Context) any { return &customClaims{} }

// tokenView is one token of the request, looked up in the verified-token
// cache and, on a miss, decoded (not verified).
type tokenView struct {
	raw     string
	key     [32]byte
	signed  string    // raw's header.payload (all of raw when it has no '.')
	hit     *verified // from the cache; nil on a miss
	info    tokenInfo
	decoded bool
}

func (c *Client) view(raw string) tokenView {
	v := tokenView{raw: raw}
	v.key, v.signed = c.tokenKey(raw)
	if hit, ok := c.tokens.Get(v.key); ok && hit.signed == v.signed {
		v.hit, v.decoded = hit, true
		v.info = tokenInfo{
			iss: c.issuer, sub: hit.userID, sid: hit.sessionID,
			iat: hit.iat, hasIAT: hit.hasIAT, exp: hit.exp, hasExp: true,
		}
		return v
	}
	v.info, v.decoded = decodeToken(raw)
	return v
}

// tokenKey is the cache key of a token, and the part of it an entry must
// match besides: the SHA-256 of its signature (the part after the last
// '.'), and its header.payload, compared in full on a hit. A hit is thus
// the very token that was verified (the same header.payload, and a
// signature of the same SHA-256), while the cache holds no usable
// credential: a header.payload without its signature is none, and the
// signature is kept only as its SHA-256. Hashing the signature alone (342
// characters for RS256) rather than the whole token (~900) is what a
// request pays for the lookup (README "Performance").
func (c *Client) tokenKey(tok string) (key [32]byte, signed string) {
	signed, sig := tok, tok
	if i := lastDot(tok); i >= 0 {
		signed, sig = tok[:i], tok[i+1:]
	}
	// sha256.Sum256 only reads its argument and keeps none of it, so the
	// string's bytes are hashed where they are, with no copy and no
	// allocation.
	return sha256.Sum256(unsafe.Slice(unsafe.StringData(sig), len(sig))), signed
}

// rs256SignatureLen is the length of an RS256 signature in base64url (a
// 2048-bit key's 256 bytes), which Clerk's session tokens carry.
const rs256SignatureLen = 342

// lastDot is strings.LastIndexByte(tok, '.'), quick for a token of Clerk's
// shape: where the dot sits before an RS256 signature, IndexByte (which
// scans many bytes at a time) confirms that the signature holds no other,
// rather than a byte-by-byte scan from the end.
func lastDot(tok string) int {
	if i := len(tok) - rs256SignatureLen - 1; i >= 0 && tok[i] == '.' && strings.IndexByte(tok[i+1:], '.') < 0 {
		return i
	}
	return strings.LastIndexByte(tok, '.')
}

// verify checks a session token against the checklist of the package
// comment, or answers from the cache. A token whose only fault is its time
// claims (expired, or not valid yet) comes back with its claims and an
// error that wraps go-jose's ErrExpired, ErrNotValidYet or
// ErrIssuedInTheFuture, so that the caller can name its session. now is
// the caller's one clock reading for the request (README "Performance").
func (c *Client) verify(ctx context.Context, v *tokenView, now time.Time) (*verified, error) {
	return c.verifyLeeway(ctx, v, c.leeway, now)
}

// verifySkewed verifies a token with a leeway of skew on its time claims,
// for Clerk's development clock-skew retry. What passes only thanks to the
// skew is not cached: the cache holds what verifies with the normal leeway.
func (c *Client) verifySkewed(ctx context.Context, v *tokenView, skew time.Duration, now time.Time) (*verified, error) {
	return c.verifyLeeway(ctx, v, skew, now)
}

func (c *Client) verifyLeeway(ctx context.Context, v *tokenView, leeway time.Duration, now time.Time) (*verified, error) {
	if v.hit != nil {
		if v.hit.expired(now, leeway) {
			return v.hit, &verifyError{reasonTokenExpired, josejwt.ErrExpired}
		}
		return v.hit, nil
	}
	if !v.decoded {
		return nil, &verifyError{reasonTokenInvalid, errors.New("not a compact JWT")}
	}
	info := &v.info
	if info.alg != "RS256" {
		return nil, &verifyError{reasonInvalidAlgorithm, fmt.Errorf("alg %q", info.alg)}
	}
	if err := typeError(info.typ, info.cat, info.sub); err != nil {
		return nil, err
	}
	if err := c.checkClaims(info.iss, info.sub, info.sid, info.azp, info.hasExp); err != nil {
		return nil, err
	}
	jwk, err := c.signingKey(ctx, info.kid)
	if err != nil {
		return nil, err
	}
	iss := c.acceptedIssuer(info.iss) // checkClaims made sure there is one
	ver, err := c.verifyAt(ctx, v.raw, iss, jwk, fixedClock(now), leeway)
	switch {
	case errors.Is(err, josejwt.ErrExpired):
		// The signature checked out (go-jose verifies it before the times).
		// Check the rest as of the moment the token expired, so that a
		// stale but genuine token can name its session.
		stale, err2 := c.verifyAt(ctx, v.raw, iss, jwk, fixedClock(time.Unix(info.exp, 0)), leeway)
		if err2 != nil {
			return nil, err
		}
		if leeway == c.leeway {
			stale.signed = v.signed
			c.tokens.Add(v.key, stale)
		}
		return stale, err
	case (errors.Is(err, josejwt.ErrNotValidYet) || errors.Is(err, josejwt.ErrIssuedInTheFuture)) && info.hasIAT:
		// Minted ahead of this clock: the same, as of its own iat. Not
		// cached: the cache only checks expiry.
		early, err2 := c.verifyAt(ctx, v.raw, iss, jwk, fixedClock(time.Unix(info.iat, 0)), leeway)
		if err2 != nil {
			return nil, err
		}
		return early, err
	case err != nil:
		return nil, err
	}
	if leeway == c.leeway {
		ver.signed = v.signed
		c.tokens.Add(v.key, ver)
	}
	return ver, nil
}

// timeError reports whether a verification failed only on the token's
// time claims: expired, not valid yet, or issued in the future.
func timeError(err error) bool {
	return errors.Is(err, josejwt.ErrExpired) || errors.Is(err, josejwt.ErrNotValidYet) ||
		errors.Is(err, josejwt.ErrIssuedInTheFuture)
}

// checkClaims applies the checks clerk-sdk-go leaves out or does loosely.
// It runs on the decoded claims first (for a precise reason) and again on
// the claims the SDK verified.
func (c *Client) checkClaims(iss, sub, sid, azp string, hasExp bool) error {
	switch {
	case c.acceptedIssuer(iss) == nil:
		return &verifyError{reasonInvalidIssuer, fmt.Errorf("issuer %q is neither %q nor the Frontend API proxy", iss, c.issuer)}
	case !(proxy.Subject{Kind: proxy.SubjectUser, ID: sub}).Valid():
		return &verifyError{reasonInvalidSubject, fmt.Errorf("subject %q is not a user", sub)}
	case !strings.HasPrefix(sid, "sess_"):
		return &verifyError{reasonInvalidSessionID, errors.New("no session id (sid)")}
	case !hasExp:
		return &verifyError{reasonMissingExpiry, errors.New("no expiry (exp)")}
	case !c.authorizedParty(azp):
		return &verifyError{reasonInvalidAuthzParties, fmt.Errorf("authorized party %q not allowed", azp)}
	}
	return nil
}

// acceptedIssuer returns the configured issuer iss is exactly, or nil: the
// instance's Frontend API (https://<host from the publishable key>), or
// the Frontend API proxy's URL. clerk-sdk-go accepts only the proxy URL
// once one is set (jwt.Verify with ProxyURL); clerk/javascript's
// tokenBelongsToInstance only the Frontend API ("tokens are issued by the
// actual Clerk API, not proxy"): tollgate accepts both, and nothing else.
func (c *Client) acceptedIssuer(iss string) *string {
	switch {
	case iss == c.issuer:
		return &c.issuer
	case c.proxyIssuer != "" && iss == c.proxyIssuer:
		return &c.proxyIssuer
	}
	return nil
}

// authorizedParty: a token without azp passes (Clerk omits it on tokens
// minted for top-level navigations); a present azp must be on the list when
// there is one.
func (c *Client) authorizedParty(azp string) bool {
	if azp == "" || len(c.parties) == 0 {
		return true
	}
	_, ok := c.parties[strings.TrimSuffix(azp, "/")]
	return ok
}

func (c *Client) signingKey(ctx context.Context, kid string) (*clerk.JSONWebKey, error) {
	if c.pem != nil {
		return c.pem, nil // CLERK_JWT_KEY: one key, whatever the kid
	}
	k, err := c.keys.key(ctx, kid)
	switch {
	case errors.Is(err, errUnknownKID):
		return nil, &verifyError{reasonKIDMismatch, err}
	case err != nil:
		return nil, &verifyError{reasonJWKFailedToLoad, err}
	}
	return k, nil
}

// verifyAt runs clerk-sdk-go's jwt.Verify with our key and clock, then the
// checks it does not do.
func (c *Client) verifyAt(ctx context.Context, tok string, iss *string, jwk *clerk.JSONWebKey, clock clerk.Clock, leeway time.Duration) (*verified, error) {
	c.verifications.Add(1)
	claims, err := jwt.Verify(ctx, &jwt.VerifyParams{
		Token:                   tok,
		JWK:                     jwk,
		Clock:                   clock,
		Leeway:                  leeway,
		CustomClaimsConstructor: newCustomClaims,
		// The SDK's own issuer rule is loose (any https://clerk.*); with
		// ProxyURL it compares exactly, with the accepted issuer the token
		// names, and checkClaims does so again.
		ProxyURL:               iss,
		AuthorizedPartyHandler: c.authorizedParty,
	})
	if err != nil {
		return nil, classify(err)
	}
	if err := c.checkClaims(claims.Issuer, claims.Subject, claims.SessionID, claims.AuthorizedParty, claims.Expiry != nil); err != nil {
		return nil, err
	}
	v := &verified{userID: claims.Subject, sessionID: claims.SessionID, exp: *claims.Expiry}
	if claims.IssuedAt != nil {
		v.iat, v.hasIAT = *claims.IssuedAt, true
	}
	// Organisation: v2 "o" (the SDK maps it only when v == 2, so read it
	// directly), else v1 org_id/org_slug/org_role.
	custom, _ := claims.Custom.(*customClaims)
	if custom != nil && custom.O != nil && custom.O.ID != "" {
		v.orgID, v.orgSlug, v.orgRole = custom.O.ID, custom.O.Slug, orgRole(custom.O.Role)
	} else if claims.ActiveOrganizationID != "" {
		v.orgID, v.orgSlug, v.orgRole = claims.ActiveOrganizationID, claims.ActiveOrganizationSlug, orgRole(claims.ActiveOrganizationRole)
	}
	v.pending = custom != nil && custom.Sts == "pending"
	return v, nil
}

func orgRole(r string) string {
	if r == "" || strings.HasPrefix(r, "org:") {
		return r
	}
	return "org:" + r
}

func classify(err error) error {
	reason := reasonTokenInvalid
	switch {
	case errors.Is(err, josejwt.ErrExpired):
		reason = reasonTokenExpired
	case errors.Is(err, josejwt.ErrNotValidYet):
		reason = reasonTokenNotActiveYet
	case errors.Is(err, josejwt.ErrIssuedInTheFuture):
		reason = reasonTokenIATInFuture
	case errors.Is(err, jose.ErrCryptoFailure):
		reason = reasonInvalidSignature
	}
	return &verifyError{reason, err}
}

// verifyHandshake verifies a handshake payload JWT (clerk/javascript
// packages/backend/src/tokens/handshake.ts, verifyHandshakeJwt): the same
// key, alg and category rules as a session token, but no time claims, and
// returns its Set-Cookie directives.
func (c *Client) verifyHandshake(ctx context.Context, tok string) ([]string, error) {
	info, ok := decodeToken(tok)
	switch {
	case !ok:
		return nil, &verifyError{reasonTokenInvalid, errors.New("handshake payload is not a compact JWT")}
	case info.alg != "RS256":
		return nil, &verifyError{reasonInvalidAlgorithm, fmt.Errorf("alg %q", info.alg)}
	}
	if err := typeError(info.typ, info.cat, ""); err != nil {
		return nil, err
	}
	jwk, err := c.signingKey(ctx, info.kid)
	if err != nil {
		return nil, err
	}
	parsed, err := josejwt.ParseSigned(tok)
	if err != nil {
		return nil, &verifyError{reasonTokenInvalid, err}
	}
	if len(parsed.Headers) != 1 || parsed.Headers[0].Algorithm != "RS256" {
		return nil, &verifyError{reasonInvalidAlgorithm, errors.New("unexpected JOSE header")}
	}
	var payload struct {
		Handshake []string `json:"handshake"`
	}
	c.verifications.Add(1)
	if err := parsed.Claims(jwk.Key, &payload); err != nil {
		return nil, classify(err)
	}
	return payload.Handshake, nil
}

type fixedClock time.Time

func (t fixedClock) Now() time.Time { return time.Time(t) }
