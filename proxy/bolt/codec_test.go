package bolt

import (
	"bytes"
	"errors"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.etcd.io/bbolt"

	"github.com/tollgate/tollgate/proxy"
)

// Times read back exactly, in UTC, and a whole second of this century
// takes five bytes.
func TestCodec_Time(t *testing.T) {
	for _, tc := range []struct {
		t    time.Time
		size int
	}{
		{time.Time{}, 1},
		{time.Unix(0, 0), 1},
		{time.Unix(-1, 0), 1},
		{t0(), 5},
		{t0().Add(time.Nanosecond), 0},
		{t0().Add(999999999), 0},
		{time.Date(1850, 1, 1, 0, 0, 0, 1, time.UTC), 0},
		{time.Date(9999, 12, 31, 23, 59, 59, 0, time.FixedZone("x", 3600)), 0},
		{time.Date(12000, 1, 1, 0, 0, 0, 0, time.UTC), 0},
	} {
		var e enc
		e.time(tc.t)
		if tc.size != 0 && len(e.b) != tc.size {
			t.Errorf("%v takes %d bytes, want %d", tc.t, len(e.b), tc.size)
		}
		d := dec{b: e.b}
		got := d.time()
		if err := d.end(); err != nil || !got.Equal(tc.t) || !tc.t.IsZero() && got.Location() != time.UTC {
			t.Errorf("%v read back as %v (%v)", tc.t, got, err)
		}
		for i := range len(e.b) {
			d := dec{b: e.b[:i]}
			if d.time(); d.end() == nil {
				t.Errorf("%v cut to %d bytes reads", tc.t, i)
			}
		}
	}
}

// orderedUint's bytes sort as its numbers do.
func TestCodec_OrderedUint(t *testing.T) {
	vals := []uint64{0, 1, 127, 128, 200, 255, 256, 300, 65535, 65536, 1 << 40, math.MaxUint64}
	var keys [][]byte
	for _, v := range vals {
		k := orderedUint(nil, v)
		got, rest, ok := readOrderedUint(append(k, 'x'))
		if !ok || got != v || string(rest) != "x" {
			t.Errorf("%d read back as %d, %q, %v", v, got, rest, ok)
		}
		keys = append(keys, k)
	}
	if !slices.IsSortedFunc(keys, bytes.Compare) {
		t.Errorf("keys out of order: %x", keys)
	}
}

// An account record reads back whole, and not at all when cut short; its
// customer reads alone too.
func TestAccountRecord_RoundTrip(t *testing.T) {
	s, _ := newStore(t)
	for _, a := range []account{
		{},
		{User: true},
		{Customer: "cus_1"},
		{User: true, Email: "Ada@Example.com", FirstSeen: t0(), LastSeen: t0().Add(time.Hour + 1), OrgIDs: []string{"org_1", "org_2"},
			Customer: "cus_1", List: &listing{Email: "ada@example.com", Statuses: []string{"active", "none"}, Plans: []string{"pro"}, Rank: 8}},
		{User: true, Email: "ada@example.com", List: &listing{Email: "billing@example.com", Rank: 0}},
		{Customer: "cus_2", List: &listing{Statuses: []string{"past_due"}, Plans: []string{"team"}, Rank: 6}},
	} {
		err := s.db.Update(func(tx *bbolt.Tx) error {
			data, err := encodeAccount(tx, &a)
			if err != nil {
				return err
			}
			got, err := decodeAccount(tx, data)
			if err != nil {
				return err
			}
			if diff := cmp.Diff(a, got, equateEmpty()); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
			for i := range len(data) {
				if _, err := decodeAccount(tx, data[:i]); err == nil {
					t.Errorf("%+v cut to %d of %d bytes decodes", a, i, len(data))
				}
			}
			b, err := createdBucket(tx, bucketAccounts)
			if err != nil {
				return err
			}
			if err := b.Put([]byte("user_x"), data); err != nil {
				return err
			}
			if c, err := accountCustomer(tx, "user_x"); err != nil || c != a.Customer {
				t.Errorf("accountCustomer = %q, %v; want %q", c, err, a.Customer)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestHistoryRecord_RoundTrip(t *testing.T) {
	s, _ := newStore(t)
	sub := proxy.Subscription{ID: "sub_1", Plan: "pro", Status: proxy.StatusPastDue, CurrentPeriodEnd: t0().Add(time.Hour), CancelAtPeriodEnd: true}
	err := s.db.Update(func(tx *bbolt.Tx) error {
		data, err := encodeHistory(tx, &sub)
		if err != nil {
			return err
		}
		got, err := decodeHistory(tx, t0(), data)
		want := proxy.HistoryEntry{At: t0(), SubscriptionID: "sub_1", Plan: "pro", Status: proxy.StatusPastDue, PeriodEnd: sub.CurrentPeriodEnd, CancelAtPeriodEnd: true}
		if err != nil || !cmp.Equal(got, want) {
			t.Errorf("round trip: %+v, %v; want %+v", got, err, want)
		}
		if _, err := decodeHistory(tx, t0(), append([]byte{historyVersion + 1}, data[1:]...)); err == nil {
			t.Error("a newer history record decodes")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// The dictionary gives a string one number for good, and a number given
// in a transaction that rolls back is not remembered for another string.
func TestDict(t *testing.T) {
	s, path := newStore(t)
	var pro uint64
	if err := s.db.Update(func(tx *bbolt.Tx) error {
		var err error
		pro, err = dictID(tx, "pro")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	rollback := errors.New("roll back")
	_ = s.db.Update(func(tx *bbolt.Tx) error {
		if id, err := dictID(tx, "lost"); err != nil || id != pro+1 {
			t.Errorf("a second string: %d, %v", id, err)
		}
		return rollback
	})
	err := s.db.Update(func(tx *bbolt.Tx) error {
		id, err := dictID(tx, "team")
		if err != nil || id != pro+1 {
			t.Errorf("after a rollback, the next string got %d, %v; want %d", id, err, pro+1)
		}
		if got, err := dictString(tx, id); got != "team" || err != nil {
			t.Errorf("number %d is %q, %v", id, got, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = mustOpen(t, path)
	err = s.db.View(func(tx *bbolt.Tx) error {
		for id, want := range map[uint64]string{0: "", pro: "pro", pro + 1: "team"} {
			if got, err := dictString(tx, id); got != want || err != nil {
				t.Errorf("reopened, number %d is %q, %v; want %q", id, got, err, want)
			}
		}
		if _, err := dictString(tx, pro+2); err == nil {
			t.Error("a number never given reads")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
