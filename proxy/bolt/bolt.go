// Package bolt is tollgate's store: a single bbolt file holding who pays for
// whom, what Stripe last said about each customer, which Stripe events were
// processed, resumable sync cursors, the users tollgate has seen, admins'
// comps and audit trail, and the revocations Clerk's webhooks reported.
//
// Every bucket, with its keys and values. Open creates the first six in one
// transaction; the rest are created by their first write (a read treats a
// missing one as empty), and their files say more:
//
//	meta              "schema"                        → uint64 big-endian schema version
//	customers         Stripe customer ID              → binary record (customerrec.go)
//	accounts          Clerk ID (user_…, org_…)        → binary record: the user, the linked customer, the listing (accounts.go)
//	events            Stripe event ID                 → processed-at, unix nanoseconds, uint64 big-endian (events.go)
//	events_by_time    processed-at, event ID          → empty: the events by time, for pruning (events.go)
//	cursors           cursor name                     → cursor value (raw string)
//	dict              the strings records share        (dict.go)
//	orgs              Clerk organisation ID           → JSON {"v":1, slug, name} (orgs.go)
//	comps             comp ID                         → JSON comp (comps.go)
//	comps_by_subject  subject NUL comp ID             → empty: the index of a subject's comps (comps.go)
//	audit             at + seq                        → JSON audit entry (audit.go)
//	history           customer ID NUL at seq          → binary subscription change (history.go)
//	revocations       expires + seq                   → JSON revocation (revocations.go)
//	listing_*         the listing index and its counters (index.go)
//	stats             dashboard counter key           → count, amount: the dashboard's counters (stats.go)
//	quotas            subject, plan, route, window, replica → end, used: plans' quota counters (quotas.go)
//
// The records a store holds one of per user or customer are binary and
// compact (codec.go); the few others are JSON. Every record carries its
// version (a first byte, or "v"); a record written by a newer tollgate is
// an error (ErrUnsupportedVersion), never silently misread, and an older
// one is still read. Records are decoded inside their transaction, so
// nothing returned aliases bbolt's memory.
//
// bbolt takes an exclusive lock on the file: one gateway per store file.
package bolt

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/tollgate/tollgate/proxy"
)

// ErrUnsupportedVersion is returned for a store or a record written by a
// newer tollgate (or otherwise carrying a version this one does not know).
var ErrUnsupportedVersion = errors.New("unsupported version")

const (
	// schemaVersion is meta "schema". 2 added the listing index and the
	// dashboard's counters; 3 made the records binary and merged users,
	// their customer links and their listing into one record per subject;
	// 4 indexed the processed events by time (events.go), so pruning them
	// reads only what it deletes. Open migrates a store of 1 or 2 into a
	// new file (migrate.go), and one of 3 in place (indexEvents).
	schemaVersion = 4
	recordVersion = 1 // "v" of every JSON record

	bucketMeta      = "meta"
	bucketCustomers = "customers"
	bucketEvents    = "events"
	bucketCursors   = "cursors"

	keySchema = "schema"
)

