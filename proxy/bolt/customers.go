package bolt

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.etcd.io/bbolt"

	"github.com/tollgate/tollgate/proxy"
)

// customerRecord is the customers bucket's value.
type customerRecord struct {
	V             int                  `json:"v"`
	Subject       string               `json:"subject,omitempty"` // "user:user_…" / "org:org_…"
	Email         string               `json:"email,omitempty"`
	Subscriptions []subscriptionRecord `json:"subscriptions,omitempty"`
	HadTrial      bool                 `json:"had_trial,omitempty"` // ever, across syncs
	Deleted       bool                 `json:"deleted,omitempty"`   // Stripe deleted the customer
	SyncedAt      time.Time            `json:"synced_at,omitzero"`
}

func (r *customerRecord) version() int { return r.V }

// subscriptionRecord is proxy.Subscription on disk, with its own names so
// renaming a Go field never changes the file format.
type subscriptionRecord struct {
	ID                string    `json:"id"`
	CustomerID        string    `json:"customer_id,omitempty"`
	Status            string    `json:"status"`
	PriceIDs          []string  `json:"price_ids,omitempty"`
	Plan              string    `json:"plan,omitempty"`
	CurrentPeriodEnd  time.Time `json:"current_period_end,omitzero"`
	TrialEnd          time.Time `json:"trial_end,omitzero"`
	CancelAtPeriodEnd bool      `json:"cancel_at_period_end,omitempty"`
	PastDueSince      time.Time `json:"past_due_since,omitzero"`
	SyncedAt          time.Time `json:"synced_at,omitzero"`
	Comp              bool      `json:"comp,omitempty"`
	PausedCollection  string    `json:"paused_collection,omitempty"`
	CollectionResumes time.Time `json:"collection_resumes_at,omitzero"`
	Amount            int64     `json:"amount,omitempty"`
	Currency          string    `json:"currency,omitempty"`
	Interval          string    `json:"interval,omitempty"`
	IntervalCount     int64     `json:"interval_count,omitempty"`
	Created           time.Time `json:"created,omitzero"`
	EndedAt           time.Time `json:"ended_at,omitzero"`
}

func toRecords(subs []proxy.Subscription) []subscriptionRecord {
	if len(subs) == 0 {
		return nil
	}
	out := make([]subscriptionRecord, len(subs))
	for i, s := range subs {
		out[i] = subscriptionRecord{
			ID:                s.ID,
			CustomerID:        s.CustomerID,
			Status:            string(s.Status),
			PriceIDs:          slices.Clone(s.PriceIDs),
			Plan:              s.Plan,
			CurrentPeriodEnd:  utc(s.CurrentPeriodEnd),
			TrialEnd:          utc(s.TrialEnd),
			CancelAtPeriodEnd: s.CancelAtPeriodEnd,
			PastDueSince:      utc(s.PastDueSince),
			SyncedAt:          utc(s.SyncedAt),
			Comp:              s.Comp,
			PausedCollection:  s.PausedCollection,
			CollectionResumes: utc(s.CollectionResumesAt),
			Amount:            s.Amount,
			Currency:          s.Currency,
			Interval:          s.Interval,
			IntervalCount:     s.IntervalCount,
			Created:           utc(s.Created),
			EndedAt:           utc(s.EndedAt),
		}
	}
	return out
}

func fromRecords(recs []subscriptionRecord) []proxy.Subscription {
	if len(recs) == 0 {
		return nil
	}
	out := make([]proxy.Subscription, len(recs))
	for i, r := range recs {
		out[i] = proxy.Subscription{
			ID:                  r.ID,
			CustomerID:          r.CustomerID,
			Status:              proxy.SubscriptionStatus(r.Status),
			PriceIDs:            slices.Clone(r.PriceIDs),
			Plan:                r.Plan,
			CurrentPeriodEnd:    r.CurrentPeriodEnd,
			TrialEnd:            r.TrialEnd,
			CancelAtPeriodEnd:   r.CancelAtPeriodEnd,
			PastDueSince:        r.PastDueSince,
			SyncedAt:            r.SyncedAt,
			Comp:                r.Comp,
			PausedCollection:    r.PausedCollection,
			CollectionResumesAt: r.CollectionResumes,
			Amount:              r.Amount,
			Currency:            r.Currency,
			Interval:            r.Interval,
			IntervalCount:       r.IntervalCount,
			Created:             r.Created,
			EndedAt:             r.EndedAt,
		}
	}
	return out
}

