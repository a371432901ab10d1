package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/tollgate/tollgate/proxy"
)

// Importer writes another store's records into an empty PostgreSQL store
// (tollgate store copy), as they are: no merge, no history of its own,
// no notification. Records go in transactions of a few thousand; Finish
// lists every subject and returns the counts to verify the copy by.
type Importer struct {
	s        *Store
	t        *wtx
	ctx      context.Context
	pending  int
	subjects map[string]bool
}

// ErrNotEmpty is returned by Import for a database that holds records.
var ErrNotEmpty = errors.New("postgres: the database already holds a store; copy into an empty one")

// Import starts an import into an empty store.
func (s *Store) Import(ctx context.Context) (*Importer, error) {
	var n int64
	// Any record at all: a database holding only keys, organisations,
	// comps, revocations or cursors is not empty either, and a copy into
	// it failed halfway on a duplicate (red team, issue 16).
	err := s.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM customers) + (SELECT count(*) FROM accounts) + (SELECT count(*) FROM events)
		+ (SELECT count(*) FROM orgs) + (SELECT count(*) FROM comps) + (SELECT count(*) FROM audit) + (SELECT count(*) FROM history)
		+ (SELECT count(*) FROM cursors) + (SELECT count(*) FROM revocations) + (SELECT count(*) FROM api_keys) + (SELECT count(*) FROM dirty)
		+ (SELECT count(*) FROM clerk_versions)`).Scan(&n)
	if err != nil {
		return nil, fmt.Errorf("postgres: import: %w", err)
	}
	if n > 0 {
		return nil, ErrNotEmpty
	}
	return &Importer{s: s, ctx: ctx, subjects: map[string]bool{}}, nil
}

const importBatch = 2000

// tx is the batch's transaction, committed every importBatch records.
func (im *Importer) tx() (*wtx, error) {
	if im.t != nil && im.pending >= importBatch {
		if err := im.commit(); err != nil {
			return nil, err
		}
	}
	if im.t == nil {
		tx, err := im.s.pool.Begin(im.ctx)
		if err != nil {
			return nil, err
		}
		im.t = &wtx{Tx: tx, now: im.s.now()}
	}
	im.pending++
	return im.t, nil
}

func (im *Importer) commit() error {
	if im.t == nil {
		return nil
	}
	t := im.t
	im.t, im.pending = nil, 0
	if err := t.flushCounters(im.ctx); err != nil {
		t.Rollback(im.ctx)
		return err
	}
	return t.Commit(im.ctx)
}

func (im *Importer) exec(sql string, args ...any) error {
	t, err := im.tx()
	if err != nil {
		return err
	}
	_, err = t.Exec(im.ctx, sql, args...)
	return err
}

// Customer copies a customer and its link.
func (im *Importer) Customer(st proxy.CustomerState, hadTrial bool) error {
	t, err := im.tx()
	if err != nil {
		return err
	}
	rec := customerRecord{Subject: st.Subject.ID, Email: st.Email, HadTrial: hadTrial, SyncedAt: st.SyncedAt, Deleted: st.Deleted,
		Subscriptions: proxy.CloneSubscriptions(st.Subscriptions)}
	if err := putCustomer(im.ctx, t, st.CustomerID, &rec); err != nil {
		return err
	}
	t.countFacts(rec.Subscriptions, 1)
	if rec.Subject != "" {
		im.subjects[rec.Subject] = true
		return editAccount(im.ctx, t, rec.Subject, func(a *account) { a.Customer = st.CustomerID })
	}
	return nil
}

// User copies a user.
func (im *Importer) User(u proxy.User) error {
	t, err := im.tx()
	if err != nil {
		return err
	}
	im.subjects[u.ID] = true
	return editAccount(im.ctx, t, u.ID, func(a *account) { a.PutUser(u) })
}

// Org copies an organisation.
func (im *Importer) Org(o proxy.Org) error {
	return im.exec(`INSERT INTO orgs (id, slug, name) VALUES ($1, $2, $3)`, clean(o.ID), clean(o.Slug), clean(o.Name))
}

// Comp copies a comp.
func (im *Importer) Comp(c proxy.Comp) error {
	im.subjects[c.Subject.ID] = true
	return im.exec(`INSERT INTO comps (`+compColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		c.ID, c.Subject.ID, clean(c.Plan), c.ExpiresAt.UTC(), clean(c.By), clean(c.Reason), c.CreatedAt.UTC(), c.Revoked, ts(c.RevokedAt), clean(c.RevokedBy), clean(c.RevokeReason))
}

// Audit copies an audit entry.
func (im *Importer) Audit(e proxy.AuditEntry) error {
	return im.exec(`INSERT INTO audit (at, actor, action, subject, detail) VALUES ($1, $2, $3, $4, $5)`,
		e.At.UTC(), clean(e.Actor), clean(e.Action), e.Subject.ID, clean(e.Detail))
}

// History copies a history entry.
func (im *Importer) History(customerID string, h proxy.HistoryEntry) error {
	return im.exec(`INSERT INTO history (customer_id, at, subscription_id, plan, status, period_end, cancel_at_period_end) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		customerID, h.At.UTC(), h.SubscriptionID, h.Plan, string(h.Status), ts(h.PeriodEnd), h.CancelAtPeriodEnd)
}

