package proxy

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestAPIKeyFormat(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	live, rec, err := NewAPIKey(true, now)
	if err != nil {
		t.Fatal(err)
	}
	test, _, err := NewAPIKey(false, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(live) != APIKeyLen || !strings.HasPrefix(live, "tg_live_") || !strings.HasPrefix(test, "tg_test_") {
		t.Fatalf("keys %q, %q", live, test)
	}
	if rec.Hash != HashAPIKey(live) || rec.Prefix != live[:APIKeyShownPrefix] || !ValidAPIKeyID(rec.ID) || !rec.CreatedAt.Equal(now) {
		t.Fatalf("record %+v", rec)
	}
	flip := func(k string, i int) string {
		b := []byte(k)
		if b[i] == 'a' {
			b[i] = 'b'
		} else {
			b[i] = 'a'
		}
		return string(b)
	}
	for _, tc := range []struct {
		name string
		key  string
		live bool
		want error
	}{
		{"live on live", live, true, nil},
		{"test on test", test, false, nil},
		{"test on live", test, true, ErrAPIKeyWrongMode},
		{"live on test", live, false, ErrAPIKeyWrongMode},
		{"one random character changed", flip(live, 20), true, ErrAPIKeyMalformed},
		{"checksum changed", flip(live, len(live)-1), true, ErrAPIKeyMalformed},
		{"truncated", live[:len(live)-1], true, ErrAPIKeyMalformed},
		{"not base62", live[:20] + "-" + live[21:], true, ErrAPIKeyMalformed},
		{"mode swapped by hand", "tg_test_" + live[8:], false, ErrAPIKeyMalformed},
		{"empty", "", true, ErrAPIKeyMalformed},
		{"clerk", "ak_" + live[3:], true, ErrAPIKeyMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := CheckAPIKey(tc.key, tc.live); !errors.Is(err, tc.want) {
				t.Errorf("CheckAPIKey = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestAPIKeyUsableAndScopes(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	for _, tc := range []struct {
		name string
		key  APIKey
		want error
	}{
		{"fresh", APIKey{}, nil},
		{"expires later", APIKey{ExpiresAt: now.Add(time.Second)}, nil},
		{"expired now", APIKey{ExpiresAt: now}, ErrAPIKeyExpired},
		{"revoked", APIKey{RevokedAt: now.Add(-time.Hour)}, ErrAPIKeyRevoked},
	} {
		if err := tc.key.Usable(now); !errors.Is(err, tc.want) {
			t.Errorf("%s: Usable = %v, want %v", tc.name, err, tc.want)
		}
	}
	for _, tc := range []struct {
		scopes []string
		route  string
		want   bool
	}{
		{[]string{"*"}, "", true},
		{[]string{"*"}, "258AVO", true},
		{[]string{"258AVO"}, "258AVO", true},
		{[]string{"258AVO"}, "415VNA", false},
		{[]string{"258AVO"}, "", false},
		{nil, "258AVO", false},
	} {
		if got := ScopesAllow(tc.scopes, tc.route); got != tc.want {
			t.Errorf("ScopesAllow(%q, %q) = %v, want %v", tc.scopes, tc.route, got, tc.want)
		}
	}
}
