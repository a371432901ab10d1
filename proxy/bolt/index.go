package bolt

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"go.etcd.io/bbolt"

	"github.com/tollgate/tollgate/proxy"
)

// The listing index lets the admin console page, sort, filter and search a
// million users without reading them all. Every subject the listing shows
// (proxy.Account) has a listing part in its account record, derived from
// its account whenever a write changes it, in the write's own transaction
// (reindex), and from it a few keys, one per sort:
//
//	listing_id     combo, ref                           → empty
//	listing_first  combo, first seen, ref               → empty
//	listing_last   combo, last seen, ref                → empty
//	listing_email  combo, email, NUL, ref               → empty
//	listing_counts tag                                  → subjects holding it, uint64 big-endian
//
// A combo is a status and a plan the subject holds, as two dictionary
// numbers (uvarints): a subject is in the list of every pair of them (one,
// for most), so any status, plan or both is a handful of lists, which a
// listing merges in order (listpage.go). A ref is the subject's Clerk ID
// without its prefix, after 'o' or 'u'. Times are unix seconds, four bytes
// big-endian; the email is lower case and at most 128 bytes. The status
// sort needs no list of its own: it is the last-seen lists, taken status
// by status, most telling first. The keys hold no values: whatever a
// listing shows it reads from the account.
//
// A filter's lists hold every subject the filter could match: the listing
// still judges each one by its summary at the time of reading (comps
// expire and past_due_grace runs out without a write). The counters tell
// a filter's total: "*" every subject, "s:<status>" and "p:<plan>" those
// holding it, "c:<combo>" those in that list, and "n:users", "n:links",
// "n:customers" what Counts reports.
const (
	bucketListID     = "listing_id"
	bucketListFirst  = "listing_first"
	bucketListLast   = "listing_last"
	bucketListEmail  = "listing_email"
	bucketListCounts = "listing_counts"

	tagAll       = proxy.ListingTagAll
	tagCombo     = "c:"
	tagUsers     = "n:users"
	tagLinks     = "n:links"
	tagCustomers = "n:customers"

	maxEmailKey = 128 // bytes of the email in a key: enough to order and find
)

// listBuckets are the index's lists, one per sort but the status sort.
var listBuckets = [...]string{bucketListID, bucketListFirst, bucketListLast, bucketListEmail}

// listingOf derives the listing part of an account at now
// (proxy.ListingOf), without a status or plan longer than the dictionary
// takes (dict.go): those are in no list.
func listingOf(a *proxy.Account, now time.Time) *listing {
	l := proxy.ListingOf(a, now)
	long := func(v string) bool { return len(v) > maxDictString }
	l.Statuses, l.Plans = slices.DeleteFunc(l.Statuses, long), slices.DeleteFunc(l.Plans, long)
	return l
}

// ref is an index key's tail for a subject ID.
func ref(id string) []byte {
	switch {
	case strings.HasPrefix(id, "user_"):
		return append([]byte{'u'}, id[len("user_"):]...)
	case strings.HasPrefix(id, "org_"):
		return append([]byte{'o'}, id[len("org_"):]...)
	}
	return nil
}

// unref reads a subject ID back from a ref.
func unref(r []byte) (string, bool) {
	if len(r) < 2 {
		return "", false
	}
	switch r[0] {
	case 'u':
		return "user_" + string(r[1:]), true
	case 'o':
		return "org_" + string(r[1:]), true
	}
	return "", false
}

// seconds is t as four bytes: unix seconds, 0 for the zero time, clamped
// to what four bytes hold.
func seconds(t time.Time) []byte {
	var s int64
	if !t.IsZero() {
		s = min(max(t.Unix(), 0), math.MaxUint32)
	}
	return binary.BigEndian.AppendUint32(nil, uint32(s))
}

// combos are the subject's pairs of a status and a plan ("" for none).
func combos(l *listing) [][2]string {
	statuses, plans := l.Statuses, l.Plans
	if len(statuses) == 0 {
		statuses = []string{""}
	}
	if len(plans) == 0 {
		plans = []string{""}
	}
	var out [][2]string
	for _, s := range statuses {
		for _, p := range plans {
			out = append(out, [2]string{s, p})
		}
	}
	return out
}

// comboKey is a combo's dictionary numbers, the lists' common prefix.
func comboKey(tx *bbolt.Tx, c [2]string) ([]byte, error) {
	var e enc
	e.dict(tx, c[0])
	e.dict(tx, c[1])
	return e.b, e.err
}

