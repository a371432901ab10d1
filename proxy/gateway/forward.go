package gateway

import (
	"net/http"
)

// toUpstream hands a request the gate let through to the upstream: its
// body under the idle-progress deadline and, on a gated route, an upgrade
// or a streamed response registered as a tunnel.
func (s *Server) toUpstream(w http.ResponseWriter, r *http.Request, e *logEntry, f *forward) {
	if b := newIdleBody(w, r, s.cfg.Timeouts.BodyIdle); b != nil {
		f.body = b
		defer b.finish()
	}
	if f.gated && f.identity != nil && isUpgrade(r) {
		f.tunnel = s.newTunnel(r, f)
		w = &tunnelWriter{ResponseWriter: w, reg: s.tunnels, tn: f.tunnel, maxLifetime: s.cfg.Timeouts.TunnelMaxLifetime}
	}
	if s.cfg.CostHeader != "" {
		f.costw = costWriter{ResponseWriter: w, name: s.cfg.CostHeader} // canonical (config)
		w = &f.costw
		defer f.costw.stripTrailers()
	}
	defer func() {
		// Settled already when the upstream answered, or in the
		// ReverseProxy's ErrorHandler (forward.settleLost); a panic on
		// the way costs nothing.
		f.limit.Release()
		// An upgrade, or a stream that streamStarted registered.
		if tn := f.tunnel; tn != nil {
			s.tunnels.remove(tn)
			if reason := tn.reason.Load(); reason != nil {
				e.reason = *reason
			}
		}
	}()
	s.upstream.ServeHTTP(w, r)
}

func (s *Server) newTunnel(r *http.Request, f *forward) *tunnel {
	return &tunnel{id: *f.identity, method: r.Method, host: r.Host, path: f.path, overrides: f.overrides}
}

// streamStarted registers a gated response without a length as a tunnel,
// so that revocation, a lapsed plan or the maximum lifetime ends it as it
// ends a WebSocket: closing the upstream body stops the copy, and the
// client's connection is cut.
func (s *Server) streamStarted(f *forward, resp *http.Response) {
	f.tunnel = s.newTunnel(resp.Request, f)
	s.tunnels.add(f.tunnel, resp.Body, s.cfg.Timeouts.TunnelMaxLifetime)
}