// Options tune Open. The zero value is usable.
type Options struct {
	// Timeout bounds the wait for the file lock, so a second process on
	// the same file fails instead of hanging. Default 1s.
	Timeout time.Duration
	// Now is the clock for processed-at times. Default time.Now.
	Now func() time.Time
	// NoSync skips the fsync of each commit, and of each growth of the
	// file: for bulk loads into a new file (tollgate-gen) only, as a crash
	// may then lose the file.
	NoSync bool
	// Logger hears about a migration's progress. Default: discard.
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.Timeout <= 0 {
		o.Timeout = time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Store is the bbolt-backed store. Its methods are safe for concurrent use.
type Store struct {
	db   *bbolt.DB
	path string
	now  func() time.Time
	// writer names this opening of the file in the usage rows it writes
	// (outbox.go): a store restored from a backup, whose sequence went
	// back, or a copy opened by a second gateway, never makes an
	// identifier again.
	writer string
	// clerkOrder is LockClerkOrder's lock: one process holds a store
	// file, so a lock in memory is every writer's.
	clerkOrder proxy.ClerkOrderLock
}

// Open opens (or creates) the store at path, creates its buckets and checks
// its schema version, migrating a store of an older one first (which
// takes a while for a large store, and room on the disk for a second
// file). It fails after opts.Timeout if another process holds the file.
func Open(path string, opts Options) (*Store, error) {
	opts = opts.withDefaults()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: opts.Timeout, NoSync: opts.NoSync, NoGrowSync: opts.NoSync})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("bolt: open %s: the file is still locked after %s; another tollgate (or a bbolt tool) may hold it, and only one may use a store file: %w",
				path, opts.Timeout, err)
		}
		return nil, fmt.Errorf("bolt: open %s: %w", path, err)
	}
	fail := func(err error) (*Store, error) {
		_ = db.Close()
		dictCaches.Delete(db)
		return nil, fmt.Errorf("bolt: open %s: %w", path, err)
	}
	version, err := schemaOf(db)
	if err != nil {
		return fail(err)
	}
	switch {
	case version == 1 || version == 2:
		migrated, err := migrate(db, path, version, opts)
		if err != nil {
			return fail(fmt.Errorf("migrate schema %d to %d: %w", version, schemaVersion, err))
		}
		_ = db.Close()
		dictCaches.Delete(db)
		db = migrated
	case version == 3:
		if err := indexEvents(db, version, opts.Logger); err != nil {
			return fail(fmt.Errorf("migrate schema %d to %d: %w", version, schemaVersion, err))
		}
	case version > schemaVersion:
		return fail(fmt.Errorf("schema version %d, this tollgate reads %d: %w", version, schemaVersion, ErrUnsupportedVersion))
	}
	// Dirty marks wait this long for company in a group commit (dirty.go).
	db.MaxBatchDelay = markBatchDelay
	if err := db.Update(initialize); err != nil {
		return fail(err)
	}
	if err := loadDictSequence(db); err != nil {
		return fail(err)
	}
	return &Store{db: db, path: path, now: opts.Now, writer: newWriterID(), clerkOrder: proxy.NewClerkOrderLock()}, nil
}

// schemaOf reads the store's schema version: 0 for a new file.
func schemaOf(db *bbolt.DB) (uint64, error) {
	var version uint64
	err := db.View(func(tx *bbolt.Tx) error {
		meta := tx.Bucket([]byte(bucketMeta))
		if meta == nil {
			return nil
		}
		v := meta.Get([]byte(keySchema))
		if v == nil {
			return nil
		}
		if len(v) != 8 {
			return fmt.Errorf("schema version is %d bytes, want 8", len(v))
		}
		version = binary.BigEndian.Uint64(v)
		return nil
	})
	return version, err
}

// initialize creates the buckets every store has and sets the schema
// version of a new one.
func initialize(tx *bbolt.Tx) error {
	for _, name := range [...]string{bucketMeta, bucketCustomers, bucketAccounts, bucketEvents, bucketEventsByTime, bucketCursors} {
		if _, err := tx.CreateBucketIfNotExists([]byte(name)); err != nil {
			return fmt.Errorf("create bucket %s: %w", name, err)
		}
	}
	meta := tx.Bucket([]byte(bucketMeta))
	if meta.Get([]byte(keySchema)) == nil {
		return setSchema(meta, schemaVersion)
	}
	return nil
}

func setSchema(meta *bbolt.Bucket, version uint64) error {
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], version)
	if err := meta.Put([]byte(keySchema), buf[:]); err != nil {
		return fmt.Errorf("set schema version: %w", err)
	}
	return nil
}

// Path is the file the store was opened from.
func (s *Store) Path() string { return s.path }

// Close waits for open transactions to finish and closes the file. Calling
// it twice is harmless; every method fails (without panicking) afterwards.
func (s *Store) Close() error {
	defer dictCaches.Delete(s.db)
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("bolt: close %s: %w", s.path, err)
	}
	return nil
}

