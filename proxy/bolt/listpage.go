package bolt

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"

	"go.etcd.io/bbolt"

	"github.com/tollgate/tollgate/proxy"
)

// maxScan bounds the entries one page may pass over without a match (a
// search with filters, a status and a plan that rarely meet): past it the
// page ends early, with a cursor to go on from there.
const maxScan = 20_000

// listWalk is the list a listing walks: the keys of bucket b that begin
// with prefix, in key order (reversed for a descending listing).
type listWalk struct {
	b      *bbolt.Bucket
	prefix []byte
	// check passes an entry on its value alone (nil: every entry).
	check func(v []byte) bool
	// subject is the entry's subject key ("" : skip the entry).
	subject func(k, v []byte) string
	total   int64
}

// planWalk chooses the list for f.
func planWalk(tx *bbolt.Tx, f *proxy.UserFilter) (listWalk, error) {
	if q := strings.TrimSpace(f.Query); q != "" {
		return searchWalk(tx, q)
	}
	index := optionalBucket(tx, bucketListing)
	if index == nil {
		return listWalk{}, nil
	}
	sort := map[proxy.UserSort]byte{proxy.SortID: sortByID, proxy.SortLastSeen: sortByLastSeen, proxy.SortFirstSeen: sortByFirstSeen,
		proxy.SortEmail: sortByEmail, proxy.SortStatus: sortByStatus}[f.Sort]
	if sort == 0 {
		return listWalk{}, fmt.Errorf("unknown sort %q", f.Sort)
	}
	tag, total := tagAll, int64(-1)
	var check func([]byte) bool
	switch {
	case f.Status != "" && f.Plan != "":
		// The status sort has plan lists only; otherwise the shorter
		// list, checking the other filter in each entry's value.
		tag = "p:" + f.Plan
		if sort == sortByStatus {
			sort = sortByLastSeen
		}
		if tagCount(tx, "s:"+f.Status) < tagCount(tx, tag) {
			tag = "s:" + f.Status
		}
		status, plan := f.Status, f.Plan
		check = func(v []byte) bool { return attrsHold(v, status, plan) }
	case f.Status != "":
		tag = "s:" + f.Status
		if sort == sortByStatus {
			sort = sortByLastSeen // one status: nothing to order by
		}
	case f.Plan != "":
		tag = "p:" + f.Plan
	}
	if check == nil {
		total = tagCount(tx, tag)
	}
	return listWalk{b: index, prefix: indexPrefix(sort, tag), check: check, total: total,
		subject: func(k, _ []byte) string { s, _ := subjectOfKey(k, sort, tag); return s }}, nil
}

// searchWalk walks the subjects whose customer ID, Clerk ID or email
// begins with q.
func searchWalk(tx *bbolt.Tx, q string) (listWalk, error) {
	switch {
	case strings.HasPrefix(q, "cus_"):
		return listWalk{b: tx.Bucket([]byte(bucketCustomers)), prefix: []byte(q), total: -1,
			subject: func(k, v []byte) string {
				var rec customerRecord
				if decodeRecord(v, &rec) != nil || rec.Deleted {
					return ""
				}
				return rec.Subject
			}}, nil
	case strings.HasPrefix(q, "user_") || strings.HasPrefix(q, "org_"):
		index := optionalBucket(tx, bucketListing)
		if index == nil {
			return listWalk{}, nil
		}
		kind := proxy.SubjectUser
		if strings.HasPrefix(q, "org_") {
			kind = proxy.SubjectOrg
		}
		return listWalk{b: index, prefix: indexKey(sortByID, tagAll, nil, string(kind)+":"+q), total: -1,
			subject: func(k, _ []byte) string { s, _ := subjectOfKey(k, sortByID, tagAll); return s }}, nil
	}
	index := optionalBucket(tx, bucketListing)
	if index == nil {
		return listWalk{}, nil
	}
	q = strings.ToLower(q)
	if len(q) > maxEmailKey {
		q = q[:maxEmailKey]
	}
	return listWalk{b: index, prefix: indexKey(sortByEmail, tagAll, []byte(q), ""), total: -1,
		subject: func(k, _ []byte) string { s, _ := subjectOfKey(k, sortByEmail, tagAll); return s }}, nil
}