// Event copies a processed event.
func (im *Importer) Event(id string, at time.Time) error {
	return im.exec(`INSERT INTO events (id, processed_at) VALUES ($1, $2)`, id, at.UTC())
}

// Cursor copies a cursor.
func (im *Importer) Cursor(name, value string) error {
	return im.exec(`INSERT INTO cursors (name, value) VALUES ($1, $2)`, name, value)
}

// Revocation copies an unexpired revocation.
func (im *Importer) Revocation(r proxy.Revocation) error {
	return im.exec(`INSERT INTO revocations (kind, sid, user_id, org_id, role, at, expires, happened) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		string(r.Kind), r.ID, r.UserID, r.OrgID, r.Role, r.At.UTC(), r.Expires.UTC(), ts(r.Happened))
}

// APIKey copies a key record.
func (im *Importer) APIKey(k proxy.APIKey) error {
	scopes := k.Scopes
	if scopes == nil {
		scopes = []string{}
	}
	return im.exec(`INSERT INTO api_keys (`+apiKeyColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		k.ID, k.Hash[:], k.Prefix, k.Subject.ID, clean(k.Name), scopes, clean(k.CreatedBy), k.CreatedAt.UTC(), ts(k.LastUsedAt), ts(k.ExpiresAt), ts(k.RevokedAt))
}

// Dirty copies a deferred sync's mark.
func (im *Importer) Dirty(m proxy.DirtyMark) error {
	return im.exec(`INSERT INTO dirty (customer_id, marked_at, due, seq, attempts) VALUES ($1, $2, $3, nextval('dirty_seq'), $4)`,
		m.CustomerID, m.MarkedAt.UTC(), m.Due.UTC(), m.Attempts)
}

// ClerkVersion writes a Clerk object's latest applied Clerk time, as
// OrderClerk keeps it (0: none).
func (im *Importer) ClerkVersion(key string, v proxy.ClerkVersion) error {
	var ms int64
	if !v.At.IsZero() {
		ms = v.At.UnixMilli()
	}
	return im.exec(`INSERT INTO clerk_versions (key, at_ms, deleted) VALUES ($1, $2, $3)`, key, ms, v.Deleted)
}

// Counts are how many records of each kind a store holds.
type Counts struct {
	Customers, Users, Orgs, Comps, Audit, History, Events, Cursors, Revocations, APIKeys, Dirty, Listed, ClerkVersions int64
}

// Finish lists every subject the records name (the listing and its
// counters, as each write would have) and returns the store's counts.
func (im *Importer) Finish() (Counts, error) {
	// In the order of their IDs: each listing write then goes next to the
	// last one in the accounts' primary key.
	ids := make([]string, 0, len(im.subjects))
	for id := range im.subjects {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		subject, err := proxy.ParseSubject(id)
		if err != nil {
			continue
		}
		t, err := im.tx()
		if err != nil {
			return Counts{}, err
		}
		if err := reindex(im.ctx, t, subject); err != nil {
			return Counts{}, fmt.Errorf("postgres: import: list %s: %w", id, err)
		}
	}
	if err := im.commit(); err != nil {
		return Counts{}, fmt.Errorf("postgres: import: %w", err)
	}
	return im.s.Counts(im.ctx)
}

// Abort rolls back the batch in progress.
func (im *Importer) Abort() {
	if im.t != nil {
		im.t.Rollback(im.ctx)
		im.t = nil
	}
}

// Counts counts the store's records (tollgate store copy's check).
func (s *Store) Counts(ctx context.Context) (Counts, error) {
	var c Counts
	err := s.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM customers), (SELECT count(*) FROM accounts WHERE is_user),
		(SELECT count(*) FROM orgs), (SELECT count(*) FROM comps), (SELECT count(*) FROM audit), (SELECT count(*) FROM history),
		(SELECT count(*) FROM events), (SELECT count(*) FROM cursors), (SELECT count(*) FROM revocations WHERE expires > now()),
		(SELECT count(*) FROM api_keys), (SELECT count(*) FROM dirty), (SELECT count(*) FROM accounts WHERE listed),
		(SELECT count(*) FROM clerk_versions)`).
		Scan(&c.Customers, &c.Users, &c.Orgs, &c.Comps, &c.Audit, &c.History, &c.Events, &c.Cursors, &c.Revocations, &c.APIKeys, &c.Dirty, &c.Listed, &c.ClerkVersions)
	if err != nil {
		return Counts{}, fmt.Errorf("postgres: counts: %w", err)
	}
	return c, nil
}
