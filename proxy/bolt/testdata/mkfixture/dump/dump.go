// Package dump reads what a store answers about the fixture that mkfixture
// writes, through the API every schema keeps: mkfixture writes it next to
// the store with the tollgate of the store's schema, and the migration
// test (proxy/bolt/fixture_test.go) takes it again from the migrated
// store, with this same code. It imports the domain only, so it builds
// against any past tollgate: with -tags schema1, that of schema 1, which
// had no listing, API keys or dirty marks.
package dump

import (
	"context"
	"fmt"
	"time"

	"github.com/tollgate/tollgate/proxy"
)

// Dump is what a store answers about the fixture, through the API every
// schema keeps (and, from schema 2, its listing and dashboard).
type Dump struct {
	Details     map[string]proxy.UserDetail
	Ents        map[string]*proxy.Entitlements
	CustomerOf  map[string]string
	SubjectOf   map[string]string
	HadTrial    map[string]bool
	History     map[string][]proxy.HistoryEntry
	Users       []proxy.User
	Orgs        map[string]proxy.Org
	Events      map[string]bool
	Cursors     map[string]string
	Revocations []proxy.Revocation
	Audit       []proxy.AuditEntry
	Listing     *Listing `json:",omitempty"`
	Extras      *Extras  `json:",omitempty"`
}

// Listing is the admin console's view (schema 2 and later).
type Listing struct {
	Pages     map[string][]string
	Totals    map[string]int64
	Dashboard proxy.Dashboard
}

// Store is what Take reads: the API of the store of schema 1 (a
// *bolt.Store of any schema).
type Store interface {
	UserDetail(ctx context.Context, subject proxy.Subject, limit int) (proxy.UserDetail, error)
	Entitlements(ctx context.Context, subject proxy.Subject) (*proxy.Entitlements, error)
	CustomerOf(ctx context.Context, subject proxy.Subject) (string, error)
	SubjectOf(ctx context.Context, customerID string) (proxy.Subject, bool, error)
	HadTrial(ctx context.Context, customerID string) (bool, error)
	History(ctx context.Context, customerID string, limit int) ([]proxy.HistoryEntry, error)
	Users(ctx context.Context, after string, limit int) ([]proxy.User, error)
	Org(ctx context.Context, id string) (proxy.Org, error)
	EventProcessed(ctx context.Context, eventID string) (bool, error)
	Cursor(ctx context.Context, name string) (string, error)
	Revocations(ctx context.Context, now time.Time) ([]proxy.Revocation, error)
	AuditLog(ctx context.Context, subject proxy.Subject, limit int) ([]proxy.AuditEntry, error)
}

var (
	subjects  = []string{"user_ada", "user_bob", "user_cy", "user_dee", "user_long", "user_eve", "user_fay", "user_gus", "user_hal", "user_odd", "user_ivy", "user_none", "org_acme"}
	customers = []string{"cus_ada", "cus_bob", "cus_dee", "cus_acme", "cus_eve", "cus_orphan", "cus_fay", "cus_gus", "cus_odd", "cus_none"}
)

// Take reads the dump.
func Take(ctx context.Context, s Store, now time.Time) (*Dump, error) {
	d := &Dump{Details: map[string]proxy.UserDetail{}, Ents: map[string]*proxy.Entitlements{}, CustomerOf: map[string]string{},
		SubjectOf: map[string]string{}, HadTrial: map[string]bool{}, History: map[string][]proxy.HistoryEntry{}, Orgs: map[string]proxy.Org{},
		Events: map[string]bool{}, Cursors: map[string]string{}}
	for _, id := range subjects {
		subject, err := proxy.ParseSubject(id)
		if err != nil {
			return nil, err
		}
		if det, err := s.UserDetail(ctx, subject, 100); err == nil {
			d.Details[id] = det
		}
		if d.Ents[id], err = s.Entitlements(ctx, subject); err != nil {
			return nil, err
		}
		if d.CustomerOf[id], err = s.CustomerOf(ctx, subject); err != nil {
			return nil, err
		}
	}
	for _, c := range customers {
		subj, ok, err := s.SubjectOf(ctx, c)
		if err != nil {
			return nil, err
		}
		if ok {
			d.SubjectOf[c] = subj.String()
		}
		if d.HadTrial[c], err = s.HadTrial(ctx, c); err != nil {
			return nil, err
		}
		if d.History[c], err = s.History(ctx, c, 100); err != nil {
			return nil, err
		}
	}
	var err error
	if d.Users, err = s.Users(ctx, "", 100); err != nil {
		return nil, err
	}
	if o, err := s.Org(ctx, "org_acme"); err == nil {
		d.Orgs["org_acme"] = o
	}
	for _, e := range []string{"evt_1", "evt_2", "evt_3", "evt_4", "evt_ignored", "evt_none"} {
		if d.Events[e], err = s.EventProcessed(ctx, e); err != nil {
			return nil, err
		}
	}
	for _, c := range []string{"sync_all", "none"} {
		if d.Cursors[c], err = s.Cursor(ctx, c); err != nil {
			return nil, err
		}
	}
	if d.Revocations, err = s.Revocations(ctx, now); err != nil {
		return nil, err
	}
	if d.Audit, err = s.AuditLog(ctx, proxy.Subject{}, 100); err != nil {
		return nil, err
	}
	if d.Listing, err = takeListing(ctx, s); err != nil {
		return nil, fmt.Errorf("listing: %w", err)
	}
	if d.Extras, err = takeExtras(ctx, s, now); err != nil {
		return nil, fmt.Errorf("extras: %w", err)
	}
	return d, nil
}
