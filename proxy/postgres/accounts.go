package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tollgate/tollgate/proxy"
)

// account is one row of accounts: what it holds, and how a write changes
// it, are the domain's (proxy.AccountRecord), as for bolt's record.
type account = proxy.AccountRecord

// listing is what the listing's indexes order and filter a subject by
// (proxy.ListingOf).
type listing = proxy.Listing

const accountColumns = `is_user, email, first_seen, last_seen, org_ids, customer_id, listed, list_email, statuses, plans, list_rank`

func scanAccount(row pgx.Row) (account, error) {
	var (
		a           account
		email       []byte
		first, last *time.Time
		listed      bool
		l           listing
		rank        int
	)
	err := row.Scan(&a.User, &email, &first, &last, &a.OrgIDs, &a.Customer, &listed, &l.Email, &l.Statuses, &l.Plans, &rank)
	if err != nil {
		return account{}, err
	}
	a.Email = string(email)
	a.FirstSeen, a.LastSeen = tm(first), tm(last)
	if len(a.OrgIDs) == 0 {
		a.OrgIDs = nil
	}
	if listed {
		l.Rank = 255 - rank
		if len(l.Statuses) == 0 {
			l.Statuses = nil
		}
		if len(l.Plans) == 0 {
			l.Plans = nil
		}
		a.List = &l
	}
	return a, nil
}

