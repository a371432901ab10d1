package proxy

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

const (
	// MaxPendingTimes bounds the IDs a TimeBatcher holds between flushes.
	MaxPendingTimes = 100_000
	// DefaultBatchInterval is a TimeBatcher's flush interval when none is
	// given.
	DefaultBatchInterval = 10 * time.Second
	// SeenResolution is how precise users' stored last-seen times are
	// (TimeBatcher.WithResolution; README "Performance"): a user seen
	// again within it of their last written sighting is not written again.
	SeenResolution = time.Minute
)

// TimeBatcher keeps the latest time per ID off the request path and writes
// them to a store every interval: users' last-seen times (SeenRecorder)
// and API keys' last use (APIKeyUseRecorder), for any store. Noting never
// blocks on the store; within an interval only an ID's latest time is
// kept, so a new user's first-seen time is precise to the interval.
type TimeBatcher struct {
	write    func(context.Context, map[string]time.Time) error
	interval time.Duration
	log      *slog.Logger
	what     string
	max      int

	mu      sync.Mutex
	pending map[string]time.Time
	dropped uint64
	closed  bool

	flushMu sync.Mutex // one flush at a time, so a failed batch merges back in order
	// resolution: a time within this of the last one written for its ID
	// (and not before it) is not written again (0: every time is).
	// written holds those last times (under flushMu), the IDs written
	// within a resolution of the newest time written, at most max.
	resolution time.Duration
	written    map[string]time.Time
	stop       chan struct{}
	once       sync.Once
}

var (
	_ SeenRecorder      = (*TimeBatcher)(nil)
	_ APIKeyUseRecorder = (*TimeBatcher)(nil)
)

// NewTimeBatcher returns a batcher that hands its batch to write every
// interval (DefaultBatchInterval when 0); what names it in logs ("last
// seen"). A nil logger discards. Start it with Run; Close flushes what is
// left.
func NewTimeBatcher(write func(context.Context, map[string]time.Time) error, interval time.Duration, what string, logger *slog.Logger) *TimeBatcher {
	if interval <= 0 {
		interval = DefaultBatchInterval
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &TimeBatcher{
		write:    write,
		interval: interval,
		log:      logger,
		what:     what,
		max:      MaxPendingTimes,
		pending:  make(map[string]time.Time),
		stop:     make(chan struct{}),
	}
}

// WithResolution makes b skip an ID whose new time is less than d after the
// last one it wrote for it: a store's last-seen time is then precise to d
// (plus the interval), and a user active all day is written once per d
// rather than every interval. A first time, or one earlier than the last
// written, is always written. To remember what it wrote, b keeps the IDs
// written within d of its newest write, at most MaxPendingTimes of them
// (forgotten all at once beyond that: a few IDs are written again, never
// skipped wrongly). Call it before Run.
func (b *TimeBatcher) WithResolution(d time.Duration) *TimeBatcher {
	b.resolution = d
	if d > 0 {
		b.written = make(map[string]time.Time)
	}
	return b
}

// Note records id at at. When the pending map is full, IDs already in it
// are still updated and new ones are dropped (and counted); after Close
// everything is dropped.
func (b *TimeBatcher) Note(id string, at time.Time) {
	if id == "" {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		b.dropped++
		return
	}
	b.addLocked(id, at)
}

// Seen is Note, for a batcher of users' sightings (SeenRecorder).
func (b *TimeBatcher) Seen(userID string, at time.Time) { b.Note(userID, at) }

// KeyUsed is Note, for a batcher of API keys' uses (APIKeyUseRecorder).
func (b *TimeBatcher) KeyUsed(keyID string, at time.Time) { b.Note(keyID, at) }

// addLocked merges one time into pending; b.mu is held.
func (b *TimeBatcher) addLocked(id string, at time.Time) {
	if prev, ok := b.pending[id]; ok {
		if at.After(prev) {
			b.pending[id] = at
		}
		return
	}
	if len(b.pending) >= b.max {
		b.dropped++
		return
	}
	b.pending[id] = at
}

// Dropped is how many times were dropped because the map was full (or the
// batcher closed).
func (b *TimeBatcher) Dropped() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.dropped
}

// Pending is how many IDs wait for the next flush.
func (b *TimeBatcher) Pending() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.pending)
}

// Run flushes every interval until ctx is done or Close is called. A failed
// flush is logged and its times wait for the next one.
func (b *TimeBatcher) Run(ctx context.Context) {
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
				b.log.Warn("flush "+b.what+" batch", "err", err, "pending", b.Pending())
			}
		}
	}
}

// Flush writes the pending times now. On failure they are put back (what
// does not fit is dropped) for the next flush.
func (b *TimeBatcher) Flush(ctx context.Context) error {
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

	if b.resolution > 0 {
		for id, at := range batch {
			if last, ok := b.written[id]; ok && !at.Before(last) && at.Sub(last) < b.resolution {
				delete(batch, id)
			}
		}
		if len(batch) == 0 {
			return nil
		}
	}
	err := b.write(ctx, batch)
	if err != nil {
		b.mu.Lock()
		for id, at := range batch {
			b.addLocked(id, at)
		}
		b.mu.Unlock()
		return err
	}
	if b.resolution > 0 {
		b.rememberLocked(batch)
	}
	return nil
}

// rememberLocked notes the times of a written batch for WithResolution and
// forgets those that can no longer cause a skip; b.flushMu is held.
func (b *TimeBatcher) rememberLocked(batch map[string]time.Time) {
	var newest time.Time
	for id, at := range batch {
		if last, ok := b.written[id]; !ok || at.After(last) {
			b.written[id] = at
		}
		if at.After(newest) {
			newest = at
		}
	}
	cutoff := newest.Add(-b.resolution)
	for id, at := range b.written {
		if at.Before(cutoff) {
			delete(b.written, id)
		}
	}
	if len(b.written) > b.max {
		clear(b.written)
	}
}

// Close stops Run, flushes what is left and drops later times. Only the
// first call does anything.
func (b *TimeBatcher) Close() error {
	var err error
	b.once.Do(func() {
		b.mu.Lock()
		b.closed = true
		b.mu.Unlock()
		close(b.stop)
		err = b.Flush(context.Background())
		if err != nil {
			b.log.Error("final flush of "+b.what+" batch", "err", err, "lost", b.Pending())
		}
		if d := b.Dropped(); d > 0 {
			b.log.Warn(b.what+" times dropped", "dropped", d)
		}
	})
	return err
}
