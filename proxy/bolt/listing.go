package bolt

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.etcd.io/bbolt"

	"github.com/tollgate/tollgate/proxy"
)

// StatusNone is the UserFilter status of subjects without any subscription
// or active comp.
const StatusNone = "none"

// UserFilter selects and pages ListUsers.
type UserFilter struct {
	Status string // a subscription status (the summary's best one), StatusNone, or "" for any
	Plan   string // a plan key the summary lists, or "" for any
	After  string // the cursor ListUsers returned ("" for the first page)
	Limit  int    // <= 0: 100; capped at MaxUsersPage
}

// UserSummary is what the admin listing shows of one subject: a Clerk user
// (as the users bucket knows it) or any user or organisation that has a
// Stripe customer or a comp.
type UserSummary struct {
	ID         string // Clerk user ID (user_…) or organisation ID (org_…)
	Kind       proxy.SubjectKind
	Email      string   // from Clerk, else the Stripe customer's
	OrgIDs     []string // the user's organisations
	CustomerID string
	// Plans are the plans the subject's subscriptions and comps grant now;
	// when none grants, the plans of those with the best status.
	Plans []string
	// Status is the best status among the subscriptions and active comps
	// (active > trialing > past_due > unpaid > incomplete > paused >
	// incomplete_expired > canceled); "" with none.
	Status    proxy.SubscriptionStatus
	PeriodEnd time.Time // the latest period end among what grants (else of the best)
	Comp      bool      // an active comp is among what grants Plans
	FirstSeen time.Time
	LastSeen  time.Time
}

// Subject is the summary's billing subject.
func (u *UserSummary) Subject() proxy.Subject { return proxy.Subject{Kind: u.Kind, ID: u.ID} }

// match reports whether the summary passes the filter.
func (u *UserSummary) match(f *UserFilter) bool {
	switch {
	case f.Status == StatusNone && u.Status != "":
		return false
	case f.Status != "" && f.Status != StatusNone && string(u.Status) != f.Status:
		return false
	case f.Plan != "" && !slices.Contains(u.Plans, f.Plan):
		return false
	}
	return true
}

// grantsByStatus is proxy.Grants without the past-due grace, which the
// store does not know: active, trialing and past_due grant.
func grantsByStatus(s proxy.SubscriptionStatus) bool {
	return s == proxy.StatusActive || s == proxy.StatusTrialing || s == proxy.StatusPastDue
}

// summarize joins what the store knows of one subject. subs are the
// customer's subscriptions followed by the active comps.
func summarize(subject proxy.Subject, user *userRecord, customerID, customerEmail string, subs []proxy.Subscription) UserSummary {
	u := UserSummary{ID: subject.ID, Kind: subject.Kind, CustomerID: customerID, Email: customerEmail}
	if user != nil {
		if user.Email != "" {
			u.Email = user.Email
		}
		u.OrgIDs = slices.Clone(user.OrgIDs)
		u.FirstSeen, u.LastSeen = user.FirstSeen, user.LastSeen
	}
	var best *proxy.Subscription
	for i := range subs {
		s := &subs[i]
		if best == nil || s.Status.Rank() > best.Status.Rank() ||
			s.Status.Rank() == best.Status.Rank() && s.CurrentPeriodEnd.After(best.CurrentPeriodEnd) {
			best = s
		}
	}
	if best == nil {
		return u
	}
	u.Status = best.Status
	granting := grantsByStatus(best.Status)
	for i := range subs {
		s := &subs[i]
		if granting && !grantsByStatus(s.Status) || !granting && s.Status != best.Status {
			continue
		}
		if s.Plan != "" && !slices.Contains(u.Plans, s.Plan) {
			u.Plans = append(u.Plans, s.Plan)
		}
		if s.CurrentPeriodEnd.After(u.PeriodEnd) {
			u.PeriodEnd = s.CurrentPeriodEnd
		}
		u.Comp = u.Comp || s.Comp
	}
	slices.Sort(u.Plans)
	return u
}

// summaryOf builds one subject's summary in tx; ok is false when the store
// knows nothing of it (no user record, no customer, no comp).
func summaryOf(tx *bbolt.Tx, subject proxy.Subject, now time.Time) (UserSummary, bool, error) {
	var user *userRecord
	if subject.Kind == proxy.SubjectUser {
		users, err := bucket(tx, bucketUsers)
		if err != nil {
			return UserSummary{}, false, err
		}
		rec, ok, err := getUser(users, subject.ID)
		if err != nil {
			return UserSummary{}, false, err
		}
		if ok {
			user = &rec
		}
	}
	customerID, cust, linked, err := linkedCustomer(tx, subject)
	if err != nil {
		return UserSummary{}, false, err
	}
	comps, err := compsOf(tx, subject)
	if err != nil {
		return UserSummary{}, false, err
	}
	if user == nil && !linked && len(comps) == 0 {
		return UserSummary{}, false, nil
	}
	subs := fromRecords(cust.Subscriptions)
	for i := range comps {
		if comps[i].Active(now) {
			subs = append(subs, comps[i].Subscription())
		}
	}
	return summarize(subject, user, customerID, cust.Email, subs), true, nil
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
// and every user or organisation with a Stripe customer or a comp, joined
// into summaries and filtered. next is the cursor for the following page
// (f.After), "" after the last one. The cursor is opaque.
func (s *Store) ListUsers(ctx context.Context, f UserFilter) ([]UserSummary, string, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	f.Limit = min(f.Limit, MaxUsersPage)
	now := s.now()
	var (
		out  []UserSummary
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
			u, ok, err := summaryOf(tx, subject, now)
			if err != nil {
				return err
			}
			if !ok || !u.match(&f) {
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

// UserDetail is everything the store knows of one subject.
type UserDetail struct {
	UserSummary
	Subscriptions []proxy.Subscription // the customer's, from its last sync
	History       []HistoryEntry       // the customer's subscription changes, newest first
	Comps         []proxy.Comp         // all of them, revoked and expired included, oldest first
	Audit         []AuditEntry         // admin actions about the subject, newest first
}

// UserDetail reads one subject's summary, subscriptions, history, comps and
// audit trail in one consistent read. limit bounds History and Audit (as
// for AuditLog). An unknown subject is an error wrapping proxy.ErrNotFound.
func (s *Store) UserDetail(ctx context.Context, subject proxy.Subject, limit int) (UserDetail, error) {
	now := s.now()
	var d UserDetail
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		if err := checkSubject(subject); err != nil {
			return fmt.Errorf("%w: %w", proxy.ErrNotFound, err)
		}
		sum, ok, err := summaryOf(tx, subject, now)
		if err != nil {
			return err
		}
		if !ok {
			return proxy.ErrNotFound
		}
		d = UserDetail{UserSummary: sum}
		if _, rec, linked, err := linkedCustomer(tx, subject); err != nil {
			return err
		} else if linked {
			d.Subscriptions = fromRecords(rec.Subscriptions)
		}
		if d.History, err = historyOf(tx, sum.CustomerID, limit); err != nil {
			return err
		}
		if d.Comps, err = compsOf(tx, subject); err != nil {
			return err
		}
		d.Audit, err = auditOf(tx, subject, limit)
		return err
	})
	if err != nil {
		return UserDetail{}, fmt.Errorf("bolt: user detail %s: %w", subject, err)
	}
	return d, nil
}
