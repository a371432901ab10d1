package bolt

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.etcd.io/bbolt"

	"github.com/tollgate/tollgate/proxy"
)

// The listing index lets the admin console page, sort, filter and search a
// million users without reading them all. Every subject the listing shows
// (proxy.Account) has a listed record, derived from its account whenever a
// write changes the account, in the write's own transaction (relist), and
// from it a handful of index keys:
//
//	listed          subject key                                   → JSON {"v":1, email, first_seen, last_seen, statuses, plans, rank}
//	listing         sort, tag, NUL, sort value, subject key       → the subject's statuses NUL plans (for tags other than "*")
//	listing_counts  tag                                           → subjects holding it, uint64 big-endian
//
// A sort is one byte: 'i' by subject key (no sort value), 'l' last seen
// and 'f' first seen (8 bytes: unix nanoseconds, big-endian), 'e' email
// (lower case, then NUL), 'r' status (a byte, the most telling first, then
// last seen). A tag says which filter's list the key is in: "*" (every
// subject), "s:<status>" and "p:<plan>" ('r' has "*" and the plan tags
// only). A subject is in the list of every status and plan it holds, so a
// filter's list holds every subject the filter could match: the listing
// still judges each one by its summary at the time of reading (comps
// expire and past_due_grace runs out without a write).
const (
	bucketListed        = "listed"
	bucketListing       = "listing"
	bucketListingCounts = "listing_counts"

	tagAll = "*"

	sortByID        = 'i'
	sortByLastSeen  = 'l'
	sortByFirstSeen = 'f'
	sortByEmail     = 'e'
	sortByStatus    = 'r'

	maxEmailKey = 128 // bytes of the email in a key: enough to order and find
)

// listedRecord is what the index knows of one subject.
type listedRecord struct {
	V         int      `json:"v"`
	Email     string   `json:"email,omitempty"` // lower case
	FirstSeen int64    `json:"first_seen,omitempty"`
	LastSeen  int64    `json:"last_seen,omitempty"`
	Statuses  []string `json:"statuses,omitempty"`
	Plans     []string `json:"plans,omitempty"`
	Rank      int      `json:"rank,omitempty"` // the status's Rank when written
}

func (r *listedRecord) version() int { return r.V }

// nanos is t in unix nanoseconds, 0 for the zero time.
func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// listedOf derives the listed record of an account at now: every status
// and plan it holds (a comp that has not expired counts as active; a
// subject without a Stripe subscription is also "none", as its comps may
// expire).
func listedOf(a *proxy.Account, now time.Time) listedRecord {
	// Control bytes never enter a key: a NUL ends a key's e-mail part, and
	// an e-mail is whatever Stripe or Clerk were given.
	r := listedRecord{V: recordVersion, Email: strings.ToLower(strings.Map(func(c rune) rune {
		if proxy.IsControlRune(c) {
			return -1
		}
		return c
	}, a.Email()))}
	if a.User != nil {
		r.FirstSeen, r.LastSeen = nanos(a.User.FirstSeen), nanos(a.User.LastSeen)
	}
	add := func(list *[]string, v string) {
		if v != "" && !strings.ContainsRune(v, 0) && !slices.Contains(*list, v) {
			*list = append(*list, v)
		}
	}
	for i := range a.Subscriptions {
		add(&r.Statuses, string(a.Subscriptions[i].Status))
		add(&r.Plans, a.Subscriptions[i].Plan)
	}
	for i := range a.Comps {
		if a.Comps[i].Active(now) {
			add(&r.Statuses, string(proxy.StatusActive))
			add(&r.Plans, a.Comps[i].Plan)
		}
	}
	if len(a.Subscriptions) == 0 {
		add(&r.Statuses, proxy.StatusNone)
	}
	slices.Sort(r.Statuses)
	slices.Sort(r.Plans)
	sum := a.Summary(proxy.AccessPolicy{}, now)
	r.Rank = sum.Status.Rank()
	return r
}

