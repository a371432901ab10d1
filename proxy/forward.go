package proxy

import (
	"net/http"
	"time"
)

// toUpstream hands a request the gate let through to the upstream: its
// body under the idle-progress deadline and, on a gated route, an upgrade
// registered as a tunnel.
func (s *Server) toUpstream(w http.ResponseWriter, r *http.Request, e *logEntry, f *forward) {
	if b := newIdleBody(w, r, s.cfg.Timeouts.BodyIdle); b != nil {
		f.body = b
		defer b.finish()
	} else if hasBody(r) {
		// timeouts.body_idle: 0: no limit, not the one serve set.
		_ = http.NewResponseController(w).SetReadDeadline(time.Time{})
	}
	if f.gated && f.identity != nil && isUpgrade(r) {
		tn := &tunnel{id: *f.identity, method: r.Method, host: r.Host, path: f.path, overrides: f.overrides}
		f.tunnel = tn
		w = &tunnelWriter{ResponseWriter: w, reg: s.tunnels, tn: tn, maxLifetime: s.cfg.Timeouts.TunnelMaxLifetime}
		defer func() {
			s.tunnels.remove(tn)
			if reason := tn.reason.Load(); reason != nil {
				e.reason = *reason
			}
		}()
	}
	s.upstream.ServeHTTP(w, r)
}
