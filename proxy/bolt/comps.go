package bolt

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.etcd.io/bbolt"

	"github.com/tollgate/tollgate/proxy"
)

// The admin buckets are created by their first write (Open's initialize
// predates them), so a read treats a missing one as empty.
//
//	comps             comp ID                          → JSON {"v":1, subject, plan, expires_at, by, reason, created_at, revoked, …}
//	comps_by_subject  "user:…"/"org:…" NUL comp ID     → empty (index)
//	audit             at (int64 BE nanos) + seq (BE)   → JSON {"v":1, at, actor, action, subject, detail}
//	history           customer ID NUL at + seq         → JSON {"v":1, at, subscription_id, plan, status, period_end, cancel_at_period_end}
const (
	bucketComps          = "comps"
	bucketCompsBySubject = "comps_by_subject"
	bucketAudit          = "audit"
	bucketHistory        = "history"
)

// createdBucket returns a top-level bucket, creating it if needed (write
// transactions only).
func createdBucket(tx *bbolt.Tx, name string) (*bbolt.Bucket, error) {
	b, err := tx.CreateBucketIfNotExists([]byte(name))
	if err != nil {
		return nil, fmt.Errorf("create bucket %s: %w", name, err)
	}
	return b, nil
}

// optionalBucket returns a top-level bucket or nil when it was never
// created: read it as empty.
func optionalBucket(tx *bbolt.Tx, name string) *bbolt.Bucket { return tx.Bucket([]byte(name)) }

// compRecord is the comps bucket's value.
type compRecord struct {
	V            int       `json:"v"`
	Subject      string    `json:"subject"`
	Plan         string    `json:"plan"`
	ExpiresAt    time.Time `json:"expires_at"`
	By           string    `json:"by,omitempty"`
	Reason       string    `json:"reason,omitempty"`
	CreatedAt    time.Time `json:"created_at,omitzero"`
	Revoked      bool      `json:"revoked,omitempty"`
	RevokedAt    time.Time `json:"revoked_at,omitzero"`
	RevokedBy    string    `json:"revoked_by,omitempty"`
	RevokeReason string    `json:"revoke_reason,omitempty"`
}

func (r *compRecord) version() int { return r.V }

func (r *compRecord) comp(id string) (proxy.Comp, error) {
	subject, err := proxy.ParseSubject(r.Subject)
	if err != nil {
		return proxy.Comp{}, fmt.Errorf("comp %s: %w", id, err)
	}
	return proxy.Comp{ID: id, Subject: subject, Plan: r.Plan, ExpiresAt: r.ExpiresAt, By: r.By, Reason: r.Reason, CreatedAt: r.CreatedAt,
		Revoked: r.Revoked, RevokedAt: r.RevokedAt, RevokedBy: r.RevokedBy, RevokeReason: r.RevokeReason}, nil
}

func compKey(subject proxy.Subject, id string) []byte { return []byte(subject.String() + "\x00" + id) }

func getComp(tx *bbolt.Tx, id string) (proxy.Comp, bool, error) {
	b := optionalBucket(tx, bucketComps)
	if b == nil {
		return proxy.Comp{}, false, nil
	}
	data := b.Get([]byte(id))
	if data == nil {
		return proxy.Comp{}, false, nil
	}
	var rec compRecord
	if err := decodeRecord(data, &rec); err != nil {
		return proxy.Comp{}, false, fmt.Errorf("comp %s: %w", id, err)
	}
	c, err := rec.comp(id)
	return c, err == nil, err
}

