package bolt

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/tollgate/tollgate/proxy"
)

// No package-level variables, even in tests: fixtures are functions.

func t0() time.Time { return time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC) }

func user1() proxy.Subject { return proxy.Subject{Kind: proxy.SubjectUser, ID: "user_1"} }
func user2() proxy.Subject { return proxy.Subject{Kind: proxy.SubjectUser, ID: "user_2"} }
func org1() proxy.Subject  { return proxy.Subject{Kind: proxy.SubjectOrg, ID: "org_1"} }

// equateEmpty: a nil and an empty slice read back the same.
func equateEmpty() cmp.Option { return cmpopts.EquateEmpty() }

// mustOpen opens the store at path with a short lock timeout and closes it
// when the test ends.
func mustOpen(tb testing.TB, path string) *Store {
	tb.Helper()
	s, err := Open(path, Options{Timeout: 100 * time.Millisecond})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s
}

// newStore opens a fresh store in a temporary directory.
func newStore(tb testing.TB) (*Store, string) {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "tollgate.db")
	return mustOpen(tb, path), path
}

// twoSubs is a customer with an active and a trialing subscription.
func twoSubs(customerID string, subject proxy.Subject, at time.Time) proxy.CustomerState {
	return proxy.CustomerState{
		CustomerID: customerID,
		Subject:    subject,
		Email:      "ada@example.com",
		SyncedAt:   at,
		Subscriptions: []proxy.Subscription{
			{ID: "sub_a_" + customerID, CustomerID: customerID, Status: proxy.StatusActive, PriceIDs: []string{"price_pro", "price_seat"},
				Plan: "pro", CurrentPeriodEnd: at.Add(30 * 24 * time.Hour), CancelAtPeriodEnd: true, SyncedAt: at},
			{ID: "sub_b_" + customerID, CustomerID: customerID, Status: proxy.StatusTrialing, PriceIDs: []string{"price_team"},
				Plan: "team", CurrentPeriodEnd: at.Add(7 * 24 * time.Hour), TrialEnd: at.Add(7 * 24 * time.Hour), SyncedAt: at},
		},
	}
}

func mustCommit(tb testing.TB, s *Store, state proxy.CustomerState, eventID string) (proxy.Subject, *proxy.Entitlements) {
	tb.Helper()
	subj, ents, err := s.CommitCustomer(tb.Context(), state, eventID)
	if err != nil {
		tb.Fatal(err)
	}
	return subj, ents
}

func mustEntitlements(tb testing.TB, s *Store, subject proxy.Subject) *proxy.Entitlements {
	tb.Helper()
	ents, err := s.Entitlements(tb.Context(), subject)
	if err != nil {
		tb.Fatal(err)
	}
	return ents
}

func mustProcessed(tb testing.TB, s *Store, eventID string) bool {
	tb.Helper()
	ok, err := s.EventProcessed(tb.Context(), eventID)
	if err != nil {
		tb.Fatal(err)
	}
	return ok
}

