package gateway

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/tollgate/tollgate/proxy"
)

// withIdentity looks the visitor up for an internal handler as mode asks
// and puts the identity into the request context.
func (s *Server) withIdentity(mode InternalAuth, h http.Handler) http.Handler {
	if mode == AuthNone {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e := entryFrom(r.Context())
		// tollgate's own pages and endpoints are for people: an API key is
		// not looked up here at all (no store read, no Clerk verification,
		// so no oracle either), and a request carrying only a key is signed
		// out. A key must never manage billing, keys or sessions (docs/
		// SECURITY.md, "API keys").
		stripAPIKeys(r.Header, s.cfg.APIKeys.Header, s.cfg.Clerk.APIKeys)
		var out authOutcome
		if mode == AuthRequired {
			var ok bool
			if out, ok = s.authenticate(w, r, e); !ok {
				return
			}
		} else {
			var res proxy.AuthResult
			var err error
			out, res, err = s.identify(r, s.reqNow(e))
			if err != nil {
				s.log.WarnContext(r.Context(), "gateway session check failed", "err", err)
			}
			if res.State == proxy.Handshake || res.Location != "" {
				// A page load whose Clerk token Clerk would refresh: refresh
				// it, so that the page knows the visitor by a fresh token
				// rather than by the gateway cookie, or not at all.
				addSetCookies(w, res.SetCookies)
				if res.State == proxy.Handshake {
					e.decision = "handshake"
					s.toClerk(w, r, res.Location)
					return
				}
				e.decision = "handshake_resolved"
				for _, c := range out.cookies {
					http.SetCookie(w, c)
				}
				redirect(w, res.Location, http.StatusTemporaryRedirect)
				return
			}
			if out.id != nil {
				e.identify(out.id)
				if c := s.loopDone(r); c != nil {
					out.cookies = append(out.cookies, c)
				}
			}
			if res.DevBrowserToken != "" {
				r = r.WithContext(context.WithValue(r.Context(), devBrowserKey{}, res.DevBrowserToken))
			}
		}
		addSetCookies(w, out.setCookies)
		for _, c := range out.cookies {
			http.SetCookie(w, c)
		}
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), identityKey{}, out.id)))
	})
}

// handleSignOut signs the visitor out (README "Sessions"): it ends the
// Clerk session itself through the Backend API, so that no handshake
// brings it back in any tab, drops tollgate's gateway session and the
// session token cookies, and sends the visitor on to public_url (or the
// form's safe return path). Clerk's Account Portal has no documented
// sign-out page to send anyone to. If Clerk cannot be reached nothing is
// changed, and the page says so and offers to try again: clearing only
// tollgate's cookies would look like a sign-out while the next page load
// signs the visitor back in.
func (s *Server) handleSignOut(w http.ResponseWriter, r *http.Request) {
	noStore(w)
	id := IdentityFromContext(r.Context())
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	_ = r.ParseForm()
	ret := s.safeReturn(r.PostForm.Get("return"))
	if id != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		clear, err := s.ender.EndSession(ctx, id.SessionID)
		cancel()
		if err != nil {
			s.log.WarnContext(r.Context(), "sign-out: cannot end the Clerk session", "user_id", id.UserID, "err", err)
			entryFrom(r.Context()).reason = "clerk_revoke_failed"
			s.pages.render(w, r, http.StatusServiceUnavailable, "signout", signOutPage{SignedIn: true, Failed: true,
				Action: s.prefix + "/sign-out", Return: ret})
			return
		}
		// Tokens of the session still inside their minute die here too.
		// Clerk has ended the session, so a revocation the store failed to
		// keep only matters if tollgate restarts within the token's
		// minute; the sign-out goes on.
		if err := s.RevokeSession(r.Context(), id.SessionID); err != nil {
			s.log.WarnContext(r.Context(), "sign-out: revocation not stored", "user_id", id.UserID, "err", err)
		}
		keepClerkHousekeeping(w) // not what the identity lookup just (re)issued
		addSetCookies(w, clear)
	} else {
		keepClerkHousekeeping(w)
	}
	http.SetCookie(w, s.gw.clearCookie())
	redirect(w, strings.TrimSuffix(s.cfg.PublicURL.String(), "/")+ret, http.StatusSeeOther)
}

// keepClerkHousekeeping drops the Set-Cookie values the identity lookup
// added (a renewed gateway cookie, a session token from a handshake) but
// keeps Clerk's own __clerk_* directives, which clear the handshake cookies
// the browser would otherwise send again with every request.
func keepClerkHousekeeping(w http.ResponseWriter) {
	h := w.Header()
	kept := h["Set-Cookie"][:0]
	for _, c := range h["Set-Cookie"] {
		if strings.HasPrefix(strings.TrimSpace(c), "__clerk_") {
			kept = append(kept, c)
		}
	}
	if len(kept) == 0 {
		h.Del("Set-Cookie")
		return
	}
	h["Set-Cookie"] = kept
}

type signOutPage struct {
	SignedIn bool
	Failed   bool // Clerk could not be asked to end the session
	Action   string
	Return   string
}

