package bolt

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"go.etcd.io/bbolt"

	"github.com/tollgate/tollgate/proxy"
)

// bucketClerkVersions holds, by proxy.ClerkUserKey/OrgKey/MembershipKey,
// the latest Clerk time applied to each Clerk object (proxy.ClerkVersion).
// A bucket of its own: no record's layout changed, and a migration copies
// it as it is (migrate.go, copyUnchanged).
const bucketClerkVersions = "clerk_versions"

type clerkVersionRecord struct {
	At      int64 `json:"at"` // Unix milliseconds, Clerk's clock; 0: none
	Deleted bool  `json:"d,omitempty"`
}

// OrderClerk decides, in one transaction with the version it reads and
// writes, whether a Clerk message about key made at at is applied
// (proxy.ClerkVersion.Admit), and keeps the version that follows.
func (s *Store) OrderClerk(ctx context.Context, key string, at time.Time, deleted bool) (bool, error) {
	var applied bool
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte(bucketClerkVersions))
		if err != nil {
			return err
		}
		var v proxy.ClerkVersion
		if raw := b.Get([]byte(key)); raw != nil {
			var rec clerkVersionRecord
			if err := json.Unmarshal(raw, &rec); err != nil {
				return fmt.Errorf("decode: %w", err)
			}
			v = proxy.ClerkVersion{Deleted: rec.Deleted}
			if rec.At != 0 {
				v.At = time.UnixMilli(rec.At)
			}
		}
		next, ok := v.Admit(at, deleted)
		applied = ok
		if !ok {
			return nil
		}
		rec := clerkVersionRecord{Deleted: next.Deleted}
		if !next.At.IsZero() {
			rec.At = next.At.UnixMilli()
		}
		enc, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		return b.Put([]byte(key), enc)
	})
	if err != nil {
		return false, fmt.Errorf("bolt: order clerk %s: %w", key, err)
	}
	return applied, nil
}

// LockClerkOrder holds one Clerk message from its ordering to its writes
// (proxy/clerk.OrderStore). Only one process opens a store file (bbolt's
// file lock), so the lock is this store's, in memory.
func (s *Store) LockClerkOrder(ctx context.Context) (func(), error) {
	unlock, err := s.clerkOrder.Lock(ctx)
	if err != nil {
		return nil, fmt.Errorf("bolt: %w", err)
	}
	return unlock, nil
}
