//go:build !schema1

package dump

import (
	"context"
	"fmt"
	"time"

	"github.com/tollgate/tollgate/proxy"
)

// Extras are what later tollgates of schema 2 added to a store: API keys
// and the dirty marks of deferred webhook syncs.
type Extras struct {
	APIKeys map[string][]proxy.APIKey
	Dirty   []proxy.DirtyMark
	Backlog proxy.Backlog
}

// extrasStore is the API of the API keys and dirty marks.
type extrasStore interface {
	APIKeysOf(ctx context.Context, subject proxy.Subject) ([]proxy.APIKey, error)
	DirtyDue(ctx context.Context, now time.Time, limit int) ([]proxy.DirtyMark, time.Time, error)
	DirtyBacklog(ctx context.Context) (proxy.Backlog, error)
}

func takeExtras(ctx context.Context, store Store, now time.Time) (*Extras, error) {
	s, ok := store.(extrasStore)
	if !ok {
		return nil, fmt.Errorf("%T has no API keys or dirty marks", store)
	}
	e := &Extras{APIKeys: map[string][]proxy.APIKey{}}
	for _, id := range subjects {
		subject, err := proxy.ParseSubject(id)
		if err != nil {
			return nil, err
		}
		if e.APIKeys[id], err = s.APIKeysOf(ctx, subject); err != nil {
			return nil, err
		}
	}
	var err error
	if e.Dirty, _, err = s.DirtyDue(ctx, now.Add(time.Hour), 100); err != nil {
		return nil, err
	}
	e.Backlog, err = s.DirtyBacklog(ctx)
	return e, err
}
