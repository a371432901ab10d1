package gateway

import (
	"net/http"
	"time"

	"github.com/tollgate/tollgate/proxy"
)

// State is what outlives a config reload: what Clerk said about sessions
// (checks, revocations, membership changes), the open tunnels, the upstream
// connections and each user's billing allowance. main builds it once; every
// Server built on a reload shares it, so a reload swaps only what the
// config decides.
type State struct {
	sessions  *sessionState
	tunnels   *tunnels
	transport http.RoundTripper
	billing   *billingLimiter
	keyFails  *keyFailures // refused API keys per client address
	waits     *upstreamWaits
}

// StateOptions are the long-lived parts' own dependencies.
type StateOptions struct {
	// Sessions asks Clerk whether a session is still active. nil: the
	// gateway cookie is never renewed past session.refresh.
	Sessions proxy.SessionChecker
	// Observer also learns what became of each session check, if it is a
	// SessionCheckObserver.
	Observer Observer
	// Transport reaches the upstream. nil: a clone of
	// http.DefaultTransport with timeouts. Either way the upstream's wait
	// is bounded by UpstreamWait around it.
	Transport http.RoundTripper
	// Revocations keeps what Clerk ended across restarts. nil: they are
	// kept in memory only, and a restart forgets them.
	Revocations proxy.RevocationStore
}

// NewState builds the long-lived state.
func NewState(o StateOptions) *State {
	t := o.Transport
	if t == nil {
		t = defaultTransport()
	}
	waits := newUpstreamWaits(UpstreamWait, UpstreamBodyStall, time.Now)
	st := &State{sessions: newSessionState(o.Sessions, o.Observer), tunnels: newTunnels(), transport: &waitingTransport{base: t, waits: waits},
		billing: newBillingLimiter(), keyFails: newKeyFailures(), waits: waits}
	st.sessions.store = o.Revocations
	if st.sessions.store == nil {
		st.sessions.store = memoryOnly{}
	}
	return st
}
