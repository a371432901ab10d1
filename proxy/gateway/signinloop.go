package gateway

import (
	"net/http"
	"strconv"
	"time"
)

// The sign-in loop guard (README "Development instances"). Clerk's SDK
// stops a handshake loop with its __clerk_redirect_count cookie, which
// lives two seconds and counts handshakes only. A loop that passes through
// the Account Portal (sign-in, back with a dev browser token, a handshake
// that fails, signed out, sign-in again: what a clock that is off, or keys
// of two instances, cause) takes longer than that, and the count starts
// again every time. tollgate counts every page load it sends to Clerk, the
// handshake and the sign-in page alike, in a cookie of its own that
// outlives the hop, and stops at signInLoopLimit: a handshake becomes
// signed out (the gateway session may stand in), a sign-in redirect a page
// that says what is wrong and offers one click to try again.
//
// The limit: the longest honest run is four (development, a clock that is
// off: sign-in, the dev browser's handshake, then the handshakes Clerk's
// own counter allows), and a loop through the Account Portal takes five
// redirects per two counted, so it ends well inside the twenty redirects
// after which a browser gives up with an error of its own.
const (
	signInLoopLimit  = 5 // redirects to Clerk in a row without coming back signed in
	signInLoopWindow = 30 * time.Second
	reasonSignInLoop = "sign-in-loop"
)

// loopCookieName is the guard's cookie: __Host- on https, like the
// gateway cookie, so no sibling subdomain can set it.
func (s *Server) loopCookieName() string {
	if s.cfg.PublicURL != nil && s.cfg.PublicURL.Scheme == "https" {
		return GatewayCookieSecure + "_loop"
	}
	return GatewayCookie + "_loop"
}

// loopCount is how many page loads in a row the browser has been sent to
// Clerk (0 without the cookie, or with one tollgate did not write).
func (s *Server) loopCount(r *http.Request) int {
	v, n := cookieValue(r, s.loopCookieName())
	if n == 0 {
		return 0
	}
	c, err := strconv.Atoi(v)
	if err != nil || c < 0 {
		return 0
	}
	return min(c, signInLoopLimit)
}

func (s *Server) loopCookie(n int) *http.Cookie {
	c := &http.Cookie{Name: s.loopCookieName(), Value: strconv.Itoa(n), Path: "/", MaxAge: int(signInLoopWindow.Seconds()),
		HttpOnly: true, Secure: s.cfg.PublicURL != nil && s.cfg.PublicURL.Scheme == "https", SameSite: http.SameSiteLaxMode}
	if n == 0 {
		c.Value, c.MaxAge = "", -1
	}
	return c
}

// toClerk sends a page load to Clerk (the handshake or the sign-in page),
// counting it.
func (s *Server) toClerk(w http.ResponseWriter, r *http.Request, location string) {
	http.SetCookie(w, s.loopCookie(s.loopCount(r)+1))
	redirect(w, location, http.StatusTemporaryRedirect)
}

// loopDone is the cookie that resets the count once a page load is
// answered signed in (nil when there is nothing to reset).
func (s *Server) loopDone(r *http.Request) *http.Cookie {
	if !isNavigation(r) {
		return nil
	}
	if _, n := cookieValue(r, s.loopCookieName()); n == 0 {
		return nil
	}
	return s.loopCookie(0)
}

// signInLoop answers a page load that would go to Clerk's sign-in once too
// often: a page that says so, with the sign-in link for a person to try
// again. It resets the count, so that click starts afresh; a loop of
// redirects, which nobody clicks through, ends here.
func (s *Server) signInLoop(w http.ResponseWriter, r *http.Request, signIn string) {
	s.log.WarnContext(r.Context(), "sign-in loop: the browser keeps coming back from Clerk signed out; "+
		"check that this machine's clock is right and that the Clerk keys belong to one instance")
	http.SetCookie(w, s.loopCookie(0))
	noStore(w)
	s.pages.render(w, r, http.StatusUnauthorized, "error", errorPage{Code: http.StatusUnauthorized,
		Title:     "Signing in did not complete",
		Message:   "Signing in keeps sending you back and forth without signing you in. This usually means that a clock (this computer's, or the site's) is wrong, or that the site's sign-in is misconfigured. Check the time and try again; if it keeps happening, tell the site's owner.",
		ActionURL: signIn, ActionLabel: "Try signing in again"})
}
