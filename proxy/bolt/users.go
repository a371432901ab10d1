package bolt

import (
	"context"
	"fmt"
	"slices"
	"time"

	"go.etcd.io/bbolt"

	"github.com/tollgate/tollgate/proxy"
)

// userRecord is the users bucket's value.
type userRecord struct {
	V         int       `json:"v"`
	Email     string    `json:"email,omitempty"`
	FirstSeen time.Time `json:"first_seen,omitzero"`
	LastSeen  time.Time `json:"last_seen,omitzero"`
	OrgIDs    []string  `json:"org_ids,omitempty"`
}

func (r *userRecord) version() int { return r.V }

func (r *userRecord) user(id string) proxy.User {
	return proxy.User{ID: id, Email: r.Email, FirstSeen: r.FirstSeen, LastSeen: r.LastSeen, OrgIDs: slices.Clone(r.OrgIDs)}
}

// seen widens [FirstSeen, LastSeen] to include at.
func (r *userRecord) seen(at time.Time) {
	if at.IsZero() {
		return
	}
	at = at.UTC()
	if r.FirstSeen.IsZero() || at.Before(r.FirstSeen) {
		r.FirstSeen = at
	}
	if at.After(r.LastSeen) {
		r.LastSeen = at
	}
}

func getUser(b *bbolt.Bucket, id string) (rec userRecord, ok bool, err error) {
	data := b.Get([]byte(id))
	if data == nil {
		return rec, false, nil
	}
	if err := decodeRecord(data, &rec); err != nil {
		return userRecord{}, false, fmt.Errorf("user %s: %w", id, err)
	}
	return rec, true, nil
}

func putUser(b *bbolt.Bucket, id string, rec *userRecord) error {
	rec.V = recordVersion
	if err := putRecord(b, id, rec); err != nil {
		return fmt.Errorf("user %s: %w", id, err)
	}
	return nil
}

// RecordSeen records a batch of sightings (user ID → when) in one
// transaction: first_seen is set once (the earliest), last_seen only moves
// forward. IDs that are not Clerk user IDs (proxy.Subject.Valid) are
// ignored.
func (s *Store) RecordSeen(ctx context.Context, seen map[string]time.Time) error {
	if len(seen) == 0 {
		return nil
	}
	ids := make([]string, 0, len(seen))
	for id := range seen {
		if (proxy.Subject{Kind: proxy.SubjectUser, ID: id}).Valid() {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids) // sequential inserts touch fewer pages
	now := s.now()
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		b, err := bucket(tx, bucketUsers)
		if err != nil {
			return err
		}
		for _, id := range ids {
			rec, _, err := getUser(b, id)
			if err != nil {
				return err
			}
			rec.seen(seen[id])
			if err := putUser(b, id, &rec); err != nil {
				return err
			}
			if err := seenChanged(tx, id, &rec, now); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("bolt: record seen (%d users): %w", len(ids), err)
	}
	return nil
}

// PutUser stores what Clerk says about a user (email, organisations). The
// stored first/last seen are kept, widened by u's if it carries any. A nil
// u.OrgIDs keeps the organisations on record: Clerk's user events carry
// none (memberships come in their own, PutMembership), and keeping them in
// the same transaction loses no membership that lands in between.
func (s *Store) PutUser(ctx context.Context, u proxy.User) error {
	if err := checkSubject(proxy.Subject{Kind: proxy.SubjectUser, ID: u.ID}); err != nil {
		return fmt.Errorf("bolt: put user: %w", err)
	}
	err := s.update(ctx, func(tx *bbolt.Tx) error { return s.putUser(tx, u) })
	if err != nil {
		return fmt.Errorf("bolt: put user %s: %w", u.ID, err)
	}
	return nil
}

// PutUsers stores many users in one transaction, each as PutUser would:
// for bulk loads (tollgate-gen).
func (s *Store) PutUsers(ctx context.Context, users []proxy.User) error {
	for _, u := range users {
		if err := checkSubject(proxy.Subject{Kind: proxy.SubjectUser, ID: u.ID}); err != nil {
			return fmt.Errorf("bolt: put users: %w", err)
		}
	}
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		for _, u := range users {
			if err := s.putUser(tx, u); err != nil {
				return fmt.Errorf("user %s: %w", u.ID, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("bolt: put %d users: %w", len(users), err)
	}
	return nil
}

func (s *Store) putUser(tx *bbolt.Tx, u proxy.User) error {
	b, err := bucket(tx, bucketUsers)
	if err != nil {
		return err
	}
	rec, _, err := getUser(b, u.ID)
	if err != nil {
		return err
	}
	rec.Email = u.Email
	if u.OrgIDs != nil {
		rec.OrgIDs = slices.Clone(u.OrgIDs)
	}
	rec.seen(u.FirstSeen)
	rec.seen(u.LastSeen)
	if err := putUser(b, u.ID, &rec); err != nil {
		return err
	}
	return reindex(tx, proxy.Subject{Kind: proxy.SubjectUser, ID: u.ID}, s.now())
}

// DeleteUser forgets a user (no error if unknown). Billing links are left
// alone: the Stripe customer outlives the Clerk user.
func (s *Store) DeleteUser(ctx context.Context, userID string) error {
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		b, err := bucket(tx, bucketUsers)
		if err != nil {
			return err
		}
		if err := b.Delete([]byte(userID)); err != nil {
			return err
		}
		subject := proxy.Subject{Kind: proxy.SubjectUser, ID: userID}
		if err := revokeKeysOfTx(tx, subject, s.now()); err != nil {
			return err
		}
		return reindex(tx, subject, s.now())
	})
	if err != nil {
		return fmt.Errorf("bolt: delete user %s: %w", userID, err)
	}
	return nil
}

// User returns one user, or an error wrapping proxy.ErrNotFound.
func (s *Store) User(ctx context.Context, userID string) (proxy.User, error) {
	var u proxy.User
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		b, err := bucket(tx, bucketUsers)
		if err != nil {
			return err
		}
		rec, ok, err := getUser(b, userID)
		if err != nil {
			return err
		}
		if !ok {
			return proxy.ErrNotFound
		}
		u = rec.user(userID)
		return nil
	})
	if err != nil {
		return proxy.User{}, fmt.Errorf("bolt: user %s: %w", userID, err)
	}
	return u, nil
}

// Users returns up to limit users with IDs after after (""), in ID order.
// limit <= 0 or above proxy.MaxUsersPage means proxy.MaxUsersPage.
func (s *Store) Users(ctx context.Context, after string, limit int) ([]proxy.User, error) {
	if limit <= 0 || limit > proxy.MaxUsersPage {
		limit = proxy.MaxUsersPage
	}
	var users []proxy.User
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		users = nil
		b, err := bucket(tx, bucketUsers)
		if err != nil {
			return err
		}
		c := b.Cursor()
		k, v := c.Seek([]byte(after))
		if k != nil && string(k) == after {
			k, v = c.Next()
		}
		for ; k != nil && len(users) < limit; k, v = c.Next() {
			var rec userRecord
			if err := decodeRecord(v, &rec); err != nil {
				return fmt.Errorf("user %s: %w", k, err)
			}
			users = append(users, rec.user(string(k)))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("bolt: users after %q: %w", after, err)
	}
	return users, nil
}
