package proxy

import "net/http"

// toUpstream hands a request the gate let through to the upstream, its
// body under the idle-progress deadline.
func (s *Server) toUpstream(w http.ResponseWriter, r *http.Request, e *logEntry, f *forward) {
	if b := newIdleBody(w, r, s.cfg.Timeouts.BodyIdle); b != nil {
		f.body = b
		defer b.finish()
	}
	s.upstream.ServeHTTP(w, r)
}
