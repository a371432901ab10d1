package bolt

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	"go.etcd.io/bbolt"

	"github.com/tollgate/tollgate/proxy"
)

// Export is everything a store holds, record by record, for `tollgate
// store copy` (README, "Running several replicas"): each callback is
// called once per record, from one read transaction, so the copy is of
// one moment. A callback's error stops the walk and is returned.
type Export struct {
	Customer   func(st proxy.CustomerState, hadTrial bool) error
	User       func(u proxy.User) error
	Org        func(o proxy.Org) error
	Comp       func(c proxy.Comp) error
	Audit      func(e proxy.AuditEntry) error
	History    func(customerID string, h proxy.HistoryEntry) error
	Event      func(id string, at time.Time) error
	Cursor     func(name, value string) error
	Revocation func(r proxy.Revocation) error
	APIKey     func(k proxy.APIKey) error
	Dirty      func(m proxy.DirtyMark) error
	// ClerkVersion is each Clerk object's latest applied Clerk time
	// (OrderClerk): without it the copy would apply a late, older
	// message that the bbolt store refused.
	ClerkVersion func(key string, v proxy.ClerkVersion) error
}

// Export walks the store (see the type).
func (s *Store) Export(ctx context.Context, x Export) error {
	now := s.now()
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		each := func(name string, fn func(k, v []byte) error) error {
			b := optionalBucket(tx, name)
			if b == nil {
				return nil
			}
			return b.ForEach(func(k, v []byte) error {
				if v == nil {
					return nil // a nested bucket
				}
				if err := ctx.Err(); err != nil {
					return err
				}
				return fn(k, v)
			})
		}
		if err := each(bucketCustomers, func(k, _ []byte) error {
			rec, _, err := getCustomer(tx, string(k))
			if err != nil {
				return err
			}
			st := proxy.CustomerState{CustomerID: string(k), Email: rec.Email, Subscriptions: rec.Subscriptions, Deleted: rec.Deleted, SyncedAt: rec.SyncedAt}
			if rec.Subject != "" {
				if st.Subject, err = proxy.ParseSubject(rec.Subject); err != nil {
					return err
				}
			}
			return x.Customer(st, rec.HadTrial)
		}); err != nil {
			return fmt.Errorf("customers: %w", err)
		}
		if err := each(bucketAccounts, func(k, v []byte) error {
			a, err := decodeAccount(tx, v)
			if err != nil || !a.User {
				return err
			}
			return x.User(a.AsUser(string(k)))
		}); err != nil {
			return fmt.Errorf("users: %w", err)
		}
		if err := each(bucketOrgs, func(k, v []byte) error {
			var rec orgRecord
			if err := decodeRecord(v, &rec); err != nil {
				return err
			}
			return x.Org(proxy.Org{ID: string(k), Slug: rec.Slug, Name: rec.Name})
		}); err != nil {
			return fmt.Errorf("orgs: %w", err)
		}
		if err := each(bucketComps, func(k, _ []byte) error {
			c, _, err := getComp(tx, string(k))
			if err != nil {
				return err
			}
			return x.Comp(c)
		}); err != nil {
			return fmt.Errorf("comps: %w", err)
		}
		if err := each(bucketAudit, func(k, v []byte) error {
			var rec auditRecord
			if err := decodeRecord(v, &rec); err != nil {
				return err
			}
			e := proxy.AuditEntry{At: rec.At, Actor: rec.Actor, Action: rec.Action, Detail: rec.Detail}
			if rec.Subject != "" {
				var err error
				if e.Subject, err = proxy.ParseSubject(rec.Subject); err != nil {
					return err
				}
			}
			return x.Audit(e)
		}); err != nil {
			return fmt.Errorf("audit: %w", err)
		}
		if err := each(bucketHistory, func(k, v []byte) error {
			// The key is the customer ID, a NUL, the time (8 bytes) and
			// an ordered sequence number.
			cus := ""
			for j := range k {
				if k[j] == 0 {
					cus = string(k[:j])
					k = k[j+1:]
					break
				}
			}
			if cus == "" || len(k) < 8 {
				return fmt.Errorf("history key %q: %w", k, errCorrupt)
			}
			h, err := decodeHistory(tx, time.Unix(0, int64(binary.BigEndian.Uint64(k[:8]))).UTC(), v)
			if err != nil {
				return err
			}
			return x.History(cus, h)
		}); err != nil {
			return fmt.Errorf("history: %w", err)
		}
		if err := each(bucketEvents, func(k, v []byte) error {
			if len(v) != 8 {
				return fmt.Errorf("event %s: %w", k, errCorrupt)
			}
			return x.Event(string(k), time.Unix(0, int64(binary.BigEndian.Uint64(v))).UTC())
		}); err != nil {
			return fmt.Errorf("events: %w", err)
		}
		if err := each(bucketCursors, func(k, v []byte) error { return x.Cursor(string(k), string(v)) }); err != nil {
			return fmt.Errorf("cursors: %w", err)
		}
		if err := each(bucketRevocations, func(k, v []byte) error {
			var rec revocationRecord
			if err := decodeRecord(v, &rec); err != nil {
				return err
			}
			r := proxy.Revocation{Kind: proxy.RevocationKind(rec.Kind), ID: rec.ID, UserID: rec.UserID, OrgID: rec.OrgID, Role: rec.Role, At: rec.At, Expires: rec.Expires, Happened: rec.Happened}
			if r.Expired(now) {
				return nil
			}
			return x.Revocation(r)
		}); err != nil {
			return fmt.Errorf("revocations: %w", err)
		}
		if err := each(bucketAPIKeys, func(k, _ []byte) error {
			key, err := getAPIKey(tx.Bucket([]byte(bucketAPIKeys)), string(k))
			if err != nil {
				return err
			}
			return x.APIKey(key)
		}); err != nil {
			return fmt.Errorf("api keys: %w", err)
		}
		if err := each(bucketClerkVersions, func(k, v []byte) error {
			var rec clerkVersionRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("%s: %w", k, errCorrupt)
			}
			cv := proxy.ClerkVersion{Deleted: rec.Deleted}
			if rec.At != 0 {
				cv.At = time.UnixMilli(rec.At)
			}
			return x.ClerkVersion(string(k), cv)
		}); err != nil {
			return fmt.Errorf("clerk versions: %w", err)
		}
		b := optionalBucket(tx, bucketDirty)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, v := c.Seek([]byte{dirtyRecord}); k != nil && k[0] == dirtyRecord; k, v = c.Next() {
			m, err := decodeDirty(string(k[1:]), v)
			if err != nil {
				return err
			}
			if err := x.Dirty(m); err != nil {
				return fmt.Errorf("dirty marks: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("bolt: export: %w", err)
	}
	return nil
}
