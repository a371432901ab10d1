package admin

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tollgate/tollgate/proxy"
)

type fakeUsage map[proxy.Subject][]proxy.QuotaCount

func (f fakeUsage) Usage(_ context.Context, s proxy.Subject) ([]proxy.QuotaCount, error) {
	return f[s], nil
}

// GET /api/users/{id}/usage lists a subject's counters with the quota each
// counts against.
func TestAPI_Usage(t *testing.T) {
	e := newEnv(t, nil)
	if code, _, _ := e.do(t, "GET", "/api/users/user_a/usage", ""); code != 503 {
		t.Errorf("no limits: %d, want 503", code)
	}
	start, end := time.Date(2025, 3, 10, 8, 0, 0, 0, time.UTC), time.Date(2025, 4, 10, 8, 0, 0, 0, time.UTC)
	day := time.Date(2025, 3, 20, 0, 0, 0, 0, time.UTC)
	alice := proxy.Subject{Kind: proxy.SubjectUser, ID: "user_a"}
	e = newEnv(t, func(c *Config) {
		c.Usage = fakeUsage{alice: {
			{Key: proxy.QuotaKey{Subject: alice, Plan: "pro", Route: "415VNA", Start: start, End: end}, Used: 42},
			{Key: proxy.QuotaKey{Subject: alice, Plan: "free", Route: "*", Start: day, End: day.AddDate(0, 0, 1)}, Used: 3},
		}}
		c.Plans = func() []proxy.Plan {
			return []proxy.Plan{{Key: "pro", Limits: []proxy.LimitEntry{{Route: "415VNA", Limit: proxy.Limit{Quota: 1000, Period: proxy.PeriodMonth}}}}}
		}
		c.Free = func() *proxy.Plan {
			return &proxy.Plan{Key: "free", Limits: []proxy.LimitEntry{{Route: "*", Limit: proxy.Limit{Quota: 5, Period: proxy.PeriodDay}}}}
		}
	})
	code, _, b := e.do(t, "GET", "/api/users/user_a/usage", "")
	if code != 200 {
		t.Fatalf("usage: %d %s", code, b)
	}
	want := []QuotaUse{
		{Plan: "pro", Route: "415VNA", Used: 42, Quota: 1000, Start: start, End: end},
		{Plan: "free", Route: "*", Used: 3, Quota: 5, Start: day, End: day.AddDate(0, 0, 1)},
	}
	if d := cmp.Diff(want, mustJSON[[]QuotaUse](t, b)); d != "" {
		t.Errorf("usage (-want +got):\n%s", d)
	}
	if code, _, _ := e.do(t, "GET", "/api/users/nobody/usage", ""); code != 400 {
		t.Errorf("bad subject: %d, want 400", code)
	}
}

type fakeReplicas []proxy.ReplicaHeartbeat

func (f fakeReplicas) LiveReplicas() int { return 2 }
func (f fakeReplicas) List(context.Context) ([]proxy.ReplicaHeartbeat, error) {
	return f, nil
}

// GET /api/replicas: the count this replica divides rates by, and every
// heartbeat row; 503 on a store one process opens.
func TestAPI_Replicas(t *testing.T) {
	e := newEnv(t, nil)
	if code, _, _ := e.do(t, "GET", "/api/replicas", ""); code != 503 {
		t.Errorf("bbolt: %d, want 503", code)
	}
	at := time.Date(2026, 12, 3, 20, 0, 0, 0, time.UTC)
	rows := fakeReplicas{
		{ID: "a", Started: at, Heartbeat: at, Age: 0.5, Live: true, Self: true},
		{ID: "b", Started: at, Heartbeat: at, Age: 1.5, Live: true},
		{ID: "c", Started: at, Heartbeat: at.Add(-time.Minute), Age: 61, Live: false},
	}
	e = newEnv(t, func(c *Config) { c.Replicas = rows })
	code, _, b := e.do(t, "GET", "/api/replicas", "")
	if code != 200 {
		t.Fatalf("replicas: %d %s", code, b)
	}
	type answer struct {
		Live     int                      `json:"live"`
		Replicas []proxy.ReplicaHeartbeat `json:"replicas"`
	}
	if d := cmp.Diff(answer{Live: 2, Replicas: rows}, mustJSON[answer](t, b)); d != "" {
		t.Errorf("replicas (-want +got):\n%s", d)
	}
}