// getAccount reads an account; ok is false when there is none.
func getAccount(ctx context.Context, q querier, id string) (account, bool, error) {
	a, err := scanAccount(q.QueryRow(ctx, `SELECT `+accountColumns+` FROM accounts WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return account{}, false, nil
	}
	if err != nil {
		return account{}, false, fmt.Errorf("account %s: %w", id, err)
	}
	return a, true, nil
}

// lockAccount reads an account for update, making its row first if it has
// none (so that two transactions on a new subject queue on one row); ok
// is false when the row is new. A row left empty is deleted by putAccount.
func lockAccount(ctx context.Context, t *wtx, id string) (account, bool, error) {
	var fresh bool
	err := t.QueryRow(ctx, `INSERT INTO accounts (id) VALUES ($1) ON CONFLICT (id) DO NOTHING RETURNING true`, id).Scan(&fresh)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return account{}, false, fmt.Errorf("account %s: %w", id, err)
	}
	a, err := scanAccount(t.QueryRow(ctx, `SELECT `+accountColumns+` FROM accounts WHERE id = $1 FOR UPDATE`, id))
	if err != nil {
		return account{}, false, fmt.Errorf("account %s: %w", id, err)
	}
	return a, !fresh, nil
}

// tags are the listing counters an account is counted in.
func tags(a *account) []string {
	if a == nil {
		return nil
	}
	return a.List.Tags()
}

// putAccount writes next over prev (nil: the row was new), moving the
// listing counters; an empty account's row is deleted.
func putAccount(ctx context.Context, t *wtx, id string, prev, next *account) error {
	oldTags, newTags := tags(prev), tags(next)
	for _, tag := range oldTags {
		if !slices.Contains(newTags, tag) {
			t.countList(tag, -1)
		}
	}
	for _, tag := range newTags {
		if !slices.Contains(oldTags, tag) {
			t.countList(tag, 1)
		}
	}
	if next.Empty() {
		if _, err := t.Exec(ctx, `DELETE FROM accounts WHERE id = $1`, id); err != nil {
			return fmt.Errorf("account %s: %w", id, err)
		}
		return nil
	}
	var (
		l            listing
		listed       = next.List != nil
		first, last  int64
		orgs         = next.OrgIDs
		stats, plans = []string{}, []string{}
		rank         = 0
	)
	if listed {
		l = *next.List
		stats, plans = append(stats, l.Statuses...), append(plans, l.Plans...)
		rank = 255 - l.Rank
	}
	if next.User {
		first, last = seconds(next.FirstSeen), seconds(next.LastSeen)
	}
	if orgs == nil {
		orgs = []string{}
	}
	_, err := t.Exec(ctx, `INSERT INTO accounts (id, `+accountColumns+`, first_s, last_s)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
		ON CONFLICT (id) DO UPDATE SET is_user = $2, email = $3, first_seen = $4, last_seen = $5, org_ids = $6,
			customer_id = $7, listed = $8, list_email = $9, statuses = $10, plans = $11, list_rank = $12, first_s = $13, last_s = $14`,
		id, next.User, []byte(next.Email), ts(next.FirstSeen), ts(next.LastSeen), orgs, next.Customer, listed, l.Email, stats, plans, rank, first, last)
	if err != nil {
		return fmt.Errorf("account %s: %w", id, err)
	}
	return nil
}

// editAccount locks, edits and writes an account.
func editAccount(ctx context.Context, t *wtx, id string, edit func(*account)) error {
	prev, ok, err := lockAccount(ctx, t, id)
	if err != nil {
		return err
	}
	next := prev.Clone()
	edit(&next)
	if !ok {
		return putAccount(ctx, t, id, nil, &next)
	}
	return putAccount(ctx, t, id, &prev, &next)
}

// seconds is a sort key: unix seconds, 0 for the zero time (as bolt's).
func seconds(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return min(max(t.Unix(), 0), math.MaxUint32)
}

// accountView is what the store holds of a subject: listed is false when
// it holds nothing the listing shows (proxy.AccountRecord.View).
func accountView(ctx context.Context, q querier, subject proxy.Subject, a *account) (proxy.Account, bool, error) {
	var cust *proxy.CustomerRecord
	if a.Customer != "" {
		rec, ok, err := getCustomer(ctx, q, a.Customer, false)
		if err != nil {
			return proxy.Account{}, false, err
		}
		if ok {
			cust = &rec
		}
	}
	comps, err := compsOf(ctx, q, subject)
	if err != nil {
		return proxy.Account{}, false, err
	}
	pa, listed := a.View(subject, cust, comps)
	return pa, listed, nil
}

// reindex brings a subject's listing up to date with what it holds.
func reindex(ctx context.Context, t *wtx, subject proxy.Subject) error {
	if !subject.Valid() {
		return nil
	}
	prev, ok, err := lockAccount(ctx, t, subject.ID)
	if err != nil {
		return err
	}
	pa, listed, err := accountView(ctx, t, subject, &prev)
	if err != nil {
		return err
	}
	var l *listing
	if listed {
		l = proxy.ListingOf(&pa, t.now)
	}
	if ok && prev.List.Equal(l) {
		return nil
	}
	next := prev.Clone()
	next.List = l
	if !ok {
		return putAccount(ctx, t, subject.ID, nil, &next)
	}
	return putAccount(ctx, t, subject.ID, &prev, &next)
}

// reindexSubjects reindexes the distinct subjects named by their IDs.
func reindexSubjects(ctx context.Context, t *wtx, ids ...string) error {
	for i, id := range ids {
		if id == "" || slices.Contains(ids[:i], id) {
			continue
		}
		subject, err := proxy.ParseSubject(id)
		if err != nil {
			return err
		}
		if err := reindex(ctx, t, subject); err != nil {
			return err
		}
	}
	return nil
}

// customerRecord is one row of customers.
type customerRecord = proxy.CustomerRecord

func getCustomer(ctx context.Context, q querier, id string, forUpdate bool) (customerRecord, bool, error) {
	sql := `SELECT ` + customerColumns + ` FROM customers WHERE id = $1`
	if forUpdate {
		sql += ` FOR UPDATE`
	}
	rec, err := scanCustomer(q.QueryRow(ctx, sql, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return customerRecord{}, false, nil
	}
	if err != nil {
		return customerRecord{}, false, fmt.Errorf("customer %s: %w", id, err)
	}
	return rec, true, nil
}

const customerColumns = `subject, email, had_trial, synced_at, deleted, subscriptions`

func scanCustomer(row pgx.Row) (customerRecord, error) {
	var (
		rec    customerRecord
		email  []byte
		synced *time.Time
		subs   []byte
	)
	if err := row.Scan(&rec.Subject, &email, &rec.HadTrial, &synced, &rec.Deleted, &subs); err != nil {
		return customerRecord{}, err
	}
	rec.Email, rec.SyncedAt = string(email), tm(synced)
	if err := json.Unmarshal(subs, &rec.Subscriptions); err != nil {
		return customerRecord{}, fmt.Errorf("subscriptions: %w", err)
	}
	if len(rec.Subscriptions) == 0 {
		rec.Subscriptions = nil
	}
	return rec, nil
}

func putCustomer(ctx context.Context, t *wtx, id string, rec *customerRecord) error {
	subs := proxy.CloneSubscriptions(rec.Subscriptions)
	if subs == nil {
		subs = []proxy.Subscription{}
	}
	data, err := json.Marshal(subs)
	if err != nil {
		return fmt.Errorf("customer %s: %w", id, err)
	}
	_, err = t.Exec(ctx, `INSERT INTO customers (id, subject, email, had_trial, synced_at, deleted, subscriptions)
		VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (id) DO UPDATE SET subject = $2, email = $3, had_trial = $4, synced_at = $5, deleted = $6, subscriptions = $7`,
		id, rec.Subject, []byte(rec.Email), rec.HadTrial, ts(rec.SyncedAt), rec.Deleted, data)
	if err != nil {
		return fmt.Errorf("customer %s: %w", id, err)
	}
	return nil
}

// clean drops NUL bytes, which a text column cannot hold, from free text
// (names, reasons, details); emails, which identify, are kept whole in
// bytea columns.
func clean(s string) string { return strings.ReplaceAll(s, "\x00", "") }
