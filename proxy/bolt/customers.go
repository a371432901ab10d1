package bolt

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.etcd.io/bbolt"

	"github.com/tollgate/tollgate/proxy"
)

// entitlements builds what subject holds through this customer record,
// sharing its subscriptions: a decoded record's are the caller's to keep
// (e.g. in its LRU).
func (r *customerRecord) entitlements(subject proxy.Subject, customerID string) *proxy.Entitlements {
	return &proxy.Entitlements{
		Subject:       subject,
		CustomerID:    customerID,
		Subscriptions: r.Subscriptions,
		SyncedAt:      r.SyncedAt,
	}
}

// checkSubject rejects subjects that cannot be keys (proxy.Subject.Check).
func checkSubject(s proxy.Subject) error { return s.Check() }

// link points subject and the customer whose record is rec at each other,
// replacing the subject's previous customer and the customer's previous
// subject in both directions. The caller stores rec.
func link(tx *bbolt.Tx, subject proxy.Subject, customerID string, rec *customerRecord) error {
	acct, ok, err := getAccount(tx, subject.ID)
	if err != nil {
		return err
	}
	if prev := acct.Customer; prev != "" && prev != customerID {
		// The subject moves: its old customer no longer points at it.
		old, ok, err := getCustomer(tx, prev)
		if err != nil {
			return err
		}
		if ok && old.Subject == subject.ID {
			old.Subject = ""
			if err := putCustomer(tx, prev, &old); err != nil {
				return err
			}
		}
	}
	if rec.Subject != "" && rec.Subject != subject.ID {
		// The customer changes hands: its old subject loses it.
		if err := unlinkSubject(tx, rec.Subject, customerID); err != nil {
			return err
		}
	}
	rec.Subject = subject.ID
	if acct.Customer == customerID {
		return nil
	}
	next := acct.Clone()
	next.Customer = customerID
	if !ok {
		return putAccount(tx, subject.ID, nil, &next)
	}
	return putAccount(tx, subject.ID, &acct, &next)
}

// unlinkSubject removes subject → customerID, if it still points there.
func unlinkSubject(tx *bbolt.Tx, subjectID, customerID string) error {
	acct, ok, err := getAccount(tx, subjectID)
	if err != nil || !ok || acct.Customer != customerID {
		return err
	}
	next := acct.Clone()
	next.Customer = ""
	return putAccount(tx, subjectID, &acct, &next)
}

// Entitlements implements proxy.EntitlementSource: the subscriptions of the
// subject's customer, and the subject's comps (all of them: which count is
// the domain's to say, proxy.Entitlements.All). (nil, nil) when no
// customer is linked to the subject and it has no comp; a linked customer
// with no subscriptions gives non-nil Entitlements carrying its CustomerID.
func (s *Store) Entitlements(ctx context.Context, subject proxy.Subject) (*proxy.Entitlements, error) {
	var ents *proxy.Entitlements
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		var err error
		ents, err = customerEntitlements(tx, subject)
		if err != nil {
			return err
		}
		ents, err = withComps(tx, subject, ents)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("bolt: entitlements %s: %w", subject, err)
	}
	return ents, nil
}

// customerEntitlements reads what subject holds through its customer: nil
// when it has none (or only a dangling link).
func customerEntitlements(tx *bbolt.Tx, subject proxy.Subject) (*proxy.Entitlements, error) {
	customerID, rec, ok, err := linkedCustomer(tx, subject)
	if err != nil || !ok {
		return nil, err
	}
	return rec.entitlements(subject, customerID), nil
}

// linkedCustomer returns the subject's customer and its record (its email
// maybe unread: the request path needs none); ok is false
// when there is none, or the link dangles (the customer names another
// subject). A linked customer without a record yet (linked at checkout,
// never synced) is ok with an empty record.
func linkedCustomer(tx *bbolt.Tx, subject proxy.Subject) (string, customerRecord, bool, error) {
	if !subject.Valid() {
		return "", customerRecord{}, false, nil // records are keyed by valid IDs only
	}
	customerID, err := accountCustomer(tx, subject.ID)
	if err != nil || customerID == "" {
		return "", customerRecord{}, false, err
	}
	rec, ok, err := readCustomer(tx, customerID)
	if err != nil {
		return "", customerRecord{}, false, err
	}
	if ok && rec.Subject != subject.ID {
		return "", customerRecord{}, false, nil // a dangling link grants nothing
	}
	return customerID, rec, true, nil
}

