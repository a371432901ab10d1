package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tollgate/tollgate/proxy"
)

// lockCustomer serialises the transactions on one customer, known or
// not yet, across replicas (a transaction-scoped advisory lock on the
// ID's hash), and reads it.
func lockCustomer(ctx context.Context, t *wtx, id string) (customerRecord, bool, error) {
	if _, err := t.Exec(ctx, `SELECT pg_advisory_xact_lock(3, hashtext($1))`, id); err != nil {
		return customerRecord{}, false, fmt.Errorf("customer %s: lock: %w", id, err)
	}
	return getCustomer(ctx, t, id, true)
}

func checkSubject(s proxy.Subject) error { return s.Check() }

// compRow is a comp as the entitlements query aggregates it.
type compRow struct {
	ID           string     `json:"id"`
	Subject      string     `json:"subject"`
	Plan         string     `json:"plan"`
	ExpiresAt    time.Time  `json:"expires_at"`
	By           string     `json:"by_whom"`
	Reason       string     `json:"reason"`
	CreatedAt    time.Time  `json:"created_at"`
	Revoked      bool       `json:"revoked"`
	RevokedAt    *time.Time `json:"revoked_at"`
	RevokedBy    string     `json:"revoked_by"`
	RevokeReason string     `json:"revoke_reason"`
}

func (r *compRow) comp() (proxy.Comp, error) {
	subject, err := proxy.ParseSubject(r.Subject)
	if err != nil {
		return proxy.Comp{}, fmt.Errorf("comp %s: %w", r.ID, err)
	}
	return proxy.Comp{ID: r.ID, Subject: subject, Plan: r.Plan, ExpiresAt: r.ExpiresAt.UTC(), By: r.By, Reason: r.Reason,
		CreatedAt: r.CreatedAt.UTC(), Revoked: r.Revoked, RevokedAt: tm(r.RevokedAt), RevokedBy: r.RevokedBy, RevokeReason: r.RevokeReason}, nil
}

// Entitlements implements proxy.EntitlementSource, in one round trip: the
// subscriptions of the subject's customer (when the customer names the
// subject back), and every comp of the subject. (nil, nil) when it has
// neither, as bolt's.
func (s *Store) Entitlements(ctx context.Context, subject proxy.Subject) (*proxy.Entitlements, error) {
	if !subject.Valid() {
		return nil, nil
	}
	var (
		customerID, owner string
		known             bool
		subs, comps       []byte
		synced            *time.Time
	)
	err := s.pool.QueryRow(ctx, `SELECT coalesce(a.customer_id, ''), coalesce(c.subject, ''), c.id IS NOT NULL, c.subscriptions, c.synced_at,
			(SELECT json_agg(m ORDER BY m.created_at) FROM comps m WHERE m.subject = $1)
		FROM (SELECT $1::text AS id) q
		LEFT JOIN accounts a ON a.id = q.id
		LEFT JOIN customers c ON c.id = a.customer_id`, subject.ID).
		Scan(&customerID, &owner, &known, &subs, &synced, &comps)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("postgres: entitlements %s: %w", subject, err)
	}
	var ents *proxy.Entitlements
	if customerID != "" && (!known || owner == subject.ID) {
		ents = &proxy.Entitlements{Subject: subject, CustomerID: customerID, SyncedAt: tm(synced)}
		if len(subs) > 0 {
			if err := json.Unmarshal(subs, &ents.Subscriptions); err != nil {
				return nil, fmt.Errorf("postgres: entitlements %s: %w", subject, err)
			}
			if len(ents.Subscriptions) == 0 {
				ents.Subscriptions = nil
			}
		}
	}
	if len(comps) > 0 {
		cs, err := decodeComps(comps)
		if err != nil {
			return nil, fmt.Errorf("postgres: entitlements %s: %w", subject, err)
		}
		if len(cs) > 0 {
			if ents == nil {
				ents = &proxy.Entitlements{Subject: subject}
			}
			ents.Comps = cs
		}
	}
	return ents, nil
}

