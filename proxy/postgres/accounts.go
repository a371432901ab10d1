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

// account is one row of accounts, as bolt's account record
// (proxy/bolt/accounts.go): a user, its customer link and its listing.
type account struct {
	User      bool
	Email     string
	FirstSeen time.Time
	LastSeen  time.Time
	OrgIDs    []string
	Customer  string
	List      *listing // nil: not listed
}

// listing is what the listing's indexes order and filter a subject by.
type listing struct {
	Email    string
	Statuses []string
	Plans    []string
	Rank     int
}

func (a *account) empty() bool { return !a.User && a.Customer == "" && a.List == nil }

func (a *account) clone() account {
	c := *a
	c.OrgIDs = slices.Clone(a.OrgIDs)
	if a.List != nil {
		l := *a.List
		l.Statuses, l.Plans = slices.Clone(l.Statuses), slices.Clone(l.Plans)
		c.List = &l
	}
	return c
}

func (a *account) user(id string) proxy.User {
	return proxy.User{ID: id, Email: a.Email, FirstSeen: a.FirstSeen, LastSeen: a.LastSeen, OrgIDs: slices.Clone(a.OrgIDs)}
}

// seen widens the first and last seen times to include at.
func (a *account) seen(at time.Time) {
	if at.IsZero() {
		return
	}
	at = at.UTC()
	if a.FirstSeen.IsZero() || at.Before(a.FirstSeen) {
		a.FirstSeen = at
	}
	if at.After(a.LastSeen) {
		a.LastSeen = at
	}
}

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
func (a *account) tags() []string {
	if a == nil || a.List == nil {
		return nil
	}
	tags := []string{tagAll}
	for _, s := range a.List.Statuses {
		tags = append(tags, "s:"+s)
	}
	for _, p := range a.List.Plans {
		tags = append(tags, "p:"+p)
	}
	return tags
}

// putAccount writes next over prev (nil: the row was new), moving the
// listing counters; an empty account's row is deleted.
func putAccount(ctx context.Context, t *wtx, id string, prev, next *account) error {
	oldTags, newTags := prev.tags(), next.tags()
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
	if next.empty() {
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
	next := prev.clone()
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
// it holds nothing the listing shows (no user, no linked customer, no
// comp), as bolt's accountView.
func accountView(ctx context.Context, q querier, subject proxy.Subject, a *account) (proxy.Account, bool, error) {
	pa := proxy.Account{Entitlements: proxy.Entitlements{Subject: subject}}
	if a.User && subject.Kind == proxy.SubjectUser {
		u := a.user(subject.ID)
		pa.User = &u
	}
	linked := false
	if a.Customer != "" {
		cust, ok, err := getCustomer(ctx, q, a.Customer, false)
		if err != nil {
			return proxy.Account{}, false, err
		}
		if linked = !ok || cust.Subject == subject.ID; linked {
			pa.CustomerID, pa.CustomerEmail, pa.SyncedAt = a.Customer, cust.Email, cust.SyncedAt
			pa.Subscriptions = cust.Subscriptions
		}
	}
	var err error
	if pa.Comps, err = compsOf(ctx, q, subject); err != nil {
		return proxy.Account{}, false, err
	}
	return pa, pa.User != nil || linked || len(pa.Comps) > 0, nil
}

// listingOf is the listing of an account at now, as bolt's (proxy/bolt/index.go).
func listingOf(a *proxy.Account, now time.Time) *listing {
	l := &listing{Email: strings.ToLower(strings.Map(func(c rune) rune {
		if proxy.IsControlRune(c) {
			return -1
		}
		return c
	}, a.Email()))}
	add := func(list *[]string, v string) {
		if v != "" && !slices.Contains(*list, v) {
			*list = append(*list, v)
		}
	}
	for i := range a.Subscriptions {
		add(&l.Statuses, string(a.Subscriptions[i].Status))
		add(&l.Plans, a.Subscriptions[i].Plan)
	}
	for i := range a.Comps {
		if a.Comps[i].Active(now) {
			add(&l.Statuses, string(proxy.StatusActive))
			add(&l.Plans, a.Comps[i].Plan)
		}
	}
	if len(a.Subscriptions) == 0 {
		add(&l.Statuses, proxy.StatusNone)
	}
	slices.Sort(l.Statuses)
	slices.Sort(l.Plans)
	sum := a.Summary(proxy.AccessPolicy{}, now)
	l.Rank = sum.Status.Rank()
	return l
}

func equalListing(a, b *listing) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Email == b.Email && a.Rank == b.Rank && slices.Equal(a.Statuses, b.Statuses) && slices.Equal(a.Plans, b.Plans)
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
		l = listingOf(&pa, t.now)
	}
	if ok && equalListing(prev.List, l) {
		return nil
	}
	next := prev.clone()
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
type customerRecord struct {
	Subject       string
	Email         string
	HadTrial      bool
	SyncedAt      time.Time
	Deleted       bool
	Subscriptions []proxy.Subscription
}

func getCustomer(ctx context.Context, q querier, id string, forUpdate bool) (customerRecord, bool, error) {
	var (
		rec    customerRecord
		email  []byte
		synced *time.Time
		subs   []byte
	)
	sql := `SELECT subject, email, had_trial, synced_at, deleted, subscriptions FROM customers WHERE id = $1`
	if forUpdate {
		sql += ` FOR UPDATE`
	}
	err := q.QueryRow(ctx, sql, id).Scan(&rec.Subject, &email, &rec.HadTrial, &synced, &rec.Deleted, &subs)
	if errors.Is(err, pgx.ErrNoRows) {
		return customerRecord{}, false, nil
	}
	if err != nil {
		return customerRecord{}, false, fmt.Errorf("customer %s: %w", id, err)
	}
	rec.Email, rec.SyncedAt = string(email), tm(synced)
	if err := json.Unmarshal(subs, &rec.Subscriptions); err != nil {
		return customerRecord{}, false, fmt.Errorf("customer %s: subscriptions: %w", id, err)
	}
	if len(rec.Subscriptions) == 0 {
		rec.Subscriptions = nil
	}
	return rec, true, nil
}

func putCustomer(ctx context.Context, t *wtx, id string, rec *customerRecord) error {
	subs := utcSubscriptions(rec.Subscriptions)
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

// utcSubscriptions copies subs with every time in UTC: stored and read
// back alike, whatever zone the caller's times were in.
func utcSubscriptions(subs []proxy.Subscription) []proxy.Subscription {
	if len(subs) == 0 {
		return nil
	}
	out := cloneSubscriptions(subs)
	for i := range out {
		s := &out[i]
		for _, t := range []*time.Time{&s.CurrentPeriodEnd, &s.TrialEnd, &s.PastDueSince, &s.CollectionResumesAt, &s.SyncedAt, &s.Created} {
			if !t.IsZero() {
				*t = t.UTC()
			}
		}
	}
	return out
}

// clean drops NUL bytes, which a text column cannot hold, from free text
// (names, reasons, details); emails, which identify, are kept whole in
// bytea columns.
func clean(s string) string { return strings.ReplaceAll(s, "\x00", "") }
