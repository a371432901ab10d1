package bolt

import (
	"encoding/binary"
	"strconv"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/tollgate/tollgate/proxy"
)

// checkEventIndex fails the test unless events and events_by_time name
// the same events at the same times, and returns how many.
func checkEventIndex(t *testing.T, s *Store) int {
	t.Helper()
	n := 0
	err := s.db.View(func(tx *bbolt.Tx) error {
		events, byTime := tx.Bucket([]byte(bucketEvents)), tx.Bucket([]byte(bucketEventsByTime))
		if events == nil || byTime == nil {
			t.Fatalf("buckets: events %v, events_by_time %v", events != nil, byTime != nil)
		}
		if err := events.ForEach(func(k, v []byte) error {
			if byTime.Get(eventTimeKey(binary.BigEndian.Uint64(v), k)) == nil {
				t.Errorf("event %s is not in events_by_time", k)
			}
			n++
			return nil
		}); err != nil {
			return err
		}
		return byTime.ForEach(func(k, _ []byte) error {
			if v := events.Get(k[8:]); v == nil || binary.BigEndian.Uint64(v) != binary.BigEndian.Uint64(k) {
				t.Errorf("events_by_time's %x names no event of its time", k)
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func schemaOfStore(t *testing.T, s *Store) uint64 {
	t.Helper()
	v, err := schemaOf(s.db)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// A store of every past schema opens at schema 4 with every processed
// event indexed by its time, and a prune forgets them all.
func TestOpen_IndexesThePastSchemasEvents(t *testing.T) {
	for _, name := range []string{"schema1", "schema2", "schema3"} {
		t.Run(name, func(t *testing.T) {
			s := openFixture(t, name)
			if v := schemaOfStore(t, s); v != schemaVersion {
				t.Errorf("schema %d after Open, want %d", v, schemaVersion)
			}
			n := checkEventIndex(t, s)
			c, err := s.Counts(t.Context())
			if err != nil || n == 0 || c.Events != n {
				t.Fatalf("%d events indexed, Counts %+v, %v", n, c, err)
			}
			if got, err := s.PruneEvents(t.Context(), fixtureNow, 1000); err != nil || got != 0 {
				t.Errorf("PruneEvents before every event = %d, %v; want 0", got, err)
			}
			if got, err := s.PruneEvents(t.Context(), fixtureNow.Add(time.Hour), 1000); err != nil || got != n {
				t.Errorf("PruneEvents after every event = %d, %v; want %d", got, err, n)
			}
			if left := checkEventIndex(t, s); left != 0 {
				t.Errorf("%d events left", left)
			}
		})
	}
}

// A schema 3 store whose indexing was cut short (a crash) is still at
// schema 3, and the next Open finishes it.
func TestOpen_FinishesAnEventIndexCutShort(t *testing.T) {
	path := copyFixture(t, "schema3")
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		byTime, err := tx.CreateBucket([]byte(bucketEventsByTime))
		if err != nil {
			return err
		}
		k, v := tx.Bucket([]byte(bucketEvents)).Cursor().First()
		return byTime.Put(eventTimeKey(binary.BigEndian.Uint64(v), k), nil)
	})
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	s := openClock(t, path, &clock{now: fixtureNow})
	if v := schemaOfStore(t, s); v != schemaVersion {
		t.Errorf("schema %d after Open, want %d", v, schemaVersion)
	}
	if n := checkEventIndex(t, s); n == 0 {
		t.Error("no events")
	}
}

// Every write that marks an event keeps the index; a mark again keeps
// the first time; a prune takes both keys.
func TestEvents_EveryMarkIsIndexed(t *testing.T) {
	clk := &clock{now: t0()}
	s := openClock(t, t.TempDir()+"/tollgate.db", clk)
	ctx := t.Context()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.MarkEvent(ctx, "evt_1"))
	clk.Set(t0().Add(time.Minute))
	mustCommit(t, s, twoSubs("cus_1", proxy.Subject{Kind: proxy.SubjectUser, ID: "user_1"}, t0()), "evt_2")
	must(s.MarkDirty(ctx, "cus_2", "evt_3"))
	must(s.MarkEvent(ctx, "evt_1"))
	if n := checkEventIndex(t, s); n != 3 {
		t.Errorf("%d events, want 3", n)
	}
	if n, err := s.PruneEvents(ctx, t0().Add(time.Second), 10); err != nil || n != 1 {
		t.Errorf("PruneEvents = %d, %v; want 1 (evt_1, marked again later)", n, err)
	}
	if n := checkEventIndex(t, s); n != 2 {
		t.Errorf("%d events after the prune, want 2", n)
	}
}

// BenchmarkPruneEvents is the leader's hourly pass over a store of 200,000
// processed events of which none is old yet (the usual case): by the
// index, against a walk of every event (what PruneEvents did before
// schema 4), in the same run.
func BenchmarkPruneEvents(b *testing.B) {
	const events = 200_000
	clk := &clock{now: t0()}
	s := openClock(b, b.TempDir()+"/tollgate.db", clk)
	for i := 0; i < events; i += 10_000 {
		err := s.db.Update(func(tx *bbolt.Tx) error {
			for j := i; j < i+10_000; j++ {
				if err := markEvent(tx, "evt_"+strconv.Itoa(1_000_000+j), t0().Add(time.Duration(j)*time.Second)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	before := t0().Add(-time.Hour)
	b.Run("index", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if n, err := s.PruneEvents(b.Context(), before, eventPruneBatchForBench); err != nil || n != 0 {
				b.Fatal(n, err)
			}
		}
	})
	b.Run("walk", func(b *testing.B) {
		b.ReportAllocs()
		cut := uint64(before.UnixNano())
		for b.Loop() {
			err := s.db.Update(func(tx *bbolt.Tx) error {
				var old [][]byte
				err := tx.Bucket([]byte(bucketEvents)).ForEach(func(k, v []byte) error {
					if binary.BigEndian.Uint64(v) < cut {
						old = append(old, k)
					}
					return nil
				})
				if len(old) != 0 {
					b.Fatal(len(old))
				}
				return err
			})
			if err != nil {
				b.Fatal(err)
			}
		}
	})
}

// eventPruneBatchForBench is stripe's batch (proxy/stripe/prune.go).
const eventPruneBatchForBench = 500
