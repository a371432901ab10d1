package bolt

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/tollgate/tollgate/proxy"
	"github.com/tollgate/tollgate/proxy/storetest"
)

var (
	oAda  = proxy.Subject{Kind: proxy.SubjectUser, ID: "user_ada"}
	oAcme = proxy.Subject{Kind: proxy.SubjectOrg, ID: "org_acme"}
	ot0   = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
)

func usageRow(s proxy.Subject, at time.Time, n int64) proxy.UsageRow {
	return proxy.UsageRow{Subject: s, Customer: "cus_" + s.ID, EventName: "api_requests", Window: at, At: at, Value: n}
}

func TestOutbox_Conformance(t *testing.T) {
	storetest.UsageOutbox(t, func(t *testing.T) (proxy.UsageOutbox, func() proxy.UsageOutbox) {
		s, path := newStore(t)
		return s, func() proxy.UsageOutbox {
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = mustOpen(t, path)
			return s
		}
	})
}

// A transaction that fails after appending writes nothing and takes no
// sequence: the next row is still 1. This is how the quota flush uses
// appendUsage, in its own transaction.
func TestOutbox_FailedTransactionWritesNothing(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	boom := errors.New("boom")
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		if _, err := s.appendUsage(tx, []proxy.UsageRow{usageRow(oAda, ot0, 3)}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("update: %v", err)
	}
	if st, err := s.OutboxStats(ctx); err != nil || st != (proxy.OutboxStats{}) {
		t.Errorf("stats after a failed transaction: %+v, %v; want none", st, err)
	}
	got, err := s.AppendUsage(ctx, []proxy.UsageRow{usageRow(oAda, ot0, 3), {Subject: oAda}})
	if err == nil {
		t.Fatalf("appended an invalid row: %+v", got)
	}
	got, err = s.AppendUsage(ctx, []proxy.UsageRow{usageRow(oAda, ot0, 3)})
	if err != nil || got[0].Seq != 1 {
		t.Errorf("first committed row: %+v, %v; want seq 1", got, err)
	}
}

// A store restored from a backup takes sequences again from the backup's,
// but under another writer: no identifier already sent is made again,
// which Stripe would refuse and the usage be lost.
func TestOutbox_RestoredBackupMakesNewIdentifiers(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	if _, err := s.AppendUsage(ctx, []proxy.UsageRow{usageRow(oAda, ot0, 1)}); err != nil {
		t.Fatal(err)
	}
	var backup bytes.Buffer
	if _, err := s.Backup(&backup); err != nil {
		t.Fatal(err)
	}
	later, err := s.AppendUsage(ctx, []proxy.UsageRow{usageRow(oAda, ot0, 2)})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "restored.db")
	if err := os.WriteFile(path, backup.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	restored := mustOpen(t, path)
	again, err := restored.AppendUsage(ctx, []proxy.UsageRow{usageRow(oAda, ot0, 2)})
	if err != nil {
		t.Fatal(err)
	}
	if again[0].Seq != later[0].Seq || again[0].Identifier() == later[0].Identifier() {
		t.Errorf("restored: %s (seq %d); the original wrote %s: want the same sequence under another writer",
			again[0].Identifier(), again[0].Seq, later[0].Identifier())
	}
}
