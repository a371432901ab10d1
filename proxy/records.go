package proxy

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// The records every store keeps, and the rules that change them. A store
// (proxy/bolt, proxy/postgres) decides how a record is laid out and read;
// what a write does to it is decided here, once, for every store
// (docs/ARCHITECTURE.md, "Where the fact lives").

// AccountRecord is what a store keeps of one subject besides its
// customer's record and its comps: what Clerk said of a user and when the
// gateway saw them, the subject's Stripe customer, and what the admin
// listing orders and filters it by.
type AccountRecord struct {
	User      bool // a user tollgate has recorded (sign-ins, Clerk's webhooks)
	Email     string
	FirstSeen time.Time
	LastSeen  time.Time
	OrgIDs    []string // sorted; nil for none
	Customer  string   // the linked Stripe customer ("": none)
	List      *Listing // nil: not listed
}

// Listing is what the admin listing holds of a listed subject
// (ListingOf).
type Listing struct {
	Email    string   // Account.Email, lower case, without control characters
	Statuses []string // every status it holds, sorted
	Plans    []string // every plan it holds, sorted
	Rank     int      // its summary's status's Rank when written
}

// Empty reports whether the record keeps nothing: a store deletes it.
func (a *AccountRecord) Empty() bool { return !a.User && a.Customer == "" && a.List == nil }

// Clone copies a so that editing the copy's slices leaves a alone.
func (a *AccountRecord) Clone() AccountRecord {
	c := *a
	c.OrgIDs = slices.Clone(a.OrgIDs)
	if a.List != nil {
		l := *a.List
		l.Statuses, l.Plans = slices.Clone(l.Statuses), slices.Clone(l.Plans)
		c.List = &l
	}
	return c
}

// AsUser is the record's user part as the user id.
func (a *AccountRecord) AsUser(id string) User {
	return User{ID: id, Email: a.Email, FirstSeen: a.FirstSeen, LastSeen: a.LastSeen, OrgIDs: slices.Clone(a.OrgIDs)}
}

