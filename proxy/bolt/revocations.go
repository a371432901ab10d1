package bolt

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"go.etcd.io/bbolt"

	"github.com/tollgate/tollgate/proxy"
)

// The revocations bucket is created by its first write, like the admin
// buckets. Keys lead with the expiry, so the expired ones are a prefix of
// the bucket: a read seeks past them and a write prunes them.
//
//	revocations  expires (int64 BE nanos) + seq (BE)  → JSON {"v":1, kind, id, user_id, org_id, role, at, expires, happened}
//
// happened (a membership change's Clerk time) is left out when zero: a
// record written before it was kept reads as one without it.
const bucketRevocations = "revocations"

// Expiries the key can order: int64 nanoseconds from 1970 reach 2262.
var (
	minRevocationExpiry = time.Unix(0, 0)
	maxRevocationExpiry = time.Unix(0, 1<<63-1)
)

var _ proxy.RevocationStore = (*Store)(nil)

// revocationRecord is the revocations bucket's value.
type revocationRecord struct {
	V        int       `json:"v"`
	Kind     string    `json:"kind"`
	ID       string    `json:"id,omitempty"`
	UserID   string    `json:"user_id,omitempty"`
	OrgID    string    `json:"org_id,omitempty"`
	Role     string    `json:"role,omitempty"`
	At       time.Time `json:"at"`
	Expires  time.Time `json:"expires"`
	Happened time.Time `json:"happened,omitzero"`
}

func (r *revocationRecord) version() int { return r.V }

// AddRevocation implements proxy.RevocationStore: it records r, which must
// be valid (proxy.Revocation.Valid), and prunes the revocations expired by
// the store's clock. Each call adds one: the same event twice is kept
// twice, which changes no answer.
func (s *Store) AddRevocation(ctx context.Context, r proxy.Revocation) error {
	wrap := func(err error) error { return fmt.Errorf("bolt: add %s revocation: %w", r.Kind, err) }
	if err := r.Valid(); err != nil {
		return wrap(err)
	}
	if r.Expires.Before(minRevocationExpiry) || r.Expires.After(maxRevocationExpiry) {
		return wrap(fmt.Errorf("%w: expiry %s out of range", proxy.ErrInvalidRevocation, r.Expires))
	}
	rec := revocationRecord{V: recordVersion, Kind: string(r.Kind), ID: r.ID, UserID: r.UserID, OrgID: r.OrgID, Role: r.Role,
		At: r.At.UTC(), Expires: r.Expires.UTC(), Happened: utcOrZero(r.Happened)}
	now := s.now()
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		b, err := createdBucket(tx, bucketRevocations)
		if err != nil {
			return err
		}
		if err := pruneRevocations(b, now); err != nil {
			return err
		}
		if !r.Expired(now) {
			seq, err := b.NextSequence()
			if err != nil {
				return err
			}
			return putRecord(b, string(timeKey("", r.Expires, seq)), &rec)
		}
		return nil // expired already: the prune would take it next time
	})
	if err != nil {
		return wrap(err)
	}
	return nil
}

// pruneRevocations deletes the revocations expired at now: the keys before
// the first one expiring after now. They are gathered first, because
// deleting under a moving cursor skips keys.
func pruneRevocations(b *bbolt.Bucket, now time.Time) error {
	first := unexpiredKey(now)
	var expired [][]byte
	c := b.Cursor()
	for k, _ := c.First(); k != nil && bytes.Compare(k, first) < 0; k, _ = c.Next() {
		expired = append(expired, bytes.Clone(k))
	}
	for _, k := range expired {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// unexpiredKey is the smallest key of a revocation not expired at now (one
// expiring a nanosecond later).
func unexpiredKey(now time.Time) []byte {
	switch {
	case now.Before(minRevocationExpiry):
		return timeKey("", minRevocationExpiry, 0)
	case !now.Before(maxRevocationExpiry):
		return bytes.Repeat([]byte{0xff}, 17) // past every key: all expired
	}
	return timeKey("", now.Add(time.Nanosecond), 0)
}

// Revocations implements proxy.RevocationStore: the revocations not
// expired at now, in order of expiry (then of addition).
func (s *Store) Revocations(ctx context.Context, now time.Time) ([]proxy.Revocation, error) {
	var out []proxy.Revocation
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		b := optionalBucket(tx, bucketRevocations)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, v := c.Seek(unexpiredKey(now)); k != nil; k, v = c.Next() {
			var rec revocationRecord
			if err := decodeRecord(v, &rec); err != nil {
				return fmt.Errorf("revocation %x: %w", k, err)
			}
			r := proxy.Revocation{Kind: proxy.RevocationKind(rec.Kind), ID: rec.ID, UserID: rec.UserID, OrgID: rec.OrgID, Role: rec.Role,
				At: rec.At, Expires: rec.Expires, Happened: rec.Happened}
			if !r.Expired(now) {
				out = append(out, r)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("bolt: revocations: %w", err)
	}
	return out, nil
}

// utcOrZero is t in UTC, and the zero time as is (omitzero leaves it out).
func utcOrZero(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}