// entitlements builds what subject holds through this customer record. The
// slices are fresh: the caller may keep them (e.g. in its LRU).
func (r *customerRecord) entitlements(subject proxy.Subject, customerID string) *proxy.Entitlements {
	return &proxy.Entitlements{
		Subject:       subject,
		CustomerID:    customerID,
		Subscriptions: fromRecords(r.Subscriptions),
		SyncedAt:      r.SyncedAt,
	}
}

// hadTrial reports whether any subscription is or was a trial.
func hadTrial(subs []proxy.Subscription) bool {
	for i := range subs {
		if subs[i].Status == proxy.StatusTrialing || !subs[i].TrialEnd.IsZero() {
			return true
		}
	}
	return false
}

// checkSubject rejects subjects that cannot be keys (proxy.Subject.Valid).
func checkSubject(s proxy.Subject) error {
	if !s.Valid() {
		return fmt.Errorf("subject %.40q: %w", s.String(), proxy.ErrInvalidSubject)
	}
	return nil
}

// getCustomer reads a customer record; ok is false when there is none.
func getCustomer(tx *bbolt.Tx, customerID string) (rec customerRecord, ok bool, err error) {
	b, err := bucket(tx, bucketCustomers)
	if err != nil {
		return rec, false, err
	}
	data := b.Get([]byte(customerID))
	if data == nil {
		return rec, false, nil
	}
	if err := decodeRecord(data, &rec); err != nil {
		return customerRecord{}, false, fmt.Errorf("customer %s: %w", customerID, err)
	}
	return rec, true, nil
}

func putCustomer(tx *bbolt.Tx, customerID string, rec *customerRecord) error {
	b, err := bucket(tx, bucketCustomers)
	if err != nil {
		return err
	}
	rec.V = recordVersion
	if err := putRecord(b, customerID, rec); err != nil {
		return fmt.Errorf("customer %s: %w", customerID, err)
	}
	return nil
}

// link points subject and the customer whose record is rec at each other,
// replacing the subject's previous customer and the customer's previous
// subject in both directions. The caller stores rec.
func link(tx *bbolt.Tx, subject proxy.Subject, customerID string, rec *customerRecord) error {
	subjects, err := bucket(tx, bucketSubjects)
	if err != nil {
		return err
	}
	key := subject.String()
	if prev := string(subjects.Get([]byte(key))); prev != "" && prev != customerID {
		// The subject moves: its old customer no longer points at it.
		old, ok, err := getCustomer(tx, prev)
		if err != nil {
			return err
		}
		if ok && old.Subject == key {
			old.Subject = ""
			if err := putCustomer(tx, prev, &old); err != nil {
				return err
			}
		}
	}
	if rec.Subject != "" && rec.Subject != key {
		// The customer changes hands: its old subject loses it.
		if err := unlinkSubject(subjects, rec.Subject, customerID); err != nil {
			return err
		}
	}
	rec.Subject = key
	return subjects.Put([]byte(key), []byte(customerID))
}