// TestStore_AcrossRestarts: everything written is there after Close and Open.
func TestStore_AcrossRestarts(t *testing.T) {
	s, path := newStore(t)
	ctx := t.Context()
	state := twoSubs("cus_1", user1(), t0())
	_, want := mustCommit(t, s, state, "evt_1")
	if err := s.LinkCustomer(ctx, org1(), "cus_2"); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkEvent(ctx, "evt_unknown_type"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetCursor(ctx, "sync_all", "sub_99"); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordSeen(ctx, map[string]time.Time{"user_1": t0()}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutUser(ctx, proxy.User{ID: "user_1", Email: "ada@example.com", OrgIDs: []string{"org_1"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = mustOpen(t, path)
	if got := mustEntitlements(t, s, user1()); !cmp.Equal(got, want, equateEmpty()) {
		t.Errorf("Entitlements after reopen (-got +want):\n%s", cmp.Diff(got, want, equateEmpty()))
	}
	wantSubs := state.Subscriptions
	if got := mustEntitlements(t, s, user1()).Subscriptions; !cmp.Equal(got, wantSubs) {
		t.Errorf("subscriptions after reopen (-got +want):\n%s", cmp.Diff(got, wantSubs))
	}
	for _, id := range []string{"evt_1", "evt_unknown_type"} {
		if !mustProcessed(t, s, id) {
			t.Errorf("EventProcessed(%s) = false after reopen", id)
		}
	}
	if c, err := s.CustomerOf(ctx, org1()); err != nil || c != "cus_2" {
		t.Errorf("CustomerOf(org_1) = %q, %v; want cus_2", c, err)
	}
	if subj, ok, err := s.SubjectOf(ctx, "cus_1"); err != nil || !ok || subj != user1() {
		t.Errorf("SubjectOf(cus_1) = %v, %v, %v; want user:user_1", subj, ok, err)
	}
	if had, err := s.HadTrial(ctx, "cus_1"); err != nil || !had {
		t.Errorf("HadTrial(cus_1) = %v, %v; want true", had, err)
	}
	if v, err := s.Cursor(ctx, "sync_all"); err != nil || v != "sub_99" {
		t.Errorf("Cursor(sync_all) = %q, %v", v, err)
	}
	u, err := s.User(ctx, "user_1")
	if err != nil {
		t.Fatal(err)
	}
	wantUser := proxy.User{ID: "user_1", Email: "ada@example.com", FirstSeen: t0(), LastSeen: t0(), OrgIDs: []string{"org_1"}}
	if diff := cmp.Diff(u, wantUser); diff != "" {
		t.Errorf("User after reopen (-got +want):\n%s", diff)
	}
	c, err := s.Counts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Counts{Customers: 2, Subjects: 2, Events: 2, Users: 1}); c != want {
		t.Errorf("Counts = %+v, want %+v", c, want)
	}
}

// TestOpen_SecondOpenFailsWithinTimeout: bbolt's flock is per open file, so a
// second Open in this process stands in for a second tollgate.
func TestOpen_SecondOpenFailsWithinTimeout(t *testing.T) {
	_, path := newStore(t)
	start := time.Now()
	s2, err := Open(path, Options{Timeout: 100 * time.Millisecond})
	elapsed := time.Since(start)
	if err == nil {
		s2.Close()
		t.Fatal("second Open succeeded; want a lock error")
	}
	if elapsed > 2*time.Second {
		t.Errorf("second Open took %s; want about the 100ms timeout", elapsed)
	}
	if !errors.Is(err, bolterrors.ErrTimeout) {
		t.Errorf("err = %v; want it to wrap bbolt's ErrTimeout", err)
	}
	for _, want := range []string{path, "another tollgate"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("err = %q; want it to mention %q", err, want)
		}
	}
}

func TestOpen_RejectsNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tollgate.db")
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucket([]byte(bucketMeta))
		if err != nil {
			return err
		}
		return b.Put([]byte(keySchema), []byte{0, 0, 0, 0, 0, 0, 0, schemaVersion + 1})
	})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()

	s, err := Open(path, Options{})
	if err == nil {
		s.Close()
		t.Fatal("Open of a newer schema's store succeeded")
	}
	if !errors.Is(err, ErrUnsupportedVersion) || !strings.Contains(err.Error(), path) {
		t.Errorf("err = %v; want ErrUnsupportedVersion naming the path", err)
	}
}

