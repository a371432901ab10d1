package gateway

import "context"

// request is everything the gateway learns about one request while serving
// it. It travels in the request's context as one value, so that the
// upstream's Rewrite and ModifyResponse, which receive only the request,
// can find what the gate decided. The access log reads log; only forwarded
// requests have a forward.
type request struct {
	log logEntry
	sw  statusWriter // the access log's view of the answer
	fwd *forward     // set when the request goes to the upstream: then &decided
	// decided is what the gate fills in, kept here so that a request
	// costs one allocation for all three.
	decided forward
	line    accessLine // the access log's line, when Options.AccessLog takes it
}

type requestKey struct{}

func withRequest(ctx context.Context, req *request) context.Context {
	return context.WithValue(ctx, requestKey{}, req)
}

func requestFrom(ctx context.Context) *request {
	req, _ := ctx.Value(requestKey{}).(*request)
	return req
}

// entryFrom returns the request's log entry; a request served outside
// ServeHTTP (a test calling a handler directly) gets a throwaway one.
func entryFrom(ctx context.Context) *logEntry {
	if req := requestFrom(ctx); req != nil {
		return &req.log
	}
	return &logEntry{}
}

// forwardFrom finds what the gate decided for a forwarded request; nil for
// a request that is not forwarded.
func forwardFrom(ctx context.Context) *forward {
	if req := requestFrom(ctx); req != nil {
		return req.fwd
	}
	return nil
}
