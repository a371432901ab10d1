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

// walkEntry is one step of a listing's walk.
type walkEntry struct {
	pos  []byte // where it stands in the walk's order; cursors hold it
	id   string // the subject's Clerk ID ("": skip the entry)
	rank int    // the status sort: the rank of the status of the list it is in; else -1
}

// walk steps through a listing's entries in one direction.
type walk interface {
	// from positions at pos (nil: the first entry), or just past it
	// with exclusive.
	from(pos []byte, exclusive bool) (walkEntry, bool)
	next() (walkEntry, bool)
}

// sortSpec says how a sort is read: its lists' bucket, how long the sort
// value before a ref is, and whether lists are taken status by status.
type sortSpec struct {
	tag    byte // a cursor's first byte
	bucket string
	width  int // bytes of the sort value; -1: up to a NUL
	byRank bool
}

var sortSpecs = map[proxy.UserSort]sortSpec{
	proxy.SortID:        {'i', bucketListID, 0, false},
	proxy.SortFirstSeen: {'f', bucketListFirst, 4, false},
	proxy.SortLastSeen:  {'l', bucketListLast, 4, false},
	proxy.SortEmail:     {'e', bucketListEmail, -1, false},
	proxy.SortStatus:    {'r', bucketListLast, 4, true},
}

// planWalk chooses the walk for f, the tag its cursors carry and the
// total the filter selects (-1: not known cheaply).
func planWalk(tx *bbolt.Tx, f *proxy.UserFilter, forward bool) (walk, byte, []byte, int64, error) {
	if q := strings.TrimSpace(f.Query); q != "" {
		return searchWalk(tx, q, forward)
	}
	spec, ok := sortSpecs[f.Sort]
	if !ok {
		return nil, 0, nil, 0, fmt.Errorf("unknown sort %q", f.Sort)
	}
	total := int64(-1)
	if tag, ok := f.TotalTag(); ok {
		total = tagCount(tx, tag)
	}
	if f.Status != "" && spec.byRank {
		spec = sortSpecs[proxy.SortLastSeen] // one status: nothing to order by
		spec.tag = 'r'
	}
	w, err := mergedWalk(tx, spec, forward, func(c [2]string) bool {
		return (f.Status == "" || c[0] == f.Status) && (f.Plan == "" || c[1] == f.Plan)
	})
	return w, spec.tag, nil, total, err
}

// searchWalk walks the subjects whose customer ID, Clerk ID or email
// begins with q. Its cursors must begin with the bound it returns.
func searchWalk(tx *bbolt.Tx, q string, forward bool) (walk, byte, []byte, int64, error) {
	switch {
	case strings.HasPrefix(q, "cus_"):
		return &plainWalk{b: tx.Bucket([]byte(bucketCustomers)), prefix: []byte(q), forward: forward,
			id: func(k, v []byte) string {
				rec, err := decodeCustomer(tx, string(k), v)
				if err != nil || rec.Deleted {
					return ""
				}
				return rec.Subject
			}}, 'c', []byte(q), -1, nil
	case strings.HasPrefix(q, "user_") || strings.HasPrefix(q, "org_"):
		return &plainWalk{b: optionalBucket(tx, bucketAccounts), prefix: []byte(q), forward: forward,
			id: func(k, _ []byte) string { return string(k) }}, 'a', []byte(q), -1, nil
	}
	q = strings.ToLower(q)
	if len(q) > maxEmailKey {
		q = q[:maxEmailKey]
	}
	w, err := mergedWalk(tx, sortSpecs[proxy.SortEmail], forward, func([2]string) bool { return true })
	if err != nil {
		return nil, 0, nil, 0, err
	}
	w.bound = []byte(q)
	return w, 'm', []byte(q), -1, nil
}

// plainWalk walks a bucket's keys that begin with prefix.
type plainWalk struct {
	b       *bbolt.Bucket // nil: empty
	c       *bbolt.Cursor
	prefix  []byte
	forward bool
	id      func(k, v []byte) string
}

func (w *plainWalk) from(pos []byte, exclusive bool) (walkEntry, bool) {
	if w.b == nil {
		return walkEntry{}, false
	}
	w.c = w.b.Cursor()
	if pos == nil {
		if w.forward {
			return w.entry(w.c.Seek(w.prefix))
		}
		return w.entry(lastWith(w.c, w.prefix))
	}
	return w.entry(seekFrom(w.c, pos, exclusive, w.forward))
}

func (w *plainWalk) next() (walkEntry, bool) {
	if w.forward {
		return w.entry(w.c.Next())
	}
	return w.entry(w.c.Prev())
}