func TestRecords_RejectNewerVersion(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	mustCommit(t, s, twoSubs("cus_1", user1(), t0()), "")
	if err := s.PutUser(ctx, proxy.User{ID: "user_1"}); err != nil {
		t.Fatal(err)
	}
	err := s.db.Update(func(tx *bbolt.Tx) error {
		// A newer JSON record and a newer binary one.
		if err := tx.Bucket([]byte(bucketCustomers)).Put([]byte("cus_1"), []byte(`{"v":2,"subject":"user:user_1"}`)); err != nil {
			return err
		}
		return tx.Bucket([]byte(bucketAccounts)).Put([]byte("user_1"), []byte{accountVersion + 1, 0})
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Entitlements(ctx, user1()); !errors.Is(err, ErrUnsupportedVersion) {
		t.Errorf("Entitlements err = %v; want ErrUnsupportedVersion", err)
	}
	if _, _, err := s.CommitCustomer(ctx, twoSubs("cus_1", user1(), t0()), "evt_1"); !errors.Is(err, ErrUnsupportedVersion) {
		t.Errorf("CommitCustomer err = %v; want ErrUnsupportedVersion", err)
	}
	if mustProcessed(t, s, "evt_1") {
		t.Error("event marked although the commit failed")
	}
	if _, err := s.User(ctx, "user_1"); !errors.Is(err, ErrUnsupportedVersion) {
		t.Errorf("User err = %v; want ErrUnsupportedVersion", err)
	}
	if _, err := s.Users(ctx, "", 10); !errors.Is(err, ErrUnsupportedVersion) {
		t.Errorf("Users err = %v; want ErrUnsupportedVersion", err)
	}
}

// TestCustomerRecord_AllFields fails when proxy.Subscription gains a
// field the customer record does not store: the test value must set it,
// and the record must read it back.
func TestCustomerRecord_AllFields(t *testing.T) {
	full := proxy.Subscription{ID: "sub_1", CustomerID: "cus_1", Status: proxy.StatusPastDue, PriceIDs: []string{"p1", "p2"}, Plan: "pro",
		CurrentPeriodEnd: t0().Add(time.Hour), TrialEnd: t0().Add(2 * time.Hour), CancelAtPeriodEnd: true,
		PastDueSince: t0().Add(3 * time.Hour), SyncedAt: t0().Add(4 * time.Hour), Comp: true,
		PausedCollection: "void", CollectionResumesAt: t0().Add(5 * time.Hour),
		Amount: 1200, Currency: "usd", Interval: "month", IntervalCount: 1, Created: t0().Add(-time.Hour), EndedAt: t0().Add(6 * time.Hour),
		BillingCycleAnchor: t0().Add(-30 * time.Hour)}
	v := reflect.ValueOf(full)
	for i := range v.NumField() {
		if v.Field(i).IsZero() {
			t.Fatalf("test value leaves %s zero", v.Type().Field(i).Name)
		}
	}
	// Another customer and sync time, and sub-second times, are kept.
	other := full
	other.ID, other.CustomerID, other.SyncedAt, other.PriceIDs, other.TrialEnd = "sub_2", "cus_other", t0().Add(time.Nanosecond), nil, time.Time{}
	rec := customerRecord{CustomerRecord: proxy.CustomerRecord{Subject: "user_1", Email: "ada@example.com", Subscriptions: []proxy.Subscription{full, other},
		HadTrial: true, Deleted: true, SyncedAt: t0().Add(4 * time.Hour)}}
	s, _ := newStore(t)
	err := s.db.Update(func(tx *bbolt.Tx) error {
		data, err := encodeCustomer(tx, "cus_1", &rec, "")
		if err != nil {
			return err
		}
		got, err := decodeCustomer(tx, "cus_1", data)
		if err != nil {
			return err
		}
		if diff := cmp.Diff(rec, got, cmp.AllowUnexported(customerRecord{})); diff != "" {
			t.Errorf("round trip (-want +got):\n%s", diff)
		}
		// The email of the user it names is left out, to be read there.
		shared, err := encodeCustomer(tx, "cus_1", &rec, rec.Email)
		if err != nil {
			return err
		}
		if len(shared) != len(data)-1-len(rec.Email) {
			t.Errorf("with the user's email, %d bytes; want %d", len(shared), len(data)-1-len(rec.Email))
		}
		got, err = decodeCustomer(tx, "cus_1", shared)
		if err != nil {
			return err
		}
		if !got.sharedEmail || got.Email != "" {
			t.Errorf("decoded %+v; want the email left to the user's record", got)
		}
		for i := range len(data) {
			if _, err := decodeCustomer(tx, "cus_1", data[:i]); err == nil {
				t.Errorf("a record cut to %d of %d bytes decodes", i, len(data))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

const helperEnv = "TOLLGATE_BOLT_HELPER_DB"

// TestHelperProcess is the child of TestCommitCustomer_SurvivesKill: it
// commits, says so, and waits to be killed.
func TestHelperProcess(t *testing.T) {
	path := os.Getenv(helperEnv)
	if path == "" {
		t.Skip("child process of TestCommitCustomer_SurvivesKill")
	}
	s, err := Open(path, Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if _, _, err := s.CommitCustomer(context.Background(), twoSubs("cus_crash", user1(), t0()), "evt_crash"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	fmt.Println("committed")
	// The parent holds stdin open and kills this process; stdin ends only
	// if the parent has gone, and then so does this process.
	_, _ = io.Copy(io.Discard, os.Stdin)
	os.Exit(3)
}

// TestCommitCustomer_SurvivesKill: a process killed right after a commit
// returned loses nothing.
func TestCommitCustomer_SurvivesKill(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	path := filepath.Join(t.TempDir(), "tollgate.db")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe() // kept open: the child waits on it to be killed
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	committed := false
	for sc := bufio.NewScanner(stdout); sc.Scan(); {
		if sc.Text() == "committed" {
			committed = true
			break
		}
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	werr := cmd.Wait()
	if !committed {
		t.Fatalf("child never committed: %v\n%s", werr, stderr.Bytes())
	}
	var exitErr *exec.ExitError
	if !errors.As(werr, &exitErr) || exitErr.Exited() {
		t.Fatalf("child was not killed: %v", werr)
	}

	s := mustOpen(t, path)
	if !mustProcessed(t, s, "evt_crash") {
		t.Error("event lost in the crash")
	}
	ents := mustEntitlements(t, s, user1())
	if ents == nil || len(ents.Subscriptions) != 2 || ents.CustomerID != "cus_crash" {
		t.Errorf("entitlements after crash = %+v; want cus_crash with 2 subscriptions", ents)
	}
}

func TestBackup_OpensWithSameData(t *testing.T) {
	s, _ := newStore(t)
	_, want := mustCommit(t, s, twoSubs("cus_1", user1(), t0()), "evt_1")
	if err := s.SetCursor(t.Context(), "sync_all", "sub_1"); err != nil {
		t.Fatal(err)
	}
	backup := filepath.Join(t.TempDir(), "backup.db")
	f, err := os.Create(backup)
	if err != nil {
		t.Fatal(err)
	}
	n, err := s.Backup(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(backup); err != nil || fi.Size() != n {
		t.Fatalf("backup file: %v, %v; Backup said %d bytes", fi, err, n)
	}

	b := mustOpen(t, backup)
	if got := mustEntitlements(t, b, user1()); !cmp.Equal(got, want, equateEmpty()) {
		t.Errorf("Entitlements from backup (-got +want):\n%s", cmp.Diff(got, want, equateEmpty()))
	}
	if !mustProcessed(t, b, "evt_1") {
		t.Error("event missing from backup")
	}
	if v, err := b.Cursor(t.Context(), "sync_all"); err != nil || v != "sub_1" {
		t.Errorf("cursor from backup = %q, %v", v, err)
	}
}

// TestClosedStore: every method returns an error after Close, none panics.
func TestClosedStore(t *testing.T) {
	s, _ := newStore(t)
	mustCommit(t, s, twoSubs("cus_1", user1(), t0()), "")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	ctx := t.Context()
	calls := map[string]func() error{
		"Ping":         func() error { return s.Ping(ctx) },
		"Entitlements": func() error { _, err := s.Entitlements(ctx, user1()); return err },
		"CustomerOf":   func() error { _, err := s.CustomerOf(ctx, user1()); return err },
		"SubjectOf":    func() error { _, _, err := s.SubjectOf(ctx, "cus_1"); return err },
		"LinkCustomer": func() error { return s.LinkCustomer(ctx, user1(), "cus_1") },
		"CommitCustomer": func() error {
			_, _, err := s.CommitCustomer(ctx, twoSubs("cus_1", user1(), t0()), "evt_1")
			return err
		},
		"EventProcessed": func() error { _, err := s.EventProcessed(ctx, "evt_1"); return err },
		"MarkEvent":      func() error { return s.MarkEvent(ctx, "evt_1") },
		"PruneEvents":    func() error { _, err := s.PruneEvents(ctx, t0(), 10); return err },
		"HadTrial":       func() error { _, err := s.HadTrial(ctx, "cus_1"); return err },
		"SetCursor":      func() error { return s.SetCursor(ctx, "c", "v") },
		"Cursor":         func() error { _, err := s.Cursor(ctx, "c"); return err },
		"RecordSeen":     func() error { return s.RecordSeen(ctx, map[string]time.Time{"user_1": t0()}) },
		"PutUser":        func() error { return s.PutUser(ctx, proxy.User{ID: "user_1"}) },
		"DeleteUser":     func() error { return s.DeleteUser(ctx, "user_1") },
		"User":           func() error { _, err := s.User(ctx, "user_1"); return err },
		"Users":          func() error { _, err := s.Users(ctx, "", 10); return err },
		"Backup":         func() error { _, err := s.Backup(&bytes.Buffer{}); return err },
		"Counts":         func() error { _, err := s.Counts(ctx); return err },
		"AddRevocation": func() error {
			return s.AddRevocation(ctx, proxy.Revocation{Kind: proxy.RevocationUser, UserID: "user_1", At: t0(), Expires: t0().Add(time.Hour)})
		},
		"Revocations": func() error { _, err := s.Revocations(ctx, t0()); return err },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
			t.Errorf("%s on a closed store: err = %v; want ErrDatabaseNotOpen", name, err)
		}
	}
}

// TestCanceledContext: no transaction starts once ctx is done.
func TestCanceledContext(t *testing.T) {
	s, _ := newStore(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, _, err := s.CommitCustomer(ctx, twoSubs("cus_1", user1(), t0()), "evt_1"); !errors.Is(err, context.Canceled) {
		t.Errorf("CommitCustomer err = %v; want context.Canceled", err)
	}
	if _, err := s.Entitlements(ctx, user1()); !errors.Is(err, context.Canceled) {
		t.Errorf("Entitlements err = %v; want context.Canceled", err)
	}
	if err := s.Ping(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Ping err = %v; want context.Canceled", err)
	}
	if mustProcessed(t, s, "evt_1") {
		t.Error("event marked by a canceled commit")
	}
}

func BenchmarkEntitlements(b *testing.B) {
	s, _ := newStore(b)
	mustCommit(b, s, twoSubs("cus_1", user1(), t0()), "evt_1")
	ctx := b.Context()
	b.ReportAllocs()
	for b.Loop() {
		ents, err := s.Entitlements(ctx, user1())
		if err != nil || len(ents.Subscriptions) != 2 {
			b.Fatal(ents, err)
		}
	}
}

func BenchmarkCommitCustomer(b *testing.B) {
	s, _ := newStore(b)
	ctx := b.Context()
	state := twoSubs("cus_1", user1(), t0())
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if _, _, err := s.CommitCustomer(ctx, state, "evt_"+fmt.Sprint(i)); err != nil {
			b.Fatal(err)
		}
	}
}