// Ping reports whether a read transaction works (readiness).
func (s *Store) Ping(ctx context.Context) error {
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		_, err := bucket(tx, bucketMeta)
		return err
	})
	if err != nil {
		return fmt.Errorf("bolt: ping: %w", err)
	}
	return nil
}

// Backup writes a consistent snapshot of the whole store to w (a file that
// Open can read). It holds one read transaction for the copy, which keeps
// writers from reclaiming pages meanwhile; the store is small.
func (s *Store) Backup(w io.Writer) (int64, error) {
	var n int64
	err := s.db.View(func(tx *bbolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	if err != nil {
		return n, fmt.Errorf("bolt: backup %s: %w", s.path, err)
	}
	return n, nil
}

// Counts is how many of each the store holds.
type Counts struct {
	Customers, Subjects, Events, Users int
}

// Counts reads the counters the writes keep (customers, subjects linked
// to one, users), and counts the processed events, which pruning bounds
// to stripe.EventRetention's worth (events.go): for `tollgate backup`'s
// check of a copy, never for serving.
func (s *Store) Counts(ctx context.Context) (Counts, error) {
	var c Counts
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		c.Customers = int(tagCount(tx, tagCustomers))
		c.Subjects = int(tagCount(tx, tagLinks))
		c.Users = int(tagCount(tx, tagUsers))
		b, err := bucket(tx, bucketEvents)
		if err != nil {
			return err
		}
		c.Events = b.Stats().KeyN
		return nil
	})
	if err != nil {
		return Counts{}, fmt.Errorf("bolt: counts: %w", err)
	}
	return c, nil
}

// SetCursor stores a resumable sync cursor (e.g. "sync_all" → the last
// subscription ID listed). An empty value removes it.
func (s *Store) SetCursor(ctx context.Context, name, value string) error {
	if name == "" {
		return errors.New("bolt: set cursor: empty name")
	}
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		b, err := bucket(tx, bucketCursors)
		if err != nil {
			return err
		}
		if value == "" {
			return b.Delete([]byte(name))
		}
		return b.Put([]byte(name), []byte(value))
	})
	if err != nil {
		return fmt.Errorf("bolt: set cursor %s: %w", name, err)
	}
	return nil
}

// Cursor returns a sync cursor ("" when unset).
func (s *Store) Cursor(ctx context.Context, name string) (string, error) {
	var value string
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		b, err := bucket(tx, bucketCursors)
		if err != nil {
			return err
		}
		value = string(b.Get([]byte(name)))
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("bolt: cursor %s: %w", name, err)
	}
	return value, nil
}

// view runs fn in a read transaction unless ctx is already done.
func (s *Store) view(ctx context.Context, fn func(*bbolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.View(fn)
}

// update runs fn in a read-write transaction unless ctx is already done.
// Never bbolt's Batch: its function may run twice.
func (s *Store) update(ctx context.Context, fn func(*bbolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.Update(fn)
}

// bucket returns a top-level bucket, or an error rather than a nil that
// would panic later.
func bucket(tx *bbolt.Tx, name string) (*bbolt.Bucket, error) {
	b := tx.Bucket([]byte(name))
	if b == nil {
		return nil, fmt.Errorf("bucket %s missing", name)
	}
	return b, nil
}

// versioned is a JSON record with a "v" field.
type versioned interface{ version() int }

// decodeRecord decodes a JSON record and checks its version.
func decodeRecord(data []byte, rec versioned) error {
	if err := json.Unmarshal(data, rec); err != nil {
		return fmt.Errorf("decode record: %w", err)
	}
	if v := rec.version(); v != recordVersion {
		return fmt.Errorf("record version %d, this tollgate reads %d: %w", v, recordVersion, ErrUnsupportedVersion)
	}
	return nil
}

// putRecord encodes a JSON record and stores it.
func putRecord(b *bbolt.Bucket, key string, rec versioned) error {
	data, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode record: %w", err)
	}
	return b.Put([]byte(key), data)
}

// utc normalises a time for storage (the zero time stays zero).
func utc(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}