func (w *plainWalk) entry(k, v []byte) (walkEntry, bool) {
	if k == nil || !bytes.HasPrefix(k, w.prefix) {
		return walkEntry{}, false
	}
	return walkEntry{pos: k, id: w.id(k, v), rank: -1}, true
}

// seekFrom positions c at key, or the key just past it in the direction
// of travel, exclusive of key itself when asked.
func seekFrom(c *bbolt.Cursor, key []byte, exclusive, forward bool) ([]byte, []byte) {
	k, v := c.Seek(key)
	if forward {
		if exclusive && bytes.Equal(k, key) {
			return c.Next()
		}
		return k, v
	}
	if k == nil {
		return c.Last()
	}
	if bytes.Equal(k, key) && !exclusive {
		return k, v
	}
	return c.Prev()
}

// lastWith positions c at the last key that begins with prefix (or the
// key before where it would be).
func lastWith(c *bbolt.Cursor, prefix []byte) ([]byte, []byte) {
	end := prefixEnd(prefix)
	if end == nil {
		return c.Last()
	}
	if k, _ := c.Seek(end); k == nil {
		return c.Last()
	}
	return c.Prev()
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

// mergeWalk walks several lists of one sort as one, in the order of
// their positions: the key after the list's combo, behind the list's head
// (the status sort's rank byte). A subject in several lists comes once.
type mergeWalk struct {
	spec    sortSpec
	lists   []*sublist
	forward bool
	bound   []byte // positions begin with it (a search); nil: any
}

// sublist is one combo's list.
type sublist struct {
	c      *bbolt.Cursor
	prefix []byte // the combo
	head   []byte
	rank   int
	pos    []byte // the current entry's position; nil: past the end
}

// mergedWalk walks the lists of spec's bucket whose combo passes keep.
func mergedWalk(tx *bbolt.Tx, spec sortSpec, forward bool, keep func([2]string) bool) (*mergeWalk, error) {
	w := &mergeWalk{spec: spec, forward: forward}
	index := optionalBucket(tx, spec.bucket)
	counts := optionalBucket(tx, bucketListCounts)
	if index == nil || counts == nil {
		return w, nil
	}
	c := counts.Cursor()
	for k, _ := c.Seek([]byte(tagCombo)); k != nil && bytes.HasPrefix(k, []byte(tagCombo)); k, _ = c.Next() {
		ck := slices.Clone(k[len(tagCombo):])
		combo, rest, err := readCombo(tx, ck)
		if err != nil || len(rest) != 0 {
			return nil, fmt.Errorf("listing counter %q: %w", k, cmpErr(err))
		}
		if !keep(combo) {
			continue
		}
		l := &sublist{c: index.Cursor(), prefix: ck, rank: -1}
		if spec.byRank {
			l.rank = proxy.SubscriptionStatus(combo[0]).Rank()
			l.head = []byte{byte(255 - l.rank)}
		}
		w.lists = append(w.lists, l)
	}
	return w, nil
}

func cmpErr(err error) error {
	if err == nil {
		return errCorrupt
	}
	return err
}

func (l *sublist) set(k []byte) {
	if k == nil || !bytes.HasPrefix(k, l.prefix) {
		l.pos = nil
		return
	}
	l.pos = append(slices.Clip(l.head), k[len(l.prefix):]...)
}

// seek positions the list at pos as seekFrom does, the list's head
// standing before its keys.
func (l *sublist) seek(pos []byte, exclusive, forward bool) {
	if pos == nil {
		if forward {
			k, _ := l.c.Seek(l.prefix)
			l.set(k)
		} else {
			k, _ := lastWith(l.c, l.prefix)
			l.set(k)
		}
		return
	}
	h := len(l.head)
	order := bytes.Compare(pos[:min(h, len(pos))], l.head)
	if order == 0 && len(pos) < h {
		order = -1
	}
	switch {
	case order < 0 && forward, order > 0 && !forward:
		l.seek(nil, false, forward) // the whole list is on this side of pos
	case order != 0:
		l.pos = nil // the whole list is behind pos
	default:
		k, _ := seekFrom(l.c, append(slices.Clip(l.prefix), pos[h:]...), exclusive, forward)
		l.set(k)
	}
}

func (l *sublist) step(forward bool) {
	if forward {
		k, _ := l.c.Next()
		l.set(k)
	} else {
		k, _ := l.c.Prev()
		l.set(k)
	}
}

func (w *mergeWalk) from(pos []byte, exclusive bool) (walkEntry, bool) {
	if pos == nil && w.bound != nil {
		pos, exclusive = w.bound, false
		if !w.forward {
			if pos, exclusive = prefixEnd(w.bound), true; pos == nil {
				exclusive = false
			}
		}
	}
	for _, l := range w.lists {
		l.seek(pos, exclusive, w.forward)
	}
	return w.next()
}

// next takes the first position among the lists, and steps every list
// standing there past it.
func (w *mergeWalk) next() (walkEntry, bool) {
	var best *sublist
	for _, l := range w.lists {
		if l.pos == nil {
			continue
		}
		if best == nil || (bytes.Compare(l.pos, best.pos) < 0) == w.forward && !bytes.Equal(l.pos, best.pos) {
			best = l
		}
	}
	if best == nil || w.bound != nil && !bytes.HasPrefix(best.pos, w.bound) {
		return walkEntry{}, false
	}
	e := walkEntry{pos: best.pos, rank: best.rank}
	e.id, _ = w.subject(best.pos[len(best.head):])
	for _, l := range w.lists {
		if l != best && l.pos != nil && bytes.Equal(l.pos, e.pos) {
			l.step(w.forward)
		}
	}
	best.step(w.forward)
	return e, true
}

// subject reads the subject ID from a key's tail after its combo.
func (w *mergeWalk) subject(tail []byte) (string, bool) {
	switch n := w.spec.width; {
	case n < 0:
		i := bytes.IndexByte(tail, 0)
		if i < 0 {
			return "", false
		}
		tail = tail[i+1:]
	case len(tail) < n:
		return "", false
	default:
		tail = tail[n:]
	}
	return unref(tail)
}

func encodeCursor(tag byte, pos []byte) string {
	return base64.RawURLEncoding.EncodeToString(append([]byte{tag}, pos...))
}

func decodeCursor(c string, tag byte, bound []byte) ([]byte, error) {
	k, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(k) < 2 || k[0] != tag || !bytes.HasPrefix(k[1:], bound) {
		return nil, proxy.ErrBadCursor
	}
	return k[1:], nil
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
		// Before and Last read backwards from their start, then turn the
		// page round.
		back := f.Before != "" || f.Last
		w, tag, bound, total, err := planWalk(tx, &f, f.Desc == back)
		if err != nil {
			return err
		}
		page.Total = total
		var start []byte
		switch {
		case f.Before != "":
			if start, err = decodeCursor(f.Before, tag, bound); err != nil {
				return err
			}
		case f.After != "" && !back:
			if start, err = decodeCursor(f.After, tag, bound); err != nil {
				return err
			}
		}
		type row struct {
			pos []byte
			sum proxy.UserSummary
		}
		var rows []row
		scanned := 0
		var lastPos []byte
		for e, ok := w.from(start, start != nil); ok; e, ok = w.next() {
			if len(rows) > f.Limit {
				break
			}
			if scanned++; scanned > maxScan {
				break
			}
			lastPos = e.pos
			if e.id == "" {
				continue
			}
			subject, err := proxy.ParseSubject(e.id)
			if err != nil {
				// One unreadable entry must not take every admin's listing
				// down with it: it is passed over (docs/SECURITY.md).
				continue
			}
			a, ok, err := getAccount(tx, subject.ID)
			if err != nil {
				return err
			}
			// The status sort takes each subject from the list of the
			// status it was ranked by.
			if !ok || e.rank >= 0 && (a.List == nil || a.List.Rank != e.rank) {
				continue
			}
			pa, listed, err := accountView(tx, subject, &a)
			if err != nil {
				return err
			}
			if !listed {
				continue
			}
			sum := pa.Summary(f.Policy, now)
			if !f.Match(&sum) {
				continue
			}
			rows = append(rows, row{slices.Clone(e.pos), sum})
		}
		// more: the walk stopped before its end. Its cursor goes on from
		// the last row kept, or from the last entry passed over when the
		// scan ran out.
		more := len(rows) > f.Limit || scanned > maxScan
		if len(rows) > f.Limit {
			rows = rows[:f.Limit]
			lastPos = rows[len(rows)-1].pos
		}
		var cont string
		if more {
			cont = encodeCursor(tag, lastPos)
		}
		if back {
			slices.Reverse(rows)
			page.Prev = cont
			if f.Before != "" && len(rows) > 0 {
				page.Next = encodeCursor(tag, rows[len(rows)-1].pos)
			}
		} else {
			page.Next = cont
			if f.After != "" && len(rows) > 0 {
				page.Prev = encodeCursor(tag, rows[0].pos)
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
