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

// A user is the user part of an account record (accounts.go): what Clerk
// said (email, organisations) and when the gateway saw them.

// seenPerTx bounds the users one transaction of RecordSeen writes. A
// transaction holds every page it changes in memory until it commits, and
// in a large store each user's record and last-seen key sit on pages of
// their own: 35,000 users seen within one flush made a single transaction
// hold 200 MB.
const seenPerTx = 1000

// RecordSeen records a batch of sightings (user ID → when), seenPerTx
// users to a transaction, in the order of their IDs: first_seen is set
// once (the earliest), last_seen only moves forward, so writing a
// sighting again changes nothing. IDs that are not Clerk user IDs
// (proxy.Subject.Valid) are ignored.
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
	slices.Sort(ids) // sequential writes touch fewer pages
	for chunk := range slices.Chunk(ids, seenPerTx) {
		if err := s.recordSeen(ctx, chunk, seen); err != nil {
			return fmt.Errorf("bolt: record seen (%d users): %w", len(ids), err)
		}
	}
	return nil
}

func (s *Store) recordSeen(ctx context.Context, ids []string, seen map[string]time.Time) error {
	now := s.now()
	return s.update(ctx, func(tx *bbolt.Tx) error {
		for _, id := range ids {
			listed := false
			err := editAccount(tx, id, func(a *account) {
				a.Seen(seen[id])
				listed = a.List != nil
			})
			if err != nil {
				return err
			}
			// A listed user's keys moved with the record; a new one is
			// listed in full.
			if !listed {
				if err := reindex(tx, proxy.Subject{Kind: proxy.SubjectUser, ID: id}, now); err != nil {
					return err
				}
			}
		}
		return nil
	})
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
	err := s.update(ctx, func(tx *bbolt.Tx) error { return s.putUser(tx, u, true) })
	if err != nil {
		return fmt.Errorf("bolt: put user %s: %w", u.ID, err)
	}
	return nil
}

// PutUsers stores many users in one transaction, each as PutUser would:
// for bulk loads.
func (s *Store) PutUsers(ctx context.Context, users []proxy.User) error {
	for _, u := range users {
		if err := checkSubject(proxy.Subject{Kind: proxy.SubjectUser, ID: u.ID}); err != nil {
			return fmt.Errorf("bolt: put users: %w", err)
		}
	}
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		for _, u := range users {
			if err := s.putUser(tx, u, true); err != nil {
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

// putUser stores u and, with relist, reindexes the user (Load leaves that
// to the customer that follows).
func (s *Store) putUser(tx *bbolt.Tx, u proxy.User, relist bool) error {
	err := editAccount(tx, u.ID, func(a *account) { a.PutUser(u) })
	if err != nil || !relist {
		return err
	}
	return reindex(tx, proxy.Subject{Kind: proxy.SubjectUser, ID: u.ID}, s.now())
}

// DeleteUser forgets a user (no error if unknown). Billing links are left
// alone: the Stripe customer outlives the Clerk user.
func (s *Store) DeleteUser(ctx context.Context, userID string) error {
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		subject := proxy.Subject{Kind: proxy.SubjectUser, ID: userID}
		if err := revokeKeysOfTx(tx, subject, s.now()); err != nil {
			return err
		}
		if _, ok, err := getAccount(tx, userID); err != nil || !ok {
			return err
		}
		err := editAccount(tx, userID, (*account).ForgetUser)
		if err != nil {
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
		a, ok, err := getAccount(tx, userID)
		if err != nil {
			return err
		}
		if !ok || !a.User {
			return proxy.ErrNotFound
		}
		u = a.AsUser(userID)
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
		b := optionalBucket(tx, bucketAccounts)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		k, v := c.Seek([]byte(max(after, "user_")))
		if k != nil && string(k) == after {
			k, v = c.Next()
		}
		for ; k != nil && len(users) < limit; k, v = c.Next() {
			a, err := decodeAccount(tx, v)
			if err != nil {
				return fmt.Errorf("account %s: %w", k, err)
			}
			if a.User {
				users = append(users, a.AsUser(string(k)))
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("bolt: users after %q: %w", after, err)
	}
	return users, nil
}

// Load stores users and customer states in one transaction, each as
// PutUser and CommitCustomer (without an event) would: for bulk loads
// (tollgate-gen, tests). It writes subject by subject in ID order, a
// user before its customer, so that a load of new subjects in the order
// of their IDs appends to every bucket keyed by them and fills its pages.
func (s *Store) Load(ctx context.Context, users []proxy.User, states []proxy.CustomerState) error {
	type item struct {
		id    string
		user  *proxy.User
		state *proxy.CustomerState
	}
	items := make([]item, 0, len(users)+len(states))
	for i := range users {
		if err := checkSubject(proxy.Subject{Kind: proxy.SubjectUser, ID: users[i].ID}); err != nil {
			return fmt.Errorf("bolt: load: %w", err)
		}
		items = append(items, item{id: users[i].ID, user: &users[i]})
	}
	for i := range states {
		st := &states[i]
		if err := st.Check(); err != nil {
			return fmt.Errorf("bolt: load customer %q: %w", st.CustomerID, err)
		}
		// A customer of nobody goes after every subject ("~" sorts last).
		id := "~" + st.CustomerID
		if st.Subject.ID != "" {
			id = st.Subject.ID
		}
		items = append(items, item{id: id, state: st})
	}
	slices.SortStableFunc(items, func(a, b item) int {
		if c := strings.Compare(a.id, b.id); c != 0 {
			return c
		}
		return bool2int(a.user == nil) - bool2int(b.user == nil)
	})
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		for i, it := range items {
			if it.user != nil {
				// A customer of the same subject next lists it once.
				relist := i+1 == len(items) || items[i+1].id != it.id
				if err := s.putUser(tx, *it.user, relist); err != nil {
					return fmt.Errorf("user %s: %w", it.id, err)
				}
				continue
			}
			if _, _, err := s.commit(tx, *it.state, ""); err != nil {
				return fmt.Errorf("customer %s: %w", it.state.CustomerID, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("bolt: load %d users and %d customers: %w", len(users), len(states), err)
	}
	return nil
}

func bool2int(b bool) int {
	if b {
		return 1
	}
	return 0
}