// handleSignOutPage asks for the POST that signs out, so that a link (or an
// image a third-party page embeds) cannot sign anyone out by itself.
func (s *Server) handleSignOutPage(w http.ResponseWriter, r *http.Request) {
	noStore(w)
	s.pages.render(w, r, http.StatusOK, "signout", signOutPage{SignedIn: IdentityFromContext(r.Context()) != nil,
		Action: s.prefix + "/sign-out", Return: s.safeReturn(r.URL.Query().Get("return"))})
}

// meJSON is GET /api/me: who the visitor is and what they hold.
type meJSON struct {
	SignedIn      bool               `json:"signed_in"`
	UserID        string             `json:"user_id,omitempty"`
	SessionID     string             `json:"session_id,omitempty"`
	OrgID         string             `json:"org_id,omitempty"`
	OrgRole       string             `json:"org_role,omitempty"`
	Subscriptions []subscriptionJSON `json:"subscriptions"`
}

type subscriptionJSON struct {
	Plan              string     `json:"plan"`
	PlanName          string     `json:"plan_name"`
	Subject           string     `json:"subject"`
	Status            string     `json:"status"`
	Active            bool       `json:"active"`
	CurrentPeriodEnd  *time.Time `json:"current_period_end,omitempty"`
	TrialEnd          *time.Time `json:"trial_end,omitempty"`
	CancelAtPeriodEnd bool       `json:"cancel_at_period_end"`
	EndedAt           *time.Time `json:"ended_at,omitempty"`
	// PausedCollection: Stripe is not collecting payment now (the status
	// stays active); Active says whether it grants all the same
	// (stripe.paused_collection).
	PausedCollection    bool       `json:"paused_collection"`
	CollectionResumesAt *time.Time `json:"collection_resumes_at,omitempty"`
	// Comp: an admin's complimentary grant, not a Stripe subscription; it
	// lasts until current_period_end.
	Comp bool `json:"comp,omitempty"`
	// PriceID is the subscription's first price, for the account page.
	PriceID string `json:"-"`
}

func (s *Server) handleMe(w http.ResponseWriter, r *http.Request) {
	noStore(w)
	id := IdentityFromContext(r.Context())
	if id == nil {
		writeJSON(w, http.StatusOK, meJSON{Subscriptions: []subscriptionJSON{}})
		return
	}
	me := meJSON{SignedIn: true, UserID: id.UserID, SessionID: id.SessionID, OrgID: id.OrgID, OrgRole: id.OrgRole, Subscriptions: []subscriptionJSON{}}
	subs, err := s.subscriptionsOf(r.Context(), id)
	if err != nil {
		s.log.ErrorContext(r.Context(), "api/me: entitlements", "err", err)
		s.writeError(w, r, http.StatusServiceUnavailable)
		return
	}
	me.Subscriptions = subs
	writeJSON(w, http.StatusOK, me)
}

// subscriptionsOf lists the subscriptions of the visitor and of their active
// organisation, as the account page and /api/me show them.
func (s *Server) subscriptionsOf(ctx context.Context, id *proxy.Identity) ([]subscriptionJSON, error) {
	out := []subscriptionJSON{}
	subjects := []proxy.Subject{{Kind: proxy.SubjectUser, ID: id.UserID}}
	if id.OrgID != "" {
		subjects = append(subjects, proxy.Subject{Kind: proxy.SubjectOrg, ID: id.OrgID})
	}
	now := s.now()
	for _, subj := range subjects {
		ents, err := s.ents.Entitlements(ctx, subj)
		if err != nil {
			return nil, err
		}
		if ents == nil {
			continue
		}
		subs := ents.All(now)
		for i := range subs {
			sub := &subs[i]
			sj := subscriptionJSON{Plan: sub.Plan, PlanName: sub.Plan, Subject: subj.String(), Status: string(sub.Status),
				Active: proxy.Grants(sub, s.cfg.Stripe.Access(), now), CancelAtPeriodEnd: sub.CancelAtPeriodEnd,
				PausedCollection: sub.CollectionPaused(now), Comp: sub.Comp}
			if len(sub.PriceIDs) > 0 {
				sj.PriceID = sub.PriceIDs[0]
			}
			for j := range s.cfg.Plans {
				if s.cfg.Plans[j].Key == sub.Plan {
					sj.PlanName = s.cfg.Plans[j].Name
				}
			}
			if !sub.CurrentPeriodEnd.IsZero() {
				t := sub.CurrentPeriodEnd
				sj.CurrentPeriodEnd = &t
			}
			if !sub.TrialEnd.IsZero() {
				t := sub.TrialEnd
				sj.TrialEnd = &t
			}
			if !sub.EndedAt.IsZero() {
				t := sub.EndedAt
				sj.EndedAt = &t
			}
			if sj.PausedCollection && !sub.CollectionResumesAt.IsZero() {
				t := sub.CollectionResumesAt
				sj.CollectionResumesAt = &t
			}
			out = append(out, sj)
		}
	}
	return out, nil
}
