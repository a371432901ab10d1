package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/proxy"
)

// makeKey stores a key for sub, as the account page and the admin API do.
func makeKey(t *testing.T, d *demo, sub proxy.Subject, scopes ...string) (string, proxy.APIKey) {
	t.Helper()
	key, rec, err := proxy.NewAPIKey(d.Config.LiveMode(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	rec.Subject, rec.Name, rec.Scopes, rec.CreatedBy = sub, "test", scopes, sub.ID
	if err := d.gateway.Store.CreateAPIKey(t.Context(), rec, 0); err != nil {
		t.Fatal(err)
	}
	return key, rec
}

type keyAnswer struct {
	code                 int
	user, org, plan, key string
	errCode              string
}

func callWithKey(t *testing.T, d *demo, path string, hdr map[string]string) keyAnswer {
	t.Helper()
	h := map[string]string{"Accept": "application/json"}
	for k, v := range hdr {
		h[k] = v
	}
	resp := get(t, &http.Client{Timeout: 10 * time.Second}, d.URL+path, h)
	if resp.StatusCode == http.StatusOK {
		// The demo app's page shows the X-Tollgate-* headers it got.
		b := readBody(t, resp)
		at := func(h string) string { return between(b, `data-header="`+h+`">`, "<") }
		return keyAnswer{code: 200, user: at("X-Tollgate-User"), org: at("X-Tollgate-Org"), plan: at("X-Tollgate-Plan"), key: at("X-Tollgate-Key")}
	}
	var body struct{ Error string }
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return keyAnswer{code: resp.StatusCode, errCode: body.Error}
}

// countingKeys counts the reads by hash of the store under the gateway's
// API key cache.
type countingKeys struct {
	proxy.APIKeyStore
	byHash atomic.Int64
}

func (c *countingKeys) APIKeyByHash(ctx context.Context, hash [32]byte) (proxy.APIKey, error) {
	c.byHash.Add(1)
	return c.APIKeyStore.APIKeyByHash(ctx, hash)
}

// TestDemo_APIKeys: a user pays, then calls the paid API with a key:
// 200 with the user's plan and the key's ID (never the key) in
// X-Tollgate-Key; out of scope 403; a broken checksum and a key of the
// other mode 401 without a store read, a made-up well-formed key and a
// revoked key 401 after one; the period ends 402; an organisation's key
// is the organisation's, 402 until it subscribes, then 200 with its plan;
// 50 wrong keys from one address end in 429 while a valid key still
// passes; no key is ever in the log.
func TestDemo_APIKeys(t *testing.T) {
	reads := &countingKeys{}
	d, _, logs := mustRunDemoLogged(t, demoOptions{WrapAPIKeys: func(s proxy.APIKeyStore) proxy.APIKeyStore {
		reads.APIKeyStore = s
		return reads
	}})
	jar, _ := cookiejar.New(nil)
	c := noRedirects(jar)
	signIn(t, d, jar, "user_ada")
	subID := subscribe(t, d, c)
	waitWebhooks(t, d)

	ada := proxy.Subject{Kind: proxy.SubjectUser, ID: "user_ada"}
	all, allRec := makeKey(t, d, ada, "*")
	onlyReports, onlyReportsRec := makeKey(t, d, ada, "415VNA")
	revoked, revokedRec := makeKey(t, d, ada, "*")
	if _, err := d.gateway.Store.RevokeAPIKey(t.Context(), revokedRec.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	orgKey, orgRec := makeKey(t, d, proxy.Subject{Kind: proxy.SubjectOrg, ID: "org_acme"}, "*")
	otherMode, _, _ := proxy.NewAPIKey(!d.Config.LiveMode(), time.Now())
	madeUp, _, _ := proxy.NewAPIKey(d.Config.LiveMode(), time.Now()) // well-formed, never stored
	broken := all[:len(all)-1] + string("ab"[0+boolInt(all[len(all)-1] == 'a')])
	secrets := []string{all, onlyReports, revoked, orgKey, otherMode, madeUp, broken}

	bearer := func(k string) map[string]string { return map[string]string{"Authorization": "Bearer " + k} }
	for _, tc := range []struct {
		name  string
		path  string
		hdr   map[string]string
		want  keyAnswer
		reads int64 // of the store by hash, -1: not counted (the record may be cached)
	}{
		{"bearer key", "/routes/415VNA/", bearer(all), keyAnswer{code: 200, user: "user_ada", plan: "pro", key: allRec.ID}, -1},
		{"X-API-Key header", "/routes/258AVO/", map[string]string{"X-API-Key": all}, keyAnswer{code: 200, user: "user_ada", plan: "pro", key: allRec.ID}, -1},
		{"in scope", "/routes/415VNA/", bearer(onlyReports), keyAnswer{code: 200, user: "user_ada", plan: "pro", key: onlyReportsRec.ID}, -1},
		{"out of scope", "/routes/258AVO/", bearer(onlyReports), keyAnswer{code: 403, errCode: "insufficient_scope"}, -1},
		{"scoped key on a rule without a route ID", "/app/", bearer(onlyReports), keyAnswer{code: 403, errCode: "insufficient_scope"}, -1},
		{"signed_in route as its user", "/app/", bearer(all), keyAnswer{code: 200, user: "user_ada", key: allRec.ID}, -1},
		{"broken checksum", "/routes/415VNA/", bearer(broken), keyAnswer{code: 401, errCode: "invalid_api_key"}, 0},
		{"other mode", "/routes/415VNA/", bearer(otherMode), keyAnswer{code: 401, errCode: "invalid_api_key"}, 0},
		{"made up, well-formed", "/routes/415VNA/", bearer(madeUp), keyAnswer{code: 401, errCode: "invalid_api_key"}, 1},
		{"revoked", "/routes/415VNA/", bearer(revoked), keyAnswer{code: 401, errCode: "invalid_api_key"}, -1},
		{"organisation key, no organisation plan", "/routes/415VNA/", bearer(orgKey), keyAnswer{code: 402, errCode: "payment_required"}, -1},
		{"organisation key on a signed_in route", "/app/", bearer(orgKey), keyAnswer{code: 403, errCode: "insufficient_scope"}, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := reads.byHash.Load()
			if got := callWithKey(t, d, tc.path, tc.hdr); got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
			if n := reads.byHash.Load() - before; tc.reads >= 0 && n != tc.reads {
				t.Errorf("%d store reads by hash, want %d", n, tc.reads)
			}
		})
	}

	// The organisation subscribes (grace, its admin, through Checkout):
	// its key gets the organisation's plan, as the organisation and no
	// user.
	grace, _ := cookiejar.New(nil)
	signIn(t, d, grace, "user_grace")
	subscribeOrg(t, d, noRedirects(grace))
	if got, want := callWithKey(t, d, "/routes/TEAMX/", bearer(orgKey)), (keyAnswer{code: 200, org: "org_acme", plan: "team", key: orgRec.ID}); got != want {
		t.Errorf("organisation key after the organisation subscribed: %+v, want %+v", got, want)
	}

	// The period ends: the key's user has no plan any more.
	d.Stripe.SetSubscriptionStatus(subID, "canceled")
	waitWebhooks(t, d)
	if got := callWithKey(t, d, "/routes/415VNA/", bearer(all)); got.code != 402 || got.errCode != "payment_required" {
		t.Errorf("after the subscription ended: %+v, want 402 payment_required", got)
	}

	// A key just used (its record cached by the gateway) and then revoked
	// through the admin API is refused on the very next request: the admin
	// API revokes through the gateway's cached store.
	cached, cachedRec := makeKey(t, d, ada, "*")
	secrets = append(secrets, cached)
	if got := callWithKey(t, d, "/app/", bearer(cached)); got.code != 200 {
		t.Fatalf("a fresh key: %+v", got)
	}
	if d.gateway.Keys == nil || d.Config.Admin.Token == "" {
		t.Fatal("the demo has no cached key store or no admin token")
	}
	req := httptest.NewRequest(http.MethodDelete, "/api/keys/"+cachedRec.ID, nil)
	req.Header.Set("Authorization", "Bearer "+d.Config.Admin.Token)
	rec := httptest.NewRecorder()
	(*d.admin.Load()).ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("admin API revoke: %d %s", rec.Code, rec.Body)
	}
	if got := callWithKey(t, d, "/app/", bearer(cached)); got.code != 401 || got.errCode != "invalid_api_key" {
		t.Errorf("the next request after revoking: %+v, want 401 invalid_api_key", got)
	}

	// 50 wrong keys from one address: refused ones turn into 429; a valid
	// key from the same address is never refused for them.
	codes := map[int]int{}
	before := reads.byHash.Load()
	for range 50 {
		codes[callWithKey(t, d, "/app/", bearer(broken)).code]++
	}
	if n := reads.byHash.Load() - before; n != 0 {
		t.Errorf("50 keys with a broken checksum: %d store reads, want none", n)
	}
	// Five refusals above count in the same minute: 20 in all, then 429.
	if codes[429] != 35 || codes[401] != 15 {
		t.Errorf("50 wrong keys: %v, want 15 × 401 then 35 × 429", codes)
	}
	if got := callWithKey(t, d, "/app/", bearer(all)); got.code != 200 {
		t.Errorf("a valid key from the limited address: %+v", got)
	}

	// No key, nor its secret part past the 12 characters lists show, is
	// in the log (debug level).
	out := logs.String()
	if !strings.Contains(out, `"via":"api_key"`) || !strings.Contains(out, cachedRec.ID) {
		t.Errorf("the log has no request let in by a key, or no line naming the revoked key %s: is it the gateway's log?", cachedRec.ID)
	}
	// Who called: a request let in by the organisation's key names the
	// organisation and the key (by ID), no person.
	if !strings.Contains(out, `"org_id":"org_acme","via":"api_key","key_id":"`+orgRec.ID+`"`) {
		t.Errorf("no access log line names the organisation's key %s and org_acme", orgRec.ID)
	}
	for _, k := range secrets {
		if strings.Contains(out, k[12:]) {
			t.Errorf("the log holds the secret of key %s…", k[:12])
		}
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestDemo_APIKeysNeverReachTollgatesOwnEndpoints: a key is for the paid
// API only. On tollgate's own pages it is not looked up at all: a request
// carrying only a key is signed out, so it cannot open the billing portal
// or Checkout, read the account, or sign out — and a sign-out attempt
// with one cannot end every key (red team #5).
func TestDemo_APIKeysNeverReachTollgatesOwnEndpoints(t *testing.T) {
	d, _ := mustRunDemo(t)
	jar, _ := cookiejar.New(nil)
	c := noRedirects(jar)
	signIn(t, d, jar, "user_ada")
	subscribe(t, d, c)
	waitWebhooks(t, d)
	ada := proxy.Subject{Kind: proxy.SubjectUser, ID: "user_ada"}
	key, _ := makeKey(t, d, ada, "*")
	other, _ := makeKey(t, d, ada, "*")
	bare := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	post := func(path string, hdr map[string]string) int {
		req, _ := http.NewRequest("POST", d.URL+path, strings.NewReader("plan=pro&scope=org"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := bare.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, hdr := range []map[string]string{{"X-API-Key": key}, {"Authorization": "Bearer " + key}, {"X_API_Key": key}} {
		for _, p := range []string{"/.tollgate/billing", "/.tollgate/checkout"} {
			if code := post(p, hdr); code != http.StatusUnauthorized {
				t.Errorf("POST %s with a key (%v): %d, want 401 (signed out)", p, hdr, code)
			}
		}
		post("/.tollgate/sign-out", hdr)
		resp := get(t, bare, d.URL+"/.tollgate/account", withHeader(api, "X-API-Key", key))
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET account with a key: %d, want 401", resp.StatusCode)
		}
	}
	if got := callWithKey(t, d, "/routes/415VNA/", map[string]string{"X-API-Key": other}); got.code != 200 {
		t.Errorf("another key after sign-out attempts with a key: %+v, want 200", got)
	}
}
