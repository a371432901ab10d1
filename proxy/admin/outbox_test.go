package admin

import (
	"testing"
	"time"

	"github.com/tollgate/tollgate/proxy"
)

func TestAPI_Outbox(t *testing.T) {
	e := newEnv(t, nil)
	if code, _, _ := e.do(t, "GET", "/api/outbox", ""); code != 503 {
		t.Errorf("no outbox: %d, want 503", code)
	}
	e = newEnv(t, func(c *Config) { c.Outbox = c.Store.(Outbox) })
	ctx := t.Context()
	at := t0().Add(-time.Hour)
	rows, err := e.store.AppendUsage(ctx, []proxy.UsageRow{
		{Subject: userA(), Customer: "cus_a", EventName: "api_requests", Window: at, At: at, Value: 3},
		{Subject: userA(), Customer: "cus_a", EventName: "api_requests", Window: at, At: at.Add(time.Minute), Value: 4},
		{Subject: userA(), Customer: "cus_a", EventName: "api_requests", Window: at, At: at.Add(2 * time.Minute), Value: 5},
	})
	if err != nil {
		t.Fatal(err)
	}
	for seq, st := range map[uint64]proxy.OutboxState{
		1: {Status: proxy.OutboxSent, Attempts: 1},
		2: {Status: proxy.OutboxFlagged, Attempts: 1, Note: "400 invalid_request_error: No such customer"},
	} {
		if err := e.store.SetUsageState(ctx, seq, st); err != nil {
			t.Fatal(err)
		}
	}
	code, _, b := e.do(t, "GET", "/api/outbox", "")
	sum := mustJSON[OutboxSummary](t, b)
	if code != 200 || sum.Pending != 1 || sum.Flagged != 1 || sum.Sent != 1 || sum.OldestSeconds != 58*60 ||
		len(sum.FlaggedRows) != 1 || sum.FlaggedRows[0].Identifier != rows[1].Identifier() {
		t.Fatalf("outbox: %d %s", code, b)
	}
	for _, tc := range []struct {
		path, body string
		want       int
	}{
		{"/api/outbox/1", `{"action":"retry"}`, 409}, // sent: settled
		{"/api/outbox/3", `{"action":"retry"}`, 409}, // pending
		{"/api/outbox/9", `{"action":"retry"}`, 404}, // no such row
		{"/api/outbox/x", `{"action":"retry"}`, 404}, // not a sequence
		{"/api/outbox/2", `{"action":"again"}`, 400}, // no such action
	} {
		if code, _, b := e.do(t, "POST", tc.path, tc.body); code != tc.want {
			t.Errorf("%s %s: %d %s, want %d", tc.path, tc.body, code, b, tc.want)
		}
	}
	code, _, b = e.do(t, "POST", "/api/outbox/2", `{"action":"retry","reason":"customer fixed"}`, ActorHeader, "ops-alice")
	if got := mustJSON[UsageEntry](t, b); code != 200 || got.Status != "pending" {
		t.Fatalf("retry: %d %s", code, b)
	}
	if e2, _ := e.store.UsageEntry(ctx, 2); e2.State.Status != proxy.OutboxPending || !e2.State.First.IsZero() {
		t.Errorf("after a retry: %+v; want pending with a new first attempt", e2.State)
	}
	audit, err := e.store.AuditLog(ctx, userA(), 10)
	if err != nil || len(audit) == 0 || audit[0].Action != ActionUsageRetried || audit[0].Actor != "ops-alice" {
		t.Errorf("audit: %v %+v", err, audit)
	}
}
