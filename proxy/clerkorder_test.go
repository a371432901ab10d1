package proxy

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestClerkVersion_Admit(t *testing.T) {
	t0 := time.UnixMilli(1_760_000_000_000)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	tests := []struct {
		name    string
		v       ClerkVersion
		at      time.Time
		deleted bool
		want    ClerkVersion
		applied bool
	}{
		{"first message", ClerkVersion{}, at(0), false, ClerkVersion{At: at(0)}, true},
		{"first message without a time", ClerkVersion{}, time.Time{}, false, ClerkVersion{}, true},
		{"newer update", ClerkVersion{At: at(0)}, at(1), false, ClerkVersion{At: at(1)}, true},
		{"the same message again", ClerkVersion{At: at(1)}, at(1), false, ClerkVersion{At: at(1)}, true},
		{"older update: the demoted member's late promotion", ClerkVersion{At: at(5)}, at(1), false, ClerkVersion{At: at(5)}, false},
		{"deletion", ClerkVersion{At: at(1)}, at(2), true, ClerkVersion{At: at(2), Deleted: true}, true},
		{"older deletion still applies, keeps the later time", ClerkVersion{At: at(5)}, at(2), true, ClerkVersion{At: at(5), Deleted: true}, true},
		{"deletion again", ClerkVersion{At: at(2), Deleted: true}, at(2), true, ClerkVersion{At: at(2), Deleted: true}, true},
		{"older update after a deletion: no resurrection", ClerkVersion{At: at(2), Deleted: true}, at(1), false, ClerkVersion{At: at(2), Deleted: true}, false},
		{"update as old as the deletion", ClerkVersion{At: at(2), Deleted: true}, at(2), false, ClerkVersion{At: at(2), Deleted: true}, false},
		{"rejoined after the deletion", ClerkVersion{At: at(2), Deleted: true}, at(3), false, ClerkVersion{At: at(3)}, true},
		{"a message without a time after one with", ClerkVersion{At: at(2)}, time.Time{}, false, ClerkVersion{At: at(2)}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, applied := tt.v.Admit(tt.at, tt.deleted)
			if applied != tt.applied {
				t.Errorf("applied %v, want %v", applied, tt.applied)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("version (-want +got):\n%s", diff)
			}
		})
	}
}
