package bolt

import (
	"encoding/binary"
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
