package proxy

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
	"time"
)

func TestUsageRow_Identifier(t *testing.T) {
	win := time.Unix(1767225600, 0).UTC()
	row := func(subject Subject, event, writer string, seq uint64) UsageRow {
		return UsageRow{Subject: subject, EventName: event, Window: win, Writer: writer, Seq: seq}
	}
	user := Subject{Kind: SubjectUser, ID: "user_2abc"}
	org := Subject{Kind: SubjectOrg, ID: "org_2abc"}
	longID := Subject{Kind: SubjectUser, ID: "user_" + strings.Repeat("a", 95)}
	tests := []struct {
		name string
		row  UsageRow
		want string
	}{
		{"readable", row(user, "api_requests", "3f9a1c2e", 42), "user_2abc.api_requests.1767225600.w3f9a1c2e.42"},
		{"organisation", row(org, "api_requests", "3f9a1c2e", 1), "org_2abc.api_requests.1767225600.w3f9a1c2e.1"},
		{"a dot in the event name is hashed", row(user, "api.requests", "3f9a1c2e", 1),
			"h" + hashOf(user, "api.requests") + ".1767225600.w3f9a1c2e.1"},
		{"too long is hashed", row(longID, "api_requests", "3f9a1c2e", 7),
			"h" + hashOf(longID, "api_requests") + ".1767225600.w3f9a1c2e.7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.row.Identifier()
			if got != tt.want {
				t.Errorf("Identifier() = %q, want %q", got, tt.want)
			}
			if len(got) > MaxMeterIdentifier {
				t.Errorf("Identifier() is %d characters; Stripe takes %d", len(got), MaxMeterIdentifier)
			}
		})
	}
	// Every part makes a different identifier: a late flush (another
	// sequence), another replica (another writer), another window, subject
	// or meter never reuses one.
	base := row(user, "api_requests", "3f9a1c2e", 42)
	variants := []UsageRow{
		row(user, "api_requests", "3f9a1c2e", 43),
		row(user, "api_requests", "00000001", 42),
		row(org, "api_requests", "3f9a1c2e", 42),
		row(user, "tokens", "3f9a1c2e", 42),
		{Subject: user, EventName: "api_requests", Window: win.Add(time.Second), Writer: "3f9a1c2e", Seq: 42},
		row(longID, "api_requests", "3f9a1c2e", 42),
	}
	seen := map[string]bool{base.Identifier(): true}
	for _, v := range variants {
		id := v.Identifier()
		if seen[id] {
			t.Errorf("identifier %q made twice", id)
		}
		seen[id] = true
	}
}

// hashOf is the hashed form's first part, worked out here on its own:
// sha256 of the subject, NUL and the event name, 12 bytes in hex.
func hashOf(s Subject, event string) string {
	sum := sha256.Sum256([]byte(s.String() + "\x00" + event))
	return hex.EncodeToString(sum[:12])
}

func TestUsageRow_Validate(t *testing.T) {
	at := time.Unix(1767225600, 0).UTC()
	good := UsageRow{Subject: Subject{Kind: SubjectUser, ID: "user_2abc"}, Customer: "cus_1", EventName: "api_requests",
		Window: at, At: at.Add(time.Second), Value: 3}
	if err := good.Validate(); err != nil {
		t.Fatalf("good row: %v", err)
	}
	bad := map[string]func(*UsageRow){
		"no subject":     func(r *UsageRow) { r.Subject = Subject{} },
		"no customer":    func(r *UsageRow) { r.Customer = "" },
		"not a customer": func(r *UsageRow) { r.Customer = "user_2abc" },
		"bad event":      func(r *UsageRow) { r.EventName = "a b" },
		"zero window":    func(r *UsageRow) { r.Window = time.Time{} },
		"before window":  func(r *UsageRow) { r.At = r.Window.Add(-time.Second) },
		"zero value":     func(r *UsageRow) { r.Value = 0 },
		"negative value": func(r *UsageRow) { r.Value = -1 },
	}
	for name, mut := range bad {
		r := good
		mut(&r)
		if err := r.Validate(); err == nil {
			t.Errorf("%s: Validate() = nil, want an error", name)
		}
	}
}

func TestMeterWindow(t *testing.T) {
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tests := []struct {
		name       string
		t, period  string // period "" : none known
		start, end string
	}{
		{"the hour", "2026-12-03T14:20:00Z", "", "2026-12-03T14:00:00Z", "2026-12-03T15:00:00Z"},
		{"a period ending elsewhere", "2026-12-03T14:20:00Z", "2027-01-03T14:23:10Z", "2026-12-03T14:00:00Z", "2026-12-03T15:00:00Z"},
		{"cut at the period's end", "2026-12-03T14:20:00Z", "2026-12-03T14:23:10Z", "2026-12-03T14:00:00Z", "2026-12-03T14:23:10Z"},
		{"after the cut", "2026-12-03T14:30:00Z", "2026-12-03T14:23:10Z", "2026-12-03T14:23:10Z", "2026-12-03T15:00:00Z"},
		{"on the boundary", "2026-12-03T14:23:10Z", "2026-12-03T14:23:10Z", "2026-12-03T14:23:10Z", "2026-12-03T15:00:00Z"},
		{"a boundary on the hour cuts nothing", "2026-12-03T14:20:00Z", "2026-12-03T14:00:00Z", "2026-12-03T14:00:00Z", "2026-12-03T15:00:00Z"},
		{"another zone is UTC", "2026-12-03T15:20:00+01:00", "", "2026-12-03T14:00:00Z", "2026-12-03T15:00:00Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var period time.Time
			if tt.period != "" {
				period = at(tt.period)
			}
			start, end := MeterWindow(at(tt.t), period)
			if !start.Equal(at(tt.start)) || !end.Equal(at(tt.end)) {
				t.Errorf("MeterWindow = %v–%v, want %s–%s", start, end, tt.start, tt.end)
			}
			if ts := MeterTimestamp(start, end); ts.Before(start) || !ts.Before(end) {
				t.Errorf("MeterTimestamp %v outside %v–%v", ts, start, end)
			}
		})
	}
}
