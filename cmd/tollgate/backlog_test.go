package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// The webhook backlog as the operator sees it: its size and the age of
// its oldest mark are metrics, and /readyz warns (naming webhook_backlog
// in its body's warnings) once the oldest mark is more than ten minutes
// old, while staying ready: every replica shares the backlog. The mark is made
// through the store, as a deferred webhook makes it, for a customer Stripe
// fails to answer for, so that whenever the worker looks, the mark stays
// and keeps its age.
func TestDemo_BacklogIsAMetricAndFarBehindIsAReadinessWarning(t *testing.T) {
	d, clk := mustRunDemo(t)
	d.Stripe.InjectAPIError("GET /v1/customers/{id}", 1000)
	store := d.gateway.Store
	if err := store.MarkDirty(t.Context(), "cus_backlogged", "evt_backlogged"); err != nil {
		t.Fatal(err)
	}
	metrics := func() string {
		t.Helper()
		resp, err := http.Get(d.AdminURL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if code, body := readyz(t, d); code != http.StatusOK {
		t.Fatalf("/readyz with a fresh mark: %d %s", code, body)
	}
	clk.Advance(11 * time.Minute)
	out := metrics()
	for _, want := range []string{"tollgate_webhook_backlog_customers 1", "tollgate_webhook_backlog_oldest_seconds 660"} {
		if !strings.Contains(out, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	code, body := readyz(t, d)
	var answer struct {
		Status   string
		Warnings []struct{ Name string }
	}
	if err := json.Unmarshal([]byte(body), &answer); err != nil {
		t.Fatalf("/readyz: %v in %s", err, body)
	}
	if code != http.StatusOK || answer.Status != "ok" || len(answer.Warnings) != 1 || answer.Warnings[0].Name != "webhook_backlog" {
		t.Errorf("/readyz with an 11-minute-old mark: %d %s, want 200 warning of webhook_backlog", code, body)
	}
}