// Seen records the user as seen at at: FirstSeen is the earliest sighting,
// LastSeen the latest, so a sighting written twice changes nothing. A zero
// at records the user and widens nothing.
func (a *AccountRecord) Seen(at time.Time) {
	a.User = true
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

// PutUser merges what Clerk says of a user into the record: its email;
// its organisations, unless u.OrgIDs is nil (Clerk's user events carry
// none: memberships come in their own); and its first and last seen times,
// widened by u's.
func (a *AccountRecord) PutUser(u User) {
	a.User = true
	a.Email = u.Email
	if u.OrgIDs != nil {
		a.OrgIDs = slices.Clone(u.OrgIDs)
	}
	a.Seen(u.FirstSeen)
	a.Seen(u.LastSeen)
}

// ForgetUser drops the user part (Clerk deleted the user); the customer
// link stays: the Stripe customer outlives the Clerk user.
func (a *AccountRecord) ForgetUser() {
	a.User, a.Email, a.FirstSeen, a.LastSeen, a.OrgIDs = false, "", time.Time{}, time.Time{}, nil
}

// JoinOrg records the user, a member of orgID (a membership may be the
// first a store hears of a user).
func (a *AccountRecord) JoinOrg(orgID string) {
	a.User = true
	if !slices.Contains(a.OrgIDs, orgID) {
		a.OrgIDs = append(a.OrgIDs, orgID)
		slices.Sort(a.OrgIDs)
	}
}

// LeaveOrg takes orgID out of the user's organisations.
func (a *AccountRecord) LeaveOrg(orgID string) {
	a.User = true
	if a.OrgIDs = slices.DeleteFunc(a.OrgIDs, func(x string) bool { return x == orgID }); len(a.OrgIDs) == 0 {
		a.OrgIDs = nil
	}
}

// View is what a store records of subject, whose record is a: the user,
// the linked customer (cust: its record, nil when it has none yet) and
// the subject's comps. listed is false when it records nothing the
// listing shows: no user, no customer that names it back, no comp. A link
// the customer does not name back dangles and grants nothing; a customer
// linked but never synced has no record yet, and is linked.
func (a *AccountRecord) View(subject Subject, cust *CustomerRecord, comps []Comp) (pa Account, listed bool) {
	pa = Account{Entitlements: Entitlements{Subject: subject, Comps: comps}}
	if a.User && subject.Kind == SubjectUser {
		u := a.AsUser(subject.ID)
		pa.User = &u
	}
	linked := a.Customer != "" && (cust == nil || cust.Subject == subject.ID)
	if linked {
		pa.CustomerID = a.Customer
		if cust != nil {
			pa.CustomerEmail, pa.SyncedAt, pa.Subscriptions = cust.Email, cust.SyncedAt, cust.Subscriptions
		}
	}
	return pa, pa.User != nil || linked || len(comps) > 0
}

// ListingOf is the listing of an account at now: every status and plan it
// holds (a comp that has not expired counts as active; a subject without
// a Stripe subscription is also StatusNone, as its comps may expire), its
// email without control characters (a store may end a key's email with a
// NUL), lower case, and its summary's rank.
func ListingOf(a *Account, now time.Time) *Listing {
	l := &Listing{Email: strings.ToLower(strings.Map(func(c rune) rune {
		if IsControlRune(c) {
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
			add(&l.Statuses, string(StatusActive))
			add(&l.Plans, a.Comps[i].Plan)
		}
	}
	if len(a.Subscriptions) == 0 {
		add(&l.Statuses, StatusNone)
	}
	slices.Sort(l.Statuses)
	slices.Sort(l.Plans)
	sum := a.Summary(AccessPolicy{}, now)
	l.Rank = sum.Status.Rank()
	return l
}

// Equal reports whether two listings (nil: not listed) are the same.
func (l *Listing) Equal(m *Listing) bool {
	if l == nil || m == nil {
		return l == m
	}
	return l.Email == m.Email && l.Rank == m.Rank && slices.Equal(l.Statuses, m.Statuses) && slices.Equal(l.Plans, m.Plans)
}

// ListingTagAll is the listing counter of every listed subject.
const ListingTagAll = "*"

// Tags are the listing counters a listed subject counts in: ListingTagAll,
// "s:" and each status, "p:" and each plan. None for nil.
func (l *Listing) Tags() []string {
	if l == nil {
		return nil
	}
	tags := make([]string, 0, 1+len(l.Statuses)+len(l.Plans))
	tags = append(tags, ListingTagAll)
	for _, s := range l.Statuses {
		tags = append(tags, "s:"+s)
	}
	for _, p := range l.Plans {
		tags = append(tags, "p:"+p)
	}
	return tags
}

// TotalTag is the listing counter that tells how many subjects the
// filter's status or plan selects (Listing.Tags); ok is false when no one
// counter does (a status and a plan together). The query is the caller's.
func (f *UserFilter) TotalTag() (tag string, ok bool) {
	switch {
	case f.Status != "" && f.Plan != "":
		return "", false
	case f.Status != "":
		return "s:" + f.Status, true
	case f.Plan != "":
		return "p:" + f.Plan, true
	}
	return ListingTagAll, true
}

// CustomerRecord is what a store keeps of one Stripe customer.
type CustomerRecord struct {
	Subject       string // the Clerk ID (user_…, org_…) it belongs to ("": nobody yet)
	Email         string
	Subscriptions []Subscription
	HadTrial      bool // ever, across syncs
	Deleted       bool // Stripe deleted the customer
	SyncedAt      time.Time
}

// Check says why a store cannot commit the state, nil when it can: it
// needs a customer ID, and a valid subject when it names one.
func (st *CustomerState) Check() error {
	if st.CustomerID == "" {
		return errors.New("empty customer id")
	}
	if st.Subject != (Subject{}) {
		return st.Subject.Check()
	}
	return nil
}

// Commit applies a freshly synced state to the stored record r (known:
// the store had one) at now, and reports what the store must write. A
// deletion of a customer never seen writes nothing (write false: no
// tombstone). Otherwise the record takes the state's email (when it
// carries one) and its sync time (state.SyncedAt, else now), remembers
// any trial for good (HadTrial), and either drops its subscriptions and
// subject (Deleted) or takes the fresh subscriptions merged with the
// stored ones (MergeSubscriptions), deep-copied, times in UTC; changed are
// those of them a history entry records (ChangedSubscriptions), at
// syncedAt. Linking state.Subject, and undoing the old subject's link, are
// the store's: r.Subject is cleared only by a deletion.
func (r *CustomerRecord) Commit(state CustomerState, known bool, now time.Time) (syncedAt time.Time, changed []Subscription, write bool) {
	syncedAt = state.SyncedAt
	if syncedAt.IsZero() {
		syncedAt = now
	}
	if state.Deleted && !known {
		return syncedAt, nil, false
	}
	old := r.Subscriptions
	merged := CloneSubscriptions(MergeSubscriptions(old, state.Subscriptions, syncedAt))
	r.HadTrial = r.HadTrial || HadTrial(merged)
	if state.Email != "" {
		r.Email = state.Email
	}
	r.SyncedAt = syncedAt.UTC()
	if state.Deleted {
		r.Subject, r.Subscriptions, r.Deleted = "", nil, true
		return syncedAt, nil, true
	}
	r.Deleted = false
	r.Subscriptions = merged
	return syncedAt, ChangedSubscriptions(old, merged), true
}

// HadTrial reports whether any subscription is or was a trial.
func HadTrial(subs []Subscription) bool {
	for i := range subs {
		if subs[i].Status == StatusTrialing || !subs[i].TrialEnd.IsZero() {
			return true
		}
	}
	return false
}

// ChangedSubscriptions are the fresh subscriptions that are new, or whose
// status, plan, period end, cancel-at-period-end or paused collection
// differ from the stored ones: the subscription history's entries.
func ChangedSubscriptions(old, fresh []Subscription) []Subscription {
	prev := make(map[string]*Subscription, len(old))
	for i := range old {
		prev[old[i].ID] = &old[i]
	}
	var out []Subscription
	for _, s := range fresh {
		p := prev[s.ID]
		if p == nil || p.Status != s.Status || p.Plan != s.Plan || !p.CurrentPeriodEnd.Equal(s.CurrentPeriodEnd) ||
			p.CancelAtPeriodEnd != s.CancelAtPeriodEnd || p.PausedCollection != s.PausedCollection {
			out = append(out, s)
		}
	}
	return out
}

// CloneSubscriptions copies subs deeply, every time in UTC (the zero time
// stays zero): what a store returns must not share the caller's slices,
// and must be what a read of the stored record gives, whatever zone the
// caller's times were in. nil for none.
func CloneSubscriptions(subs []Subscription) []Subscription {
	if len(subs) == 0 {
		return nil
	}
	out := slices.Clone(subs)
	for i := range out {
		s := &out[i]
		s.PriceIDs = slices.Clone(s.PriceIDs)
		for _, t := range []*time.Time{&s.CurrentPeriodEnd, &s.BillingCycleAnchor, &s.TrialEnd, &s.PastDueSince,
			&s.CollectionResumesAt, &s.SyncedAt, &s.Created, &s.EndedAt} {
			if !t.IsZero() {
				*t = t.UTC()
			}
		}
	}
	return out
}

// WithComps puts a subject's comps on ents (nil: the subject has no
// customer), making Entitlements for a subject that has only comps. All
// of them, revoked and expired ones too: which count, and when, is
// Entitlements.All's to say. Without comps it returns ents as it is.
func WithComps(ents *Entitlements, subject Subject, comps []Comp) *Entitlements {
	if len(comps) == 0 {
		return ents
	}
	if ents == nil {
		ents = &Entitlements{Subject: subject}
	}
	ents.Comps = comps
	return ents
}

// Check says why a comp cannot be stored, nil when it can: it needs an ID
// without NUL bytes (NewCompID), a plan, an expiry and a valid subject.
func (c *Comp) Check() error {
	switch {
	case c.ID == "" || strings.ContainsRune(c.ID, 0):
		return errors.New("invalid comp id")
	case c.Plan == "":
		return errors.New("empty plan")
	case c.ExpiresAt.IsZero():
		return errors.New("no expiry")
	}
	return c.Subject.Check()
}

// Replaces says why c cannot be stored over old, the stored comp of its
// ID: a comp's subject never changes.
func (c *Comp) Replaces(old *Comp) error {
	if old.Subject != c.Subject {
		return fmt.Errorf("comp belongs to %s, not %s", old.Subject, c.Subject)
	}
	return nil
}

// Check is nil for a valid subject, else an error wrapping
// ErrInvalidSubject: a store keys its records by valid subjects only.
func (s Subject) Check() error {
	if !s.Valid() {
		return fmt.Errorf("subject %.40q: %w", s.String(), ErrInvalidSubject)
	}
	return nil
}
