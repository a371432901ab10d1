package gateway

import (
	"context"
	"net/http"
)

// devBrowserKey carries a development instance's dev browser token
// (__clerk_db_jwt) from the identity lookup to the handler, which adds it
// to links into Clerk's Account Portal as Clerk's own redirects do.
type devBrowserKey struct{}

func devBrowserFrom(ctx context.Context) string {
	v, _ := ctx.Value(devBrowserKey{}).(string)
	return v
}

// portalLink serves <prefix>/sign-in?return= and /sign-up?return=, the links
// for an app's own "Sign in" and "Sign up" buttons: the visitor goes to that
// page of Clerk's Account Portal, which sends them back to return, a path on
// public_url checked as every return is (safeReturn: no open redirect). A
// visitor signed in already goes straight back.
func (s *Server) portalLink(page func(AccountPortal, string, string) string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		noStore(w)
		ret := s.safeReturn(r.URL.Query().Get("return"))
		if IdentityFromContext(r.Context()) != nil {
			redirect(w, ret, http.StatusSeeOther)
			return
		}
		target := page(s.portal, s.publicBase()+ret, devBrowserFrom(r.Context()))
		if target == "" { // no Clerk: nowhere to sign in
			s.writeError(w, r, http.StatusNotFound)
			return
		}
		e := entryFrom(r.Context())
		if s.loopCount(r) >= signInLoopLimit {
			e.decision = "sign_in_loop"
			s.signInLoop(w, r, target)
			return
		}
		e.decision = "sign_in"
		s.toClerk(w, r, target)
	})
}