// CustomerOf returns the Stripe customer linked to subject ("" when none).
func (s *Store) CustomerOf(ctx context.Context, subject proxy.Subject) (string, error) {
	var customerID string
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		if !subject.Valid() {
			return nil // records are keyed by valid IDs only
		}
		acct, _, err := getAccount(tx, subject.ID)
		customerID = acct.Customer
		return err
	})
	if err != nil {
		return "", fmt.Errorf("bolt: customer of %s: %w", subject, err)
	}
	return customerID, nil
}

// SubjectOf returns the subject linked to a Stripe customer.
func (s *Store) SubjectOf(ctx context.Context, customerID string) (proxy.Subject, bool, error) {
	var subject proxy.Subject
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		rec, ok, err := readCustomer(tx, customerID)
		if err != nil || !ok || rec.Subject == "" {
			return err
		}
		subject, err = proxy.ParseSubject(rec.Subject)
		return err
	})
	if err != nil {
		return proxy.Subject{}, false, fmt.Errorf("bolt: subject of %s: %w", customerID, err)
	}
	return subject, subject != (proxy.Subject{}), nil
}

// LinkCustomer links subject and a Stripe customer both ways. Relinking a
// subject to another customer, or a customer to another subject, replaces
// the old links in both directions. The subject's entitlements change:
// callers drop it from their cache (and the displaced subject, if any).
func (s *Store) LinkCustomer(ctx context.Context, subject proxy.Subject, customerID string) error {
	if err := checkSubject(subject); err != nil {
		return fmt.Errorf("bolt: link %s to %s: %w", subject, customerID, err)
	}
	if customerID == "" {
		return fmt.Errorf("bolt: link %s: empty customer id", subject)
	}
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		rec, _, err := getCustomer(tx, customerID)
		if err != nil {
			return err
		}
		if rec.Deleted {
			return errors.New("customer was deleted in Stripe")
		}
		before := rec.Subject
		if err := link(tx, subject, customerID, &rec); err != nil {
			return err
		}
		if err := putCustomer(tx, customerID, &rec); err != nil {
			return err
		}
		return reindexSubjects(tx, s.now(), before, rec.Subject)
	})
	if err != nil {
		return fmt.Errorf("bolt: link %s to %s: %w", subject, customerID, err)
	}
	return nil
}

// CommitCustomer stores a freshly synced customer state and, if eventID is
// not empty, marks that Stripe event processed, in one transaction: either
// both land or neither does.
//
// What the commit does to the stored customer is the domain's
// (proxy.CustomerRecord.Commit: the merged subscriptions, the email, a
// trial remembered for good, a deletion, the history's entries). A set
// state.Subject is linked both ways; an unset one keeps the stored link;
// a deletion undoes the link. The history, the dashboard's counters and
// the listing of every subject it touches are written in the same
// transaction.
//
// It returns the subject the customer belongs to and that subject's new
// Entitlements (its comps included), for the caller to write through its
// cache; a zero subject when the customer has none. For a deleted customer
// it returns the subject that just lost it, with nil Entitlements unless
// the subject has comps. A subject displaced by a relink
// is not returned: callers that care read SubjectOf first (they hold the
// customer's lock) and drop it from their cache.
//
// Committing with an event ID that was already processed still stores the
// state (a fresh read from Stripe is never wrong) and keeps the event's
// first processed-at time; callers skip duplicates with EventProcessed.
func (s *Store) CommitCustomer(ctx context.Context, state proxy.CustomerState, eventID string) (proxy.Subject, *proxy.Entitlements, error) {
	wrap := func(err error) error { return fmt.Errorf("bolt: commit customer %s: %w", state.CustomerID, err) }
	if err := state.Check(); err != nil {
		return proxy.Subject{}, nil, wrap(err)
	}
	var (
		subject proxy.Subject
		ents    *proxy.Entitlements
	)
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		var err error
		subject, ents, err = s.commit(tx, state, eventID)
		return err
	})
	if err != nil {
		return proxy.Subject{}, nil, wrap(err)
	}
	return subject, ents, nil
}