// unlinkSubject removes subjectKey → customerID, if it still points there.
func unlinkSubject(subjects *bbolt.Bucket, subjectKey, customerID string) error {
	if string(subjects.Get([]byte(subjectKey))) != customerID {
		return nil
	}
	return subjects.Delete([]byte(subjectKey))
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

// linkedCustomer returns the subject's customer and its record; ok is false
// when there is none, or the link dangles (the customer names another
// subject). A linked customer without a record yet (linked at checkout,
// never synced) is ok with an empty record.
func linkedCustomer(tx *bbolt.Tx, subject proxy.Subject) (string, customerRecord, bool, error) {
	subjects, err := bucket(tx, bucketSubjects)
	if err != nil {
		return "", customerRecord{}, false, err
	}
	key := subject.String()
	customerID := string(subjects.Get([]byte(key)))
	if customerID == "" {
		return "", customerRecord{}, false, nil
	}
	rec, ok, err := getCustomer(tx, customerID)
	if err != nil {
		return "", customerRecord{}, false, err
	}
	if ok && rec.Subject != key {
		return "", customerRecord{}, false, nil // a dangling link grants nothing
	}
	return customerID, rec, true, nil
}

// CustomerOf returns the Stripe customer linked to subject ("" when none).
func (s *Store) CustomerOf(ctx context.Context, subject proxy.Subject) (string, error) {
	var customerID string
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		subjects, err := bucket(tx, bucketSubjects)
		if err != nil {
			return err
		}
		customerID = string(subjects.Get([]byte(subject.String())))
		return nil
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
		rec, ok, err := getCustomer(tx, customerID)
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
		return reindexKeys(tx, s.now(), before, rec.Subject)
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
// The stored subscriptions are merged with the fresh ones
// (proxy.MergeSubscriptions at state.SyncedAt, or now if unset), so what only
// tollgate knows (PastDueSince) survives. A set state.Subject is linked both
// ways; an unset one keeps the stored link. Any trial (status trialing or a
// TrialEnd) is remembered for good (HadTrial). A Deleted state drops the
// customer's subscriptions and links.
//
// Each subscription that is new or whose status, plan, period end or
// cancel-at-period-end changed gets a history entry (History), in the same
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
	if state.CustomerID == "" {
		return proxy.Subject{}, nil, wrap(errors.New("empty customer id"))
	}
	if state.Subject != (proxy.Subject{}) {
		if err := checkSubject(state.Subject); err != nil {
			return proxy.Subject{}, nil, wrap(err)
		}
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
		if st.CustomerID == "" {
			return errors.New("bolt: commit customers: empty customer id")
		}
		if st.Subject != (proxy.Subject{}) {
			if err := checkSubject(st.Subject); err != nil {
				return fmt.Errorf("bolt: commit customer %s: %w", st.CustomerID, err)
			}
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
	syncedAt := state.SyncedAt
	if syncedAt.IsZero() {
		syncedAt = now
	}
	setSubject := state.Subject != (proxy.Subject{})
	if eventID != "" {
		if err := markEvent(tx, eventID, now); err != nil {
			return subject, nil, err
		}
	}
	rec, known, err := getCustomer(tx, state.CustomerID)
	if err != nil {
		return subject, nil, err
	}
	if state.Deleted && !known {
		return subject, nil, nil // nothing to drop, and no tombstone for a customer never seen
	}
	before := rec.Subject
	old := fromRecords(rec.Subscriptions)
	merged := proxy.MergeSubscriptions(old, state.Subscriptions, syncedAt)
	rec.HadTrial = rec.HadTrial || hadTrial(merged)
	if state.Email != "" {
		rec.Email = state.Email
	}
	rec.SyncedAt = utc(syncedAt)
	if err := countFacts(tx, old, -1); err != nil {
		return subject, nil, err
	}
	if state.Deleted {
		if rec.Subject != "" {
			if subject, err = proxy.ParseSubject(rec.Subject); err != nil {
				return subject, nil, err
			}
			subjects, err := bucket(tx, bucketSubjects)
			if err != nil {
				return subject, nil, err
			}
			if err := unlinkSubject(subjects, rec.Subject, state.CustomerID); err != nil {
				return subject, nil, err
			}
		}
		rec.Subject, rec.Subscriptions, rec.Deleted = "", nil, true
		if err := putCustomer(tx, state.CustomerID, &rec); err != nil {
			return subject, nil, err
		}
		if err := reindexKeys(tx, now, before); err != nil {
			return subject, nil, err
		}
		if subject.ID != "" {
			ents, err = withComps(tx, subject, nil)
		}
		return subject, ents, err
	}
	rec.Deleted = false
	rec.Subscriptions = toRecords(merged)
	if err := countFacts(tx, merged, 1); err != nil {
		return subject, nil, err
	}
	if err := appendHistory(tx, state.CustomerID, syncedAt, changedSubscriptions(old, merged)); err != nil {
		return subject, nil, err
	}
	if setSubject {
		if err := link(tx, state.Subject, state.CustomerID, &rec); err != nil {
			return subject, nil, err
		}
	}
	if err := putCustomer(tx, state.CustomerID, &rec); err != nil {
		return subject, nil, err
	}
	if err := reindexKeys(tx, now, before, rec.Subject); err != nil {
		return subject, nil, err
	}
	if rec.Subject != "" {
		if subject, err = proxy.ParseSubject(rec.Subject); err != nil {
			return subject, nil, err
		}
		ents, err = withComps(tx, subject, rec.entitlements(subject, state.CustomerID))
	}
	return subject, ents, err
}

// reindexKeys reindexes the distinct subjects named by their keys ("" and
// repeats skipped).
func reindexKeys(tx *bbolt.Tx, now time.Time, keys ...string) error {
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
		rec, _, err := getCustomer(tx, customerID)
		had = rec.HadTrial
		return err
	})
	if err != nil {
		return false, fmt.Errorf("bolt: had trial %s: %w", customerID, err)
	}
	return had, nil
}

// markEvent records eventID as processed at now, keeping an earlier time.
func markEvent(tx *bbolt.Tx, eventID string, now time.Time) error {
	b, err := bucket(tx, bucketEvents)
	if err != nil {
		return err
	}
	if b.Get([]byte(eventID)) != nil {
		return nil
	}
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], uint64(now.UnixNano()))
	if err := b.Put([]byte(eventID), buf[:]); err != nil {
		return fmt.Errorf("mark event %s: %w", eventID, err)
	}
	return nil
}

