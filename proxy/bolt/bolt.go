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
//	customers         Stripe customer ID              → JSON {"v":1, subject, email, subscriptions, had_trial, deleted, synced_at}
//	subjects          "user:…" / "org:…"              → Stripe customer ID
//	events            Stripe event ID                 → processed-at, unix nanoseconds, uint64 big-endian
//	cursors           cursor name                     → cursor value (raw string)
//	users             Clerk user ID                   → JSON {"v":1, email, first_seen, last_seen, org_ids}
//	orgs              Clerk organisation ID           → JSON {"v":1, slug, name} (orgs.go)
//	comps             comp ID                         → JSON comp (comps.go)
//	comps_by_subject  subject NUL comp ID             → empty: the index of a subject's comps (comps.go)
//	audit             at + seq                        → JSON audit entry (comps.go)
//	history           customer ID NUL at + seq        → JSON subscription change (comps.go)
//	revocations       expires + seq                   → JSON revocation (revocations.go)
//	listed            "user:…" / "org:…"              → JSON what the listing index knows of it (index.go)
//	listing           sort, tag, NUL, value, subject  → statuses NUL plans: the listing index (index.go)
//	listing_counts    tag                             → subjects in that list, uint64 big-endian (index.go)
//	stats             dashboard counter key           → count, amount: the dashboard's counters (stats.go)
//
// Every JSON record carries "v"; a record written by a newer tollgate is an
// error (ErrUnsupportedVersion), never silently misread. Records are decoded
// inside their transaction, so nothing returned aliases bbolt's memory.
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
	"time"

	"go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// ErrUnsupportedVersion is returned for a store or a record written by a
// newer tollgate (or otherwise carrying a version this one does not know).
var ErrUnsupportedVersion = errors.New("unsupported version")

const (
	// schemaVersion is meta "schema". 2 added the listing index and the
	// dashboard's counters (index.go, stats.go); Open builds them for a
	// store of version 1 (migrate.go).
	schemaVersion = 2
	recordVersion = 1 // "v" of every JSON record

	bucketMeta      = "meta"
	bucketCustomers = "customers"
	bucketSubjects  = "subjects"
	bucketEvents    = "events"
	bucketCursors   = "cursors"
	bucketUsers     = "users"

	keySchema = "schema"
)

// Options tune Open. The zero value is usable.
type Options struct {
	// Timeout bounds the wait for the file lock, so a second process on
	// the same file fails instead of hanging. Default 1s.
	Timeout time.Duration
	// Now is the clock for processed-at times. Default time.Now.
	Now func() time.Time
	// NoSync skips the fsync of each commit: for bulk loads into a new
	// file (tollgate-gen) only, as a crash may then lose the file.
	NoSync bool
}

func (o Options) withDefaults() Options {
	if o.Timeout <= 0 {
		o.Timeout = time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Store is the bbolt-backed store. Its methods are safe for concurrent use.
type Store struct {
	db   *bbolt.DB
	path string
	now  func() time.Time
}

// Open opens (or creates) the store at path, creates its buckets and checks
// its schema version. It fails after opts.Timeout if another process holds
// the file.
func Open(path string, opts Options) (*Store, error) {
	opts = opts.withDefaults()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: opts.Timeout, NoSync: opts.NoSync})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("bolt: open %s: the file is still locked after %s; another tollgate (or a bbolt tool) may hold it, and only one may use a store file: %w",
				path, opts.Timeout, err)
		}
		return nil, fmt.Errorf("bolt: open %s: %w", path, err)
	}
	db.MaxBatchDelay = markBatchDelay
	if err := db.Update(func(tx *bbolt.Tx) error { return initialize(tx, opts.Now()) }); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("bolt: open %s: %w", path, err)
	}
	return &Store{db: db, path: path, now: opts.Now}, nil
}

// initialize creates every bucket and checks or sets the schema version,
// migrating an older store's records.
func initialize(tx *bbolt.Tx, now time.Time) error {
	for _, name := range [...]string{bucketMeta, bucketCustomers, bucketSubjects, bucketEvents, bucketCursors, bucketUsers} {
		if _, err := tx.CreateBucketIfNotExists([]byte(name)); err != nil {
			return fmt.Errorf("create bucket %s: %w", name, err)
		}
	}
	meta := tx.Bucket([]byte(bucketMeta))
	v := meta.Get([]byte(keySchema))
	if v == nil {
		return setSchema(meta, schemaVersion)
	}
	if len(v) != 8 {
		return fmt.Errorf("schema version is %d bytes, want 8", len(v))
	}
	got := binary.BigEndian.Uint64(v)
	switch {
	case got == schemaVersion:
		return nil
	case got == 1:
		if err := migrateToListing(tx, now); err != nil {
			return fmt.Errorf("migrate schema 1 to %d: %w", schemaVersion, err)
		}
		return setSchema(meta, schemaVersion)
	}
	return fmt.Errorf("schema version %d, this tollgate reads %d: %w", got, schemaVersion, ErrUnsupportedVersion)
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

// Counts is how many keys each bucket holds, for metrics.
type Counts struct {
	Customers, Subjects, Events, Users int
}

// Counts counts the keys of the main buckets in one read transaction.
func (s *Store) Counts(ctx context.Context) (Counts, error) {
	var c Counts
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		for _, x := range [...]struct {
			name string
			n    *int
		}{{bucketCustomers, &c.Customers}, {bucketSubjects, &c.Subjects}, {bucketEvents, &c.Events}, {bucketUsers, &c.Users}} {
			b, err := bucket(tx, x.name)
			if err != nil {
				return err
			}
			*x.n = b.Stats().KeyN
		}
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