// CommitCustomers commits many customer states in one transaction, each as
// CommitCustomer would without an event: for bulk loads (tollgate-gen),
// where a transaction per customer would spend its time in fsync.
func (s *Store) CommitCustomers(ctx context.Context, states []proxy.CustomerState) error {
	for _, st := range states {
		if err := st.Check(); err != nil {
			return fmt.Errorf("bolt: commit customer %q: %w", st.CustomerID, err)
		}
	}
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		for _, st := range states {
			if _, _, err := s.commit(tx, st, ""); err != nil {
				return fmt.Errorf("customer %s: %w", st.CustomerID, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("bolt: commit %d customers: %w", len(states), err)
	}
	return nil
}

// commit is CommitCustomer's transaction: the customer, its history, the
// dashboard's counters and the listing index of every subject it touches.
func (s *Store) commit(tx *bbolt.Tx, state proxy.CustomerState, eventID string) (subject proxy.Subject, ents *proxy.Entitlements, err error) {
	now := s.now()
	if eventID != "" {
		if err := markEvent(tx, eventID, now); err != nil {
			return subject, nil, err
		}
	}
	rec, known, err := getCustomer(tx, state.CustomerID)
	if err != nil {
		return subject, nil, err
	}
	before, old := rec.Subject, rec.Subscriptions
	syncedAt, changed, write := rec.Commit(state, known, now)
	if !write {
		return subject, nil, nil // nothing to drop, and no tombstone for a customer never seen
	}
	if err := countFacts(tx, old, -1); err != nil {
		return subject, nil, err
	}
	if state.Deleted {
		if before != "" {
			if subject, err = proxy.ParseSubject(before); err != nil {
				return subject, nil, err
			}
			if err := unlinkSubject(tx, before, state.CustomerID); err != nil {
				return subject, nil, err
			}
		}
		if err := putCustomer(tx, state.CustomerID, &rec); err != nil {
			return subject, nil, err
		}
		if err := reindexSubjects(tx, now, before); err != nil {
			return subject, nil, err
		}
		if subject.ID != "" {
			ents, err = withComps(tx, subject, nil)
		}
		return subject, ents, err
	}
	if err := countFacts(tx, rec.Subscriptions, 1); err != nil {
		return subject, nil, err
	}
	if err := appendHistory(tx, state.CustomerID, syncedAt, changed); err != nil {
		return subject, nil, err
	}
	if state.Subject != (proxy.Subject{}) {
		if err := link(tx, state.Subject, state.CustomerID, &rec); err != nil {
			return subject, nil, err
		}
	}
	if err := putCustomer(tx, state.CustomerID, &rec); err != nil {
		return subject, nil, err
	}
	if err := reindexSubjects(tx, now, before, rec.Subject); err != nil {
		return subject, nil, err
	}
	if rec.Subject != "" {
		if subject, err = proxy.ParseSubject(rec.Subject); err != nil {
			return subject, nil, err
		}
		// rec's subscriptions are Commit's own copy: the caller may keep them.
		ents, err = withComps(tx, subject, rec.entitlements(subject, state.CustomerID))
	}
	return subject, ents, err
}

// reindexSubjects reindexes the distinct subjects named by their Clerk IDs
// ("" and repeats skipped).
func reindexSubjects(tx *bbolt.Tx, now time.Time, keys ...string) error {
	for i, k := range keys {
		if k == "" || slices.Contains(keys[:i], k) {
			continue
		}
		subject, err := proxy.ParseSubject(k)
		if err != nil {
			return err
		}
		if err := reindex(tx, subject, now); err != nil {
			return err
		}
	}
	return nil
}

// HadTrial reports whether the customer has ever had a trial (false for an
// unknown customer).
func (s *Store) HadTrial(ctx context.Context, customerID string) (bool, error) {
	var had bool
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		rec, _, err := readCustomer(tx, customerID)
		had = rec.HadTrial
		return err
	})
	if err != nil {
		return false, fmt.Errorf("bolt: had trial %s: %w", customerID, err)
	}
	return had, nil
}