// attrs is the value of a filter list's key: what a listing with both a
// status and a plan checks without reading the account.
func (r *listedRecord) attrs() []byte {
	return []byte(strings.Join(r.Statuses, "\x01") + "\x00" + strings.Join(r.Plans, "\x01"))
}

// attrsHold reports whether an index value holds the status (if not "")
// and the plan (if not "").
func attrsHold(v []byte, status, plan string) bool {
	st, pl, _ := bytes.Cut(v, []byte{0})
	has := func(list []byte, x string) bool {
		for item := range bytes.SplitSeq(list, []byte{1}) {
			if string(item) == x {
				return true
			}
		}
		return false
	}
	return (status == "" || has(st, status)) && (plan == "" || has(pl, plan))
}

// tags are the filter lists the subject is in.
func (r *listedRecord) tags() []string {
	out := []string{tagAll}
	for _, s := range r.Statuses {
		out = append(out, "s:"+s)
	}
	for _, p := range r.Plans {
		out = append(out, "p:"+p)
	}
	return out
}

func be64(v int64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(v))
	return b[:]
}

// sortValue is the part of a key between the tag and the subject key.
func (r *listedRecord) sortValue(sort byte) []byte {
	switch sort {
	case sortByLastSeen:
		return be64(r.LastSeen)
	case sortByFirstSeen:
		return be64(r.FirstSeen)
	case sortByEmail:
		e := r.Email
		if len(e) > maxEmailKey {
			e = e[:maxEmailKey]
		}
		return append([]byte(e), 0)
	case sortByStatus:
		return append([]byte{byte(255 - r.Rank)}, be64(r.LastSeen)...)
	}
	return nil
}

// indexKey is sort, tag, NUL, the sort value and the subject key.
func indexKey(sort byte, tag string, value []byte, subject string) []byte {
	k := make([]byte, 0, 2+len(tag)+len(value)+len(subject))
	k = append(k, sort)
	k = append(k, tag...)
	k = append(k, 0)
	k = append(k, value...)
	return append(k, subject...)
}

// indexPrefix is where the keys of one sort and tag begin.
func indexPrefix(sort byte, tag string) []byte { return indexKey(sort, tag, nil, "") }

// subjectOfKey reads the subject key back from an index key of sort and
// tag.
func subjectOfKey(k []byte, sort byte, tag string) (string, bool) {
	rest := k[min(len(k), 2+len(tag)):]
	switch sort {
	case sortByLastSeen, sortByFirstSeen:
		if len(rest) < 8 {
			return "", false
		}
		rest = rest[8:]
	case sortByStatus:
		if len(rest) < 9 {
			return "", false
		}
		rest = rest[9:]
	case sortByEmail:
		_, after, ok := bytes.Cut(rest, []byte{0})
		if !ok {
			return "", false
		}
		rest = after
	}
	return string(rest), len(rest) > 0
}

// indexKeys are every key (with its value) of a subject's record; none
// for nil.
func indexKeys(subject string, r *listedRecord) map[string][]byte {
	if r == nil {
		return nil
	}
	out := map[string][]byte{}
	attrs := r.attrs()
	for _, tag := range r.tags() {
		var v []byte
		if tag != tagAll {
			v = attrs
		}
		for _, sort := range []byte{sortByID, sortByLastSeen, sortByFirstSeen, sortByEmail} {
			out[string(indexKey(sort, tag, r.sortValue(sort), subject))] = v
		}
		if tag == tagAll || strings.HasPrefix(tag, "p:") {
			out[string(indexKey(sortByStatus, tag, r.sortValue(sortByStatus), subject))] = v
		}
	}
	return out
}

// getListed reads a subject's listed record; nil when it has none.
func getListed(b *bbolt.Bucket, subject string) (*listedRecord, error) {
	data := b.Get([]byte(subject))
	if data == nil {
		return nil, nil
	}
	var r listedRecord
	if err := decodeRecord(data, &r); err != nil {
		return nil, fmt.Errorf("listed %s: %w", subject, err)
	}
	return &r, nil
}