func decodeComps(data []byte) ([]proxy.Comp, error) {
	var rows []compRow
	if err := json.Unmarshal(data, &rows); err != nil {
		return nil, err
	}
	out := make([]proxy.Comp, 0, len(rows))
	for i := range rows {
		c, err := rows[i].comp()
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// CustomerOf returns the Stripe customer linked to subject ("" when none).
func (s *Store) CustomerOf(ctx context.Context, subject proxy.Subject) (string, error) {
	if !subject.Valid() {
		return "", nil
	}
	a, _, err := getAccount(ctx, s.pool, subject.ID)
	if err != nil {
		return "", fmt.Errorf("postgres: customer of %s: %w", subject, err)
	}
	return a.Customer, nil
}

// SubjectOf returns the subject linked to a Stripe customer.
func (s *Store) SubjectOf(ctx context.Context, customerID string) (proxy.Subject, bool, error) {
	rec, ok, err := getCustomer(ctx, s.pool, customerID, false)
	if err != nil || !ok || rec.Subject == "" {
		if err != nil {
			err = fmt.Errorf("postgres: subject of %s: %w", customerID, err)
		}
		return proxy.Subject{}, false, err
	}
	subject, err := proxy.ParseSubject(rec.Subject)
	if err != nil {
		return proxy.Subject{}, false, fmt.Errorf("postgres: subject of %s: %w", customerID, err)
	}
	return subject, true, nil
}

// link points subject and the customer whose record is rec at each other,
// as bolt's link: the subject's old customer and the customer's old
// subject let go. Every subject whose entitlements change is in the
// change log.
func link(ctx context.Context, t *wtx, subject proxy.Subject, customerID string, rec *customerRecord) error {
	acct, ok, err := lockAccount(ctx, t, subject.ID)
	if err != nil {
		return err
	}
	if prev := acct.Customer; prev != "" && prev != customerID {
		old, ok, err := lockCustomer(ctx, t, prev)
		if err != nil {
			return err
		}
		if ok && old.Subject == subject.ID {
			old.Subject = ""
			if err := putCustomer(ctx, t, prev, &old); err != nil {
				return err
			}
		}
	}
	if rec.Subject != "" && rec.Subject != subject.ID {
		if err := unlinkSubject(ctx, t, rec.Subject, customerID); err != nil {
			return err
		}
		t.changed(ChangeSubject, rec.Subject)
	}
	rec.Subject = subject.ID
	t.changed(ChangeSubject, subject.ID)
	if acct.Customer == customerID && ok {
		return nil
	}
	next := acct.Clone()
	next.Customer = customerID
	if !ok {
		return putAccount(ctx, t, subject.ID, nil, &next)
	}
	return putAccount(ctx, t, subject.ID, &acct, &next)
}

func unlinkSubject(ctx context.Context, t *wtx, subjectID, customerID string) error {
	acct, ok, err := lockAccount(ctx, t, subjectID)
	if err != nil {
		return err
	}
	if acct.Customer != customerID {
		if !ok {
			return putAccount(ctx, t, subjectID, nil, &acct) // the empty row just made goes
		}
		return nil
	}
	next := acct.Clone()
	next.Customer = ""
	return putAccount(ctx, t, subjectID, &acct, &next)
}

// LinkCustomer links subject and a Stripe customer both ways, as bolt's.
func (s *Store) LinkCustomer(ctx context.Context, subject proxy.Subject, customerID string) error {
	if err := checkSubject(subject); err != nil {
		return fmt.Errorf("postgres: link %s to %s: %w", subject, customerID, err)
	}
	if customerID == "" {
		return fmt.Errorf("postgres: link %s: empty customer id", subject)
	}
	err := s.update(ctx, func(t *wtx) error {
		rec, _, err := lockCustomer(ctx, t, customerID)
		if err != nil {
			return err
		}
		if rec.Deleted {
			return errors.New("customer was deleted in Stripe")
		}
		before := rec.Subject
		if err := link(ctx, t, subject, customerID, &rec); err != nil {
			return err
		}
		if err := putCustomer(ctx, t, customerID, &rec); err != nil {
			return err
		}
		return reindexSubjects(ctx, t, before, rec.Subject)
	})
	if err != nil {
		return fmt.Errorf("postgres: link %s to %s: %w", subject, customerID, err)
	}
	return nil
}

// SyncTime is the database's clock (clock_timestamp(), which moves within
// a transaction, unlike now()): proxy/stripe stamps the start of each
// customer sync with it, so that CommitCustomer orders the reads of every
// replica on one clock, whatever each replica's own clock says.
func (s *Store) SyncTime(ctx context.Context) (time.Time, error) {
	at, err := dbTime(ctx, s.pool)
	if err != nil {
		return time.Time{}, fmt.Errorf("postgres: sync time: %w", err)
	}
	return at, nil
}

// dbTime reads the database's clock, in UTC to the microsecond it keeps.
func dbTime(ctx context.Context, q querier) (time.Time, error) {
	var at time.Time
	if err := q.QueryRow(ctx, `SELECT clock_timestamp()`).Scan(&at); err != nil {
		return time.Time{}, err
	}
	return at.UTC(), nil
}

// CommitCustomer stores a freshly synced customer state and marks eventID
// processed in one transaction, with its history, its counters, its
// subjects' listings, and a change-log entry (and NOTIFY) for every
// subject whose entitlements it changed. Its contract is bolt's
// (proxy/bolt/customers.go).
func (s *Store) CommitCustomer(ctx context.Context, state proxy.CustomerState, eventID string) (proxy.Subject, *proxy.Entitlements, error) {
	wrap := func(err error) error { return fmt.Errorf("postgres: commit customer %s: %w", state.CustomerID, err) }
	if err := state.Check(); err != nil {
		return proxy.Subject{}, nil, wrap(err)
	}
	var (
		subject proxy.Subject
		ents    *proxy.Entitlements
	)
	err := s.update(ctx, func(t *wtx) error {
		var err error
		subject, ents, err = commit(ctx, t, state, eventID)
		return err
	})
	if err != nil {
		return proxy.Subject{}, nil, wrap(err)
	}
	return subject, ents, nil
}

// CommitCustomers commits many states in one transaction, each as
// CommitCustomer without an event (tollgate store copy).
func (s *Store) CommitCustomers(ctx context.Context, states []proxy.CustomerState) error {
	for _, st := range states {
		if err := st.Check(); err != nil {
			return fmt.Errorf("postgres: commit customer %q: %w", st.CustomerID, err)
		}
	}
	err := s.update(ctx, func(t *wtx) error {
		for _, st := range states {
			if _, _, err := commit(ctx, t, st, ""); err != nil {
				return fmt.Errorf("customer %s: %w", st.CustomerID, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("postgres: commit %d customers: %w", len(states), err)
	}
	return nil
}

func commit(ctx context.Context, t *wtx, state proxy.CustomerState, eventID string) (subject proxy.Subject, ents *proxy.Entitlements, err error) {
	if eventID != "" {
		if err := markEvent(ctx, t, eventID, t.now); err != nil {
			return subject, nil, err
		}
	}
	rec, known, err := lockCustomer(ctx, t, state.CustomerID)
	if err != nil {
		return subject, nil, err
	}
	if state.SyncedAt.IsZero() {
		// Stamped by the database's clock, as SyncTime stamps a sync's
		// start: a replica's own clock never orders two replicas' commits.
		if state.SyncedAt, err = dbTime(ctx, t); err != nil {
			return subject, nil, err
		}
	}
	syncedAt := state.SyncedAt
	if known && syncedAt.Before(rec.SyncedAt) && (state.Subject == (proxy.Subject{}) || state.Subject.String() == rec.Subject) {
		// Another replica committed a read of Stripe that began after this
		// one did (SyncedAt is when a sync began to read: proxy/stripe's
		// syncLocked, by the database's clock, SyncTime): this read is
		// older, and writing it would put back a state Stripe has left, a
		// cancellation undone (red team, issue 16). The customer's lock in
		// one process orders its syncs; across replicas, this comparison
		// does, on the one clock they share (red team: stamped by each
		// replica's clock, one running ahead made a fresher read from
		// another be dropped). The event is marked; the stored state
		// stands.
		return storedEntitlements(ctx, t, state.CustomerID, rec)
	}
	before, old := rec.Subject, rec.Subscriptions
	_, changed, write := rec.Commit(state, known, t.now)
	if !write {
		return subject, nil, nil
	}
	t.countFacts(old, -1)
	if before != "" {
		t.changed(ChangeSubject, before)
	}
	if state.Deleted {
		if before != "" {
			if subject, err = proxy.ParseSubject(before); err != nil {
				return subject, nil, err
			}
			if err := unlinkSubject(ctx, t, before, state.CustomerID); err != nil {
				return subject, nil, err
			}
		}
		if err := putCustomer(ctx, t, state.CustomerID, &rec); err != nil {
			return subject, nil, err
		}
		if err := reindexSubjects(ctx, t, before); err != nil {
			return subject, nil, err
		}
		if subject.ID != "" {
			ents, err = withComps(ctx, t, subject, nil)
		}
		return subject, ents, err
	}
	t.countFacts(rec.Subscriptions, 1)
	if err := appendHistory(ctx, t, state.CustomerID, syncedAt, changed); err != nil {
		return subject, nil, err
	}
	if state.Subject != (proxy.Subject{}) {
		if err := link(ctx, t, state.Subject, state.CustomerID, &rec); err != nil {
			return subject, nil, err
		}
	}
	if err := putCustomer(ctx, t, state.CustomerID, &rec); err != nil {
		return subject, nil, err
	}
	if err := reindexSubjects(ctx, t, before, rec.Subject); err != nil {
		return subject, nil, err
	}
	if rec.Subject != "" {
		t.changed(ChangeSubject, rec.Subject)
		if subject, err = proxy.ParseSubject(rec.Subject); err != nil {
			return subject, nil, err
		}
		// rec's subscriptions are Commit's own copy: the caller may keep them.
		ents = &proxy.Entitlements{Subject: subject, CustomerID: state.CustomerID, Subscriptions: rec.Subscriptions, SyncedAt: rec.SyncedAt}
		ents, err = withComps(ctx, t, subject, ents)
	}
	return subject, ents, err
}

// storedEntitlements are what a commit returns when it writes nothing: the
// stored customer's subject and entitlements.
func storedEntitlements(ctx context.Context, t *wtx, customerID string, rec customerRecord) (proxy.Subject, *proxy.Entitlements, error) {
	if rec.Subject == "" || rec.Deleted {
		return proxy.Subject{}, nil, nil
	}
	subject, err := proxy.ParseSubject(rec.Subject)
	if err != nil {
		return proxy.Subject{}, nil, err
	}
	ents := &proxy.Entitlements{Subject: subject, CustomerID: customerID, Subscriptions: proxy.CloneSubscriptions(rec.Subscriptions), SyncedAt: rec.SyncedAt}
	ents, err = withComps(ctx, t, subject, ents)
	return subject, ents, err
}

// withComps puts the subject's comps on ents (proxy.WithComps).
func withComps(ctx context.Context, q querier, subject proxy.Subject, ents *proxy.Entitlements) (*proxy.Entitlements, error) {
	comps, err := compsOf(ctx, q, subject)
	if err != nil {
		return ents, err
	}
	return proxy.WithComps(ents, subject, comps), nil
}

func appendHistory(ctx context.Context, t *wtx, customerID string, at time.Time, changed []proxy.Subscription) error {
	for _, s := range changed {
		_, err := t.Exec(ctx, `INSERT INTO history (customer_id, at, subscription_id, plan, status, period_end, cancel_at_period_end)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`, customerID, at.UTC(), s.ID, s.Plan, string(s.Status), ts(s.CurrentPeriodEnd), s.CancelAtPeriodEnd)
		if err != nil {
			return fmt.Errorf("history of %s: %w", customerID, err)
		}
	}
	return nil
}

// History returns a customer's subscription changes, newest first.
func (s *Store) History(ctx context.Context, customerID string, limit int) ([]proxy.HistoryEntry, error) {
	out, err := historyOf(ctx, s.pool, customerID, limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: history of %s: %w", customerID, err)
	}
	return out, nil
}

func historyOf(ctx context.Context, q querier, customerID string, limit int) ([]proxy.HistoryEntry, error) {
	if limit <= 0 || limit > proxy.MaxAuditPage {
		limit = proxy.MaxAuditPage
	}
	if customerID == "" {
		return nil, nil
	}
	rows, err := q.Query(ctx, `SELECT at, subscription_id, plan, status, period_end, cancel_at_period_end FROM history
		WHERE customer_id = $1 ORDER BY at DESC, seq DESC LIMIT $2`, customerID, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []proxy.HistoryEntry
	for rows.Next() {
		var (
			h      proxy.HistoryEntry
			status string
			end    *time.Time
		)
		if err := rows.Scan(&h.At, &h.SubscriptionID, &h.Plan, &status, &end, &h.CancelAtPeriodEnd); err != nil {
			return nil, err
		}
		h.At, h.Status, h.PeriodEnd = h.At.UTC(), proxy.SubscriptionStatus(status), tm(end)
		out = append(out, h)
	}
	return out, rows.Err()
}

// HadTrial reports whether the customer has ever had a trial.
func (s *Store) HadTrial(ctx context.Context, customerID string) (bool, error) {
	rec, _, err := getCustomer(ctx, s.pool, customerID, false)
	if err != nil {
		return false, fmt.Errorf("postgres: had trial %s: %w", customerID, err)
	}
	return rec.HadTrial, nil
}

func markEvent(ctx context.Context, q querier, eventID string, now time.Time) error {
	if _, err := q.Exec(ctx, `INSERT INTO events (id, processed_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING`, eventID, now.UTC()); err != nil {
		return fmt.Errorf("mark event %s: %w", eventID, err)
	}
	return nil
}

// EventProcessed reports whether an event was already processed.
func (s *Store) EventProcessed(ctx context.Context, eventID string) (bool, error) {
	var done bool
	if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM events WHERE id = $1)`, eventID).Scan(&done); err != nil {
		return false, fmt.Errorf("postgres: event %s: %w", eventID, err)
	}
	return done, nil
}

// MarkEvent records an event as processed on its own.
func (s *Store) MarkEvent(ctx context.Context, eventID string) error {
	if eventID == "" {
		return errors.New("postgres: mark event: empty event id")
	}
	if err := markEvent(ctx, s.pool, eventID, s.now()); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	return nil
}

// PruneEvents forgets at most limit events processed before before, the
// oldest first, in one statement, by the events_by_time index (0001): it
// reads only what it deletes.
func (s *Store) PruneEvents(ctx context.Context, before time.Time, limit int) (int, error) {
	if limit <= 0 {
		return 0, nil
	}
	tag, err := s.pool.Exec(ctx, `DELETE FROM events WHERE id IN (
		SELECT id FROM events WHERE processed_at < $1 ORDER BY processed_at LIMIT $2)`, before.UTC(), limit)
	if err != nil {
		return 0, fmt.Errorf("postgres: prune events: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// StoredCustomer is what the store holds of a customer (the reconcile's
// comparison).
func (s *Store) StoredCustomer(ctx context.Context, customerID string) (proxy.CustomerState, bool, error) {
	rec, ok, err := getCustomer(ctx, s.pool, customerID, false)
	if err != nil || !ok {
		if err != nil {
			err = fmt.Errorf("postgres: stored customer %s: %w", customerID, err)
		}
		return proxy.CustomerState{}, false, err
	}
	st := proxy.CustomerState{CustomerID: customerID, Email: rec.Email, Subscriptions: rec.Subscriptions, Deleted: rec.Deleted, SyncedAt: rec.SyncedAt}
	if rec.Subject != "" {
		if st.Subject, err = proxy.ParseSubject(rec.Subject); err != nil {
			return proxy.CustomerState{}, false, fmt.Errorf("postgres: stored customer %s: %w", customerID, err)
		}
	}
	return st, true, nil
}

// Empty reports whether the store knows no customer yet.
func (s *Store) Empty(ctx context.Context) (bool, error) {
	var any bool
	if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM customers)`).Scan(&any); err != nil {
		return false, fmt.Errorf("postgres: empty: %w", err)
	}
	return !any, nil
}

// SetCursor stores a named cursor ("" deletes it).
func (s *Store) SetCursor(ctx context.Context, name, value string) error {
	if name == "" {
		return errors.New("postgres: set cursor: empty name")
	}
	var err error
	if value == "" {
		_, err = s.pool.Exec(ctx, `DELETE FROM cursors WHERE name = $1`, name)
	} else {
		_, err = s.pool.Exec(ctx, `INSERT INTO cursors (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = $2`, name, value)
	}
	if err != nil {
		return fmt.Errorf("postgres: set cursor %s: %w", name, err)
	}
	return nil
}

// Cursor reads a named cursor ("" when unset).
func (s *Store) Cursor(ctx context.Context, name string) (string, error) {
	var v string
	err := s.pool.QueryRow(ctx, `SELECT value FROM cursors WHERE name = $1`, name).Scan(&v)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("postgres: cursor %s: %w", name, err)
	}
	return v, nil
}