// PutComp stores a comp: c.ID (see proxy.NewCompID), a valid Subject, a Plan and
// ExpiresAt are required; CreatedAt defaults to now. Putting an existing ID
// again replaces that comp (its subject cannot change). The subject's
// entitlements change: the caller drops it from its cache.
func (s *Store) PutComp(ctx context.Context, c proxy.Comp) error {
	wrap := func(err error) error { return fmt.Errorf("bolt: put comp %s: %w", c.ID, err) }
	if err := c.Check(); err != nil {
		return wrap(err)
	}
	if c.CreatedAt.IsZero() {
		c.CreatedAt = s.now()
	}
	rec := compRecord{V: recordVersion, Subject: c.Subject.String(), Plan: c.Plan, ExpiresAt: utc(c.ExpiresAt), By: c.By, Reason: c.Reason,
		CreatedAt: utc(c.CreatedAt), Revoked: c.Revoked, RevokedAt: utc(c.RevokedAt), RevokedBy: c.RevokedBy, RevokeReason: c.RevokeReason}
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		old, ok, err := getComp(tx, c.ID)
		if err != nil {
			return err
		}
		if ok {
			if err := c.Replaces(&old); err != nil {
				return err
			}
		}
		comps, err := createdBucket(tx, bucketComps)
		if err != nil {
			return err
		}
		index, err := createdBucket(tx, bucketCompsBySubject)
		if err != nil {
			return err
		}
		if err := putRecord(comps, c.ID, &rec); err != nil {
			return err
		}
		if err := index.Put(compKey(c.Subject, c.ID), nil); err != nil {
			return err
		}
		return reindex(tx, c.Subject, s.now())
	})
	if err != nil {
		return wrap(err)
	}
	return nil
}

// Comp returns one comp, or an error wrapping proxy.ErrNotFound.
func (s *Store) Comp(ctx context.Context, id string) (proxy.Comp, error) {
	var c proxy.Comp
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		var ok bool
		var err error
		c, ok, err = getComp(tx, id)
		if err == nil && !ok {
			err = proxy.ErrNotFound
		}
		return err
	})
	if err != nil {
		return proxy.Comp{}, fmt.Errorf("bolt: comp %s: %w", id, err)
	}
	return c, nil
}

// RevokeComp revokes a comp, recording by whom and why. Revoking a revoked
// comp changes nothing; an unknown one is an error wrapping
// proxy.ErrNotFound. The subject's entitlements change: the caller drops it
// from its cache.
func (s *Store) RevokeComp(ctx context.Context, id, by, reason string) error {
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		c, ok, err := getComp(tx, id)
		if err != nil {
			return err
		}
		if !ok {
			return proxy.ErrNotFound
		}
		if c.Revoked {
			return nil
		}
		comps, err := createdBucket(tx, bucketComps)
		if err != nil {
			return err
		}
		rec := compRecord{V: recordVersion, Subject: c.Subject.String(), Plan: c.Plan, ExpiresAt: utc(c.ExpiresAt), By: c.By, Reason: c.Reason,
			CreatedAt: utc(c.CreatedAt), Revoked: true, RevokedAt: utc(s.now()), RevokedBy: by, RevokeReason: reason}
		if err := putRecord(comps, id, &rec); err != nil {
			return err
		}
		return reindex(tx, c.Subject, s.now())
	})
	if err != nil {
		return fmt.Errorf("bolt: revoke comp %s: %w", id, err)
	}
	return nil
}

// Comps returns every comp of a subject, revoked and expired ones included,
// oldest first.
func (s *Store) Comps(ctx context.Context, subject proxy.Subject) ([]proxy.Comp, error) {
	var comps []proxy.Comp
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		var err error
		comps, err = compsOf(tx, subject)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("bolt: comps of %s: %w", subject, err)
	}
	return comps, nil
}

// compsOf reads a subject's comps through the index, oldest first.
func compsOf(tx *bbolt.Tx, subject proxy.Subject) ([]proxy.Comp, error) {
	index := optionalBucket(tx, bucketCompsBySubject)
	if index == nil {
		return nil, nil
	}
	prefix := []byte(subject.String() + "\x00")
	var out []proxy.Comp
	c := index.Cursor()
	for k, _ := c.Seek(prefix); k != nil && strings.HasPrefix(string(k), string(prefix)); k, _ = c.Next() {
		id := string(k[len(prefix):])
		comp, ok, err := getComp(tx, id)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("comp index %q names a missing comp", k)
		}
		out = append(out, comp)
	}
	slices.SortStableFunc(out, func(a, b proxy.Comp) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, nil
}

// withComps puts the subject's comps on ents (proxy.WithComps).
func withComps(tx *bbolt.Tx, subject proxy.Subject, ents *proxy.Entitlements) (*proxy.Entitlements, error) {
	comps, err := compsOf(tx, subject)
	if err != nil {
		return ents, err
	}
	return proxy.WithComps(ents, subject, comps), nil
}