// readCombo reads a combo back from the start of b and returns the rest.
func readCombo(tx *bbolt.Tx, b []byte) (c [2]string, rest []byte, err error) {
	d := dec{b: b}
	c[0] = d.dict(tx)
	c[1] = d.dict(tx)
	return c, d.b, d.err
}

// indexEntry is one key of the index.
type indexEntry struct {
	bucket, key string
	combo       int // bytes of the key's combo: its list
}

// indexEntries are every key of subject id's record a (none when it is
// not listed), and the counters it counts in.
func indexEntries(tx *bbolt.Tx, id string, a *account) (keys []indexEntry, tags []string, err error) {
	if a == nil {
		return nil, nil, nil
	}
	if a.User {
		tags = append(tags, tagUsers)
	}
	if a.Customer != "" {
		tags = append(tags, tagLinks)
	}
	l := a.List
	if l == nil {
		return nil, tags, nil
	}
	r := ref(id)
	if r == nil {
		return nil, nil, fmt.Errorf("%q is not a Clerk ID", id)
	}
	email := l.Email
	if len(email) > maxEmailKey {
		email = email[:maxEmailKey]
	}
	var first, last time.Time
	if a.User {
		first, last = a.FirstSeen, a.LastSeen
	}
	tags = append(tags, l.Tags()...)
	for _, c := range combos(l) {
		ck, err := comboKey(tx, c)
		if err != nil {
			return nil, nil, err
		}
		tags = append(tags, tagCombo+string(ck))
		cat := func(parts ...[]byte) string { return string(bytes.Join(append([][]byte{ck}, parts...), nil)) }
		keys = append(keys,
			indexEntry{bucketListID, cat(r), len(ck)},
			indexEntry{bucketListFirst, cat(seconds(first), r), len(ck)},
			indexEntry{bucketListLast, cat(seconds(last), r), len(ck)},
			indexEntry{bucketListEmail, cat([]byte(email), []byte{0}, r), len(ck)})
	}
	return keys, tags, nil
}

// reindexKeys brings the index and the counters from what the record prev
// (nil: none) made to what next makes, touching only what differs.
func reindexKeys(tx *bbolt.Tx, id string, prev, next *account) error {
	oldKeys, oldTags, err := indexEntries(tx, id, prev)
	if err != nil {
		return err
	}
	newKeys, newTags, err := indexEntries(tx, id, next)
	if err != nil {
		return err
	}
	for _, k := range oldKeys {
		if !slices.Contains(newKeys, k) {
			b, err := createdBucket(tx, k.bucket)
			if err != nil {
				return err
			}
			if err := b.Delete([]byte(k.key)); err != nil {
				return err
			}
		}
	}
	for _, k := range newKeys {
		if !slices.Contains(oldKeys, k) {
			b, err := createdBucket(tx, k.bucket)
			if err != nil {
				return err
			}
			if err := put(b, []byte(k.key), nil, k.combo); err != nil {
				return err
			}
		}
	}
	if slices.Equal(oldTags, newTags) {
		return nil
	}
	counts, err := createdBucket(tx, bucketListCounts)
	if err != nil {
		return err
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
	return nil
}

// reindex derives the subject's listing from its account now and brings
// its record and the index in line with it.
func reindex(tx *bbolt.Tx, subject proxy.Subject, now time.Time) error {
	if !subject.Valid() {
		return nil
	}
	prev, ok, err := getAccount(tx, subject.ID)
	if err != nil {
		return err
	}
	pa, listed, err := accountView(tx, subject, &prev)
	if err != nil {
		return err
	}
	var l *listing
	if listed {
		l = listingOf(&pa, now)
	}
	if prev.List.Equal(l) {
		return nil
	}
	next := prev.Clone()
	next.List = l
	if !ok {
		return putAccount(tx, subject.ID, nil, &next)
	}
	return putAccount(tx, subject.ID, &prev, &next)
}

// countIn adds delta to one of the listing's counters.
func countIn(tx *bbolt.Tx, tag string, delta int64) error {
	counts, err := createdBucket(tx, bucketListCounts)
	if err != nil {
		return err
	}
	return addCount(counts, tag, delta)
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

func be64(v int64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(v))
	return b[:]
}

// tagCount is how many subjects a counter counts.
func tagCount(tx *bbolt.Tx, tag string) int64 {
	b := optionalBucket(tx, bucketListCounts)
	if b == nil {
		return 0
	}
	if v := b.Get([]byte(tag)); len(v) == 8 {
		return int64(binary.BigEndian.Uint64(v))
	}
	return 0
}