// prefixEnd is the first key after every key that begins with p (nil:
// none is).
func prefixEnd(p []byte) []byte {
	end := slices.Clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// walker steps through a list in one direction.
type walker struct {
	c       *bbolt.Cursor
	prefix  []byte
	forward bool // in key order
}

// from positions at key (nil: the list's first key in this direction);
// with exclusive, at the next key past it.
func (w *walker) from(key []byte, exclusive bool) ([]byte, []byte) {
	var k, v []byte
	switch {
	case w.forward && key == nil:
		k, v = w.c.Seek(w.prefix)
	case w.forward:
		k, v = w.c.Seek(key)
		if exclusive && bytes.Equal(k, key) {
			k, v = w.c.Next()
		}
	default:
		target := key
		if target == nil {
			target = prefixEnd(w.prefix)
		}
		if target == nil {
			k, v = w.c.Last()
		} else if k, v = w.c.Seek(target); k == nil {
			k, v = w.c.Last()
		} else if !bytes.Equal(k, key) || exclusive || key == nil {
			k, v = w.c.Prev()
		}
	}
	return w.inside(k, v)
}

func (w *walker) next() ([]byte, []byte) {
	if w.forward {
		return w.inside(w.c.Next())
	}
	return w.inside(w.c.Prev())
}

func (w *walker) inside(k, v []byte) ([]byte, []byte) {
	if k == nil || !bytes.HasPrefix(k, w.prefix) {
		return nil, nil
	}
	return k, v
}

func encodeCursor(k []byte) string { return base64.RawURLEncoding.EncodeToString(k) }

func decodeCursor(c string, prefix []byte) ([]byte, error) {
	k, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || !bytes.HasPrefix(k, prefix) {
		return nil, proxy.ErrBadCursor
	}
	return k, nil
}

// ListPage lists one page of subjects: every user tollgate has recorded
// (sign-ins, Clerk webhooks) and every user or organisation with a Stripe
// customer or a comp, in f.Sort's order (f.Desc reversed), filtered by
// status and plan (proxy.UserFilter.Match on each summary, made under
// f.Policy at the store's now), or found by f.Query. It reads the listing
// index: a page costs about its own rows, wherever it lies.
func (s *Store) ListPage(ctx context.Context, f proxy.UserFilter) (proxy.UserPage, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	f.Limit = min(f.Limit, proxy.MaxUsersPage)
	now := s.now()
	var page proxy.UserPage
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		page = proxy.UserPage{}
		w, err := planWalk(tx, &f)
		if err != nil || w.b == nil {
			page.Total = max(w.total, 0)
			return err
		}
		page.Total = w.total
		// Before and Last read backwards from their start, then turn the
		// page round.
		back := f.Before != "" || f.Last
		wk := walker{c: w.b.Cursor(), prefix: w.prefix, forward: f.Desc == back}
		var start []byte
		switch {
		case f.Before != "":
			if start, err = decodeCursor(f.Before, w.prefix); err != nil {
				return err
			}
		case f.After != "" && !back:
			if start, err = decodeCursor(f.After, w.prefix); err != nil {
				return err
			}
		}
		type row struct {
			key string
			sum proxy.UserSummary
		}
		var rows []row
		scanned, lastKey := 0, ""
		for k, v := wk.from(start, start != nil); k != nil; k, v = wk.next() {
			if len(rows) > f.Limit {
				break
			}
			if scanned++; scanned > maxScan {
				break
			}
			lastKey = string(k)
			if w.check != nil && !w.check(v) {
				continue
			}
			key := w.subject(k, v)
			if key == "" {
				continue
			}
			subject, err := proxy.ParseSubject(key)
			if err != nil {
				// One unreadable entry must not take every admin's listing
				// down with it: it is passed over (docs/SECURITY.md).
				continue
			}
			a, ok, err := accountOf(tx, subject)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			sum := a.Summary(f.Policy, now)
			if !f.Match(&sum) {
				continue
			}
			rows = append(rows, row{string(k), sum})
		}
		// more: the walk stopped before its end. Its cursor goes on from
		// the last row kept, or from the last entry passed over when the
		// scan ran out.
		more := len(rows) > f.Limit || scanned > maxScan
		if len(rows) > f.Limit {
			rows = rows[:f.Limit]
			lastKey = rows[len(rows)-1].key
		}
		var cont string
		if more {
			cont = encodeCursor([]byte(lastKey))
		}
		if back {
			slices.Reverse(rows)
			page.Prev = cont
			if f.Before != "" && len(rows) > 0 {
				page.Next = encodeCursor([]byte(rows[len(rows)-1].key))
			}
		} else {
			page.Next = cont
			if f.After != "" && len(rows) > 0 {
				page.Prev = encodeCursor([]byte(rows[0].key))
			}
		}
		for _, r := range rows {
			page.Users = append(page.Users, r.sum)
		}
		return nil
	})
	if err != nil {
		return proxy.UserPage{}, fmt.Errorf("bolt: list users: %w", err)
	}
	return page, nil
}

// ListUsers lists a page of subjects as ListPage does, with the cursor of
// the next page ("" after the last one): the admin API's paging, in ID
// order unless f.Sort says otherwise.
func (s *Store) ListUsers(ctx context.Context, f proxy.UserFilter) ([]proxy.UserSummary, string, error) {
	page, err := s.ListPage(ctx, f)
	return page.Users, page.Next, err
}

// Empty reports whether the store holds no customer: the first key of the
// customers bucket, not a count.
func (s *Store) Empty(ctx context.Context) (bool, error) {
	empty := true
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		b, err := bucket(tx, bucketCustomers)
		if err != nil {
			return err
		}
		k, _ := b.Cursor().First()
		empty = k == nil
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("bolt: empty: %w", err)
	}
	return empty, nil
}