// reindex derives the subject's listed record from its account now and
// brings the index in line with it.
func reindex(tx *bbolt.Tx, subject proxy.Subject, now time.Time) error {
	if !subject.Valid() {
		return nil
	}
	a, ok, err := accountOf(tx, subject)
	if err != nil {
		return err
	}
	var next *listedRecord
	if ok {
		r := listedOf(&a, now)
		next = &r
	}
	return relist(tx, subject.String(), next)
}

// relist replaces the subject's listed record with next (nil: the subject
// is no longer listed), changing only the index keys that differ.
func relist(tx *bbolt.Tx, subject string, next *listedRecord) error {
	listed, err := createdBucket(tx, bucketListed)
	if err != nil {
		return err
	}
	prev, err := getListed(listed, subject)
	if err != nil {
		return err
	}
	if prev == nil && next == nil {
		return nil
	}
	if prev != nil && next != nil && equalListed(prev, next) {
		return nil
	}
	index, err := createdBucket(tx, bucketListing)
	if err != nil {
		return err
	}
	counts, err := createdBucket(tx, bucketListingCounts)
	if err != nil {
		return err
	}
	oldKeys, newKeys := indexKeys(subject, prev), indexKeys(subject, next)
	for k := range oldKeys {
		if _, keep := newKeys[k]; !keep {
			if err := index.Delete([]byte(k)); err != nil {
				return err
			}
		}
	}
	for k, v := range newKeys {
		if old, had := oldKeys[k]; had && bytes.Equal(old, v) {
			continue
		}
		if err := index.Put([]byte(k), v); err != nil {
			return fmt.Errorf("index %s: %w", subject, err)
		}
	}
	var oldTags, newTags []string
	if prev != nil {
		oldTags = prev.tags()
	}
	if next != nil {
		newTags = next.tags()
	}
	for _, t := range oldTags {
		if !slices.Contains(newTags, t) {
			if err := addCount(counts, t, -1); err != nil {
				return err
			}
		}
	}
	for _, t := range newTags {
		if !slices.Contains(oldTags, t) {
			if err := addCount(counts, t, 1); err != nil {
				return err
			}
		}
	}
	if next == nil {
		return listed.Delete([]byte(subject))
	}
	return putRecord(listed, subject, next)
}

func equalListed(a, b *listedRecord) bool {
	return a.Email == b.Email && a.FirstSeen == b.FirstSeen && a.LastSeen == b.LastSeen && a.Rank == b.Rank &&
		slices.Equal(a.Statuses, b.Statuses) && slices.Equal(a.Plans, b.Plans)
}

// addCount adds delta to a uint64 counter, deleting it at zero.
func addCount(b *bbolt.Bucket, key string, delta int64) error {
	n := int64(0)
	if v := b.Get([]byte(key)); len(v) == 8 {
		n = int64(binary.BigEndian.Uint64(v))
	}
	n += delta
	if n <= 0 {
		return b.Delete([]byte(key))
	}
	return b.Put([]byte(key), be64(n))
}

// tagCount is how many subjects a filter list holds.
func tagCount(tx *bbolt.Tx, tag string) int64 {
	b := optionalBucket(tx, bucketListingCounts)
	if b == nil {
		return 0
	}
	if v := b.Get([]byte(tag)); len(v) == 8 {
		return int64(binary.BigEndian.Uint64(v))
	}
	return 0
}

// seenChanged moves a user's listed record to new first/last seen times
// without reading the account (RecordSeen's many users); a user not yet
// listed is indexed in full.
func seenChanged(tx *bbolt.Tx, userID string, u *userRecord, now time.Time) error {
	subject := proxy.Subject{Kind: proxy.SubjectUser, ID: userID}
	listed, err := createdBucket(tx, bucketListed)
	if err != nil {
		return err
	}
	prev, err := getListed(listed, subject.String())
	if err != nil {
		return err
	}
	if prev == nil {
		return reindex(tx, subject, now)
	}
	next := *prev
	next.FirstSeen, next.LastSeen = nanos(u.FirstSeen), nanos(u.LastSeen)
	return relist(tx, subject.String(), &next)
}
