package bolt

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"

	"go.etcd.io/bbolt"

	"github.com/tollgate/tollgate/proxy"
)

// accountOf reads what the store records of one subject in tx; ok is
// false when it records nothing (no user record, no customer, no comp).
func accountOf(tx *bbolt.Tx, subject proxy.Subject) (proxy.Account, bool, error) {
	a := proxy.Account{Entitlements: proxy.Entitlements{Subject: subject}}
	if subject.Kind == proxy.SubjectUser {
		users, err := bucket(tx, bucketUsers)
		if err != nil {
			return proxy.Account{}, false, err
		}
		rec, ok, err := getUser(users, subject.ID)
		if err != nil {
			return proxy.Account{}, false, err
		}
		if ok {
			u := rec.user(subject.ID)
			a.User = &u
		}
	}
	customerID, cust, linked, err := linkedCustomer(tx, subject)
	if err != nil {
		return proxy.Account{}, false, err
	}
	if linked {
		a.CustomerID, a.CustomerEmail, a.SyncedAt = customerID, cust.Email, cust.SyncedAt
		a.Subscriptions = fromRecords(cust.Subscriptions)
	}
	if a.Comps, err = compsOf(tx, subject); err != nil {
		return proxy.Account{}, false, err
	}
	return a, a.User != nil || linked || len(a.Comps) > 0, nil
}

// keyStream walks one bucket's keys as subject keys ("org:…", "user:…"),
// in order, without repeats.
type keyStream struct {
	cur  string // current subject key; "" when done
	next func() ([]byte, []byte)
	conv func(k []byte) (string, bool) // bucket key → subject key; false: past this stream's range
}

func (s *keyStream) advance(k []byte) {
	for ; k != nil; k, _ = s.next() {
		key, ok := s.conv(k)
		if !ok {
			break
		}
		if key != s.cur {
			s.cur = key
			return
		}
	}
	s.cur = ""
}

// subjectStreams returns the sorted streams of every subject key after
// after: users (by Clerk user ID), subjects (linked to a customer) and
// comp holders.
func subjectStreams(tx *bbolt.Tx, after string) ([]*keyStream, error) {
	var streams []*keyStream
	add := func(b *bbolt.Bucket, seek []byte, first bool, conv func([]byte) (string, bool)) {
		if b == nil {
			return
		}
		c := b.Cursor()
		s := &keyStream{next: func() ([]byte, []byte) { return c.Next() }, conv: conv}
		var k []byte
		if first {
			k, _ = c.First()
		} else {
			k, _ = c.Seek(seek)
		}
		for k != nil {
			key, ok := conv(k)
			if !ok || key > after {
				break
			}
			k, _ = c.Next()
		}
		s.advance(k)
		if s.cur != "" {
			streams = append(streams, s)
		}
	}
	users, err := bucket(tx, bucketUsers)
	if err != nil {
		return nil, err
	}
	const userPrefix = string(proxy.SubjectUser) + ":"
	switch {
	case after < userPrefix:
		add(users, nil, true, func(k []byte) (string, bool) { return userPrefix + string(k), true })
	case strings.HasPrefix(after, userPrefix):
		add(users, []byte(after[len(userPrefix):]), false, func(k []byte) (string, bool) { return userPrefix + string(k), true })
	}
	subjects, err := bucket(tx, bucketSubjects)
	if err != nil {
		return nil, err
	}
	add(subjects, []byte(after), after == "", func(k []byte) (string, bool) { return string(k), true })
	add(optionalBucket(tx, bucketCompsBySubject), []byte(after+"\x01"), after == "", func(k []byte) (string, bool) {
		subject, _, ok := bytes.Cut(k, []byte{0})
		return string(subject), ok
	})
	return streams, nil
}

// ListUsers lists subjects in a stable order (organisations, then users,
// each by ID): every user tollgate has recorded (sign-ins, Clerk webhooks)
// and every user or organisation with a Stripe customer or a comp,
// summarised under f.Policy at the store's now (proxy.Account.Summary) and
// filtered (proxy.UserFilter.Match). next is the cursor for the following
// page (f.After), "" after the last one. The cursor is opaque.
func (s *Store) ListUsers(ctx context.Context, f proxy.UserFilter) ([]proxy.UserSummary, string, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	f.Limit = min(f.Limit, proxy.MaxUsersPage)
	now := s.now()
	var (
		out  []proxy.UserSummary
		next string
	)
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		out, next = nil, ""
		streams, err := subjectStreams(tx, f.After)
		if err != nil {
			return err
		}
		last := ""
		for len(streams) > 0 {
			key := slices.MinFunc(streams, func(a, b *keyStream) int { return cmp.Compare(a.cur, b.cur) }).cur
			streams = slices.DeleteFunc(streams, func(st *keyStream) bool {
				if st.cur == key {
					k, _ := st.next()
					st.advance(k)
				}
				return st.cur == ""
			})
			subject, err := proxy.ParseSubject(key)
			if err != nil {
				return err
			}
			a, ok, err := accountOf(tx, subject)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			u := a.Summary(f.Policy, now)
			if !f.Match(&u) {
				continue
			}
			if len(out) == f.Limit {
				next = last // there is at least one more
				return nil
			}
			out = append(out, u)
			last = key
		}
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("bolt: list users: %w", err)
	}
	return out, next, nil
}

// UserDetail reads what the store records of one subject (its account:
// user record, customer, subscriptions, every comp) with its customer's
// subscription history and its audit trail, in one consistent read. limit
// bounds History and Audit (as for AuditLog). An unknown subject is an
// error wrapping proxy.ErrNotFound.
func (s *Store) UserDetail(ctx context.Context, subject proxy.Subject, limit int) (proxy.UserDetail, error) {
	var d proxy.UserDetail
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		if err := checkSubject(subject); err != nil {
			return fmt.Errorf("%w: %w", proxy.ErrNotFound, err)
		}
		a, ok, err := accountOf(tx, subject)
		if err != nil {
			return err
		}
		if !ok {
			return proxy.ErrNotFound
		}
		d = proxy.UserDetail{Account: a}
		if d.History, err = historyOf(tx, a.CustomerID, limit); err != nil {
			return err
		}
		d.Audit, err = auditOf(tx, subject, limit)
		return err
	})
	if err != nil {
		return proxy.UserDetail{}, fmt.Errorf("bolt: user detail %s: %w", subject, err)
	}
	return d, nil
}

// Email is a user's email as the store knows it (proxy.Account.Email:
// Clerk's, else the one its Stripe customer carries); "" when it knows
// none.
func (s *Store) Email(ctx context.Context, userID string) (string, error) {
	var email string
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		a, _, err := accountOf(tx, proxy.Subject{Kind: proxy.SubjectUser, ID: userID})
		email = a.Email()
		return err
	})
	if err != nil {
		return "", fmt.Errorf("bolt: email of %s: %w", userID, err)
	}
	return email, nil
}
