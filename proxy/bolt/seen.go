package bolt

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/tollgate/tollgate/proxy"
)

const (
	// MaxPendingSeen bounds the users a SeenBatcher holds between flushes.
	MaxPendingSeen = 100_000
	// DefaultSeenInterval is the flush interval when none is given.
	DefaultSeenInterval = 10 * time.Second
)

var _ proxy.SeenRecorder = (*SeenBatcher)(nil)

// SeenBatcher implements proxy.SeenRecorder off the request path: Seen only
// updates a bounded in-memory map, and Run writes it to the store every
// interval with one RecordSeen (a transaction per thousand users). Within an interval only the
// latest sighting of a user is kept, so a new user's first_seen is precise
// to the interval.
type SeenBatcher struct {
	store    *Store
	interval time.Duration
	log      *slog.Logger
	max      int

	mu      sync.Mutex
	pending map[string]time.Time
	dropped uint64
	closed  bool

	flushMu sync.Mutex // one flush at a time, so a failed batch merges back in order
	stop    chan struct{}
	once    sync.Once
}

// NewSeenBatcher returns a batcher writing to s every interval (default
// DefaultSeenInterval). A nil logger discards. Start it with Run; Close
// flushes what is left.
func (s *Store) NewSeenBatcher(interval time.Duration, logger *slog.Logger) *SeenBatcher {
	if interval <= 0 {
		interval = DefaultSeenInterval
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &SeenBatcher{
		store:    s,
		interval: interval,
		log:      logger,
		max:      MaxPendingSeen,
		pending:  make(map[string]time.Time),
		stop:     make(chan struct{}),
	}
}

// Seen notes that userID was seen at at. It never blocks on disk. When the
// pending map is full, users already in it are still updated and new ones
// are dropped (and counted); after Close everything is dropped.
func (b *SeenBatcher) Seen(userID string, at time.Time) {
	if userID == "" {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		b.dropped++
		return
	}
	b.addLocked(userID, at)
}

// addLocked merges one sighting into pending; b.mu is held.
func (b *SeenBatcher) addLocked(userID string, at time.Time) {
	if prev, ok := b.pending[userID]; ok {
		if at.After(prev) {
			b.pending[userID] = at
		}
		return
	}
	if len(b.pending) >= b.max {
		b.dropped++
		return
	}
	b.pending[userID] = at
}

// Dropped is how many sightings were dropped because the map was full (or
// the batcher closed).
func (b *SeenBatcher) Dropped() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.dropped
}

// Pending is how many users wait for the next flush.
func (b *SeenBatcher) Pending() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.pending)
}

// Run flushes every interval until ctx is done or Close is called. A failed
// flush is logged and its sightings wait for the next one.
func (b *SeenBatcher) Run(ctx context.Context) {
	t := time.NewTicker(b.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.stop:
			return
		case <-t.C:
			if err := b.Flush(ctx); err != nil && ctx.Err() == nil {
				b.log.Warn("flush last-seen batch", "err", err, "pending", b.Pending())
			}
		}
	}
}

// Flush writes the pending sightings now. On failure they are put back
// (what does not fit is dropped) for the next flush.
func (b *SeenBatcher) Flush(ctx context.Context) error {
	b.flushMu.Lock()
	defer b.flushMu.Unlock()
	b.mu.Lock()
	batch := b.pending
	if len(batch) == 0 {
		b.mu.Unlock()
		return nil
	}
	b.pending = make(map[string]time.Time, len(batch))
	b.mu.Unlock()

	err := b.store.RecordSeen(ctx, batch)
	if err != nil {
		b.mu.Lock()
		for id, at := range batch {
			b.addLocked(id, at)
		}
		b.mu.Unlock()
	}
	return err
}

// Close stops Run, flushes what is left and drops later sightings. Only
// the first call does anything.
func (b *SeenBatcher) Close() error {
	var err error
	b.once.Do(func() {
		b.mu.Lock()
		b.closed = true
		b.mu.Unlock()
		close(b.stop)
		err = b.Flush(context.Background())
		if err != nil {
			b.log.Error("final flush of last-seen batch", "err", err, "lost", b.Pending())
		}
		if d := b.Dropped(); d > 0 {
			b.log.Warn("last-seen sightings dropped", "dropped", d)
		}
	})
	return err
}