// EventProcessed reports whether a Stripe event was already processed.
func (s *Store) EventProcessed(ctx context.Context, eventID string) (bool, error) {
	var done bool
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		b, err := bucket(tx, bucketEvents)
		if err != nil {
			return err
		}
		done = b.Get([]byte(eventID)) != nil
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("bolt: event %s: %w", eventID, err)
	}
	return done, nil
}

// MarkEvent records a Stripe event as processed on its own, for events that
// change nothing (unknown types, objects Stripe answers 404 for), so their
// retries are deduplicated too.
func (s *Store) MarkEvent(ctx context.Context, eventID string) error {
	if eventID == "" {
		return errors.New("bolt: mark event: empty event id")
	}
	err := s.update(ctx, func(tx *bbolt.Tx) error { return markEvent(tx, eventID, s.now()) })
	if err != nil {
		return fmt.Errorf("bolt: mark event %s: %w", eventID, err)
	}
	return nil
}

// PruneEvents forgets events processed before olderThan (Stripe stops
// retrying after three days) and returns how many it removed.
func (s *Store) PruneEvents(ctx context.Context, olderThan time.Time) (int, error) {
	cut := olderThan.UnixNano()
	var n int
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		n = 0
		b, err := bucket(tx, bucketEvents)
		if err != nil {
			return err
		}
		// Collect first: deleting under a cursor skips keys.
		var old [][]byte
		err = b.ForEach(func(k, v []byte) error {
			if len(v) != 8 {
				return fmt.Errorf("event %s: processed-at is %d bytes, want 8", k, len(v))
			}
			if int64(binary.BigEndian.Uint64(v)) < cut {
				old = append(old, slices.Clone(k))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range old {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		n = len(old)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("bolt: prune events: %w", err)
	}
	return n, nil
}
