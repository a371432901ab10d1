package clerk

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tollgate/tollgate/proxy"
)

// The Svix documentation's test vector.
const (
	svixVecSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	svixVecID     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	svixVecTS     = "1614265330"
	svixVecBody   = `{"test": 2432232314}`
	svixVecSig    = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func svixHeaders(prefix, id, ts, sig string) http.Header {
	h := http.Header{}
	h.Set(prefix+"-id", id)
	h.Set(prefix+"-timestamp", ts)
	h.Set(prefix+"-signature", sig)
	return h
}

func TestVerifySvix(t *testing.T) {
	vecTime := time.Unix(1614265330, 0)
	otherSecret := testWebhookSecret
	v1aOnly := "v1a," + strings.TrimPrefix(svixVecSig, "v1,")

	tests := []struct {
		name    string
		secrets []string
		headers http.Header
		body    string
		now     time.Time
		want    error // nil: accepted
	}{
		{"vector", []string{svixVecSecret}, svixHeaders("svix", svixVecID, svixVecTS, svixVecSig), svixVecBody, vecTime, nil},
		{"secret without prefix", []string{strings.TrimPrefix(svixVecSecret, "whsec_")}, svixHeaders("svix", svixVecID, svixVecTS, svixVecSig), svixVecBody, vecTime, nil},
		{"4m59s later", []string{svixVecSecret}, svixHeaders("svix", svixVecID, svixVecTS, svixVecSig), svixVecBody, vecTime.Add(4*time.Minute + 59*time.Second), nil},
		{"4m59s earlier", []string{svixVecSecret}, svixHeaders("svix", svixVecID, svixVecTS, svixVecSig), svixVecBody, vecTime.Add(-4*time.Minute - 59*time.Second), nil},
		{"stale", []string{svixVecSecret}, svixHeaders("svix", svixVecID, svixVecTS, svixVecSig), svixVecBody, vecTime.Add(5*time.Minute + time.Second), errSvixTooOld},
		{"future", []string{svixVecSecret}, svixHeaders("svix", svixVecID, svixVecTS, svixVecSig), svixVecBody, vecTime.Add(-5*time.Minute - time.Second), errSvixTooNew},
		{"real clock", []string{svixVecSecret}, svixHeaders("svix", svixVecID, svixVecTS, svixVecSig), svixVecBody, time.Now(), errSvixTooOld},
		{"flipped body byte", []string{svixVecSecret}, svixHeaders("svix", svixVecID, svixVecTS, svixVecSig), `{"test": 2432232315}`, vecTime, errSvixSignature},
		{"flipped signature byte", []string{svixVecSecret}, svixHeaders("svix", svixVecID, svixVecTS, strings.Replace(svixVecSig, "g0hM", "g0hN", 1)), svixVecBody, vecTime, errSvixSignature},
		{"other id", []string{svixVecSecret}, svixHeaders("svix", svixVecID+"x", svixVecTS, svixVecSig), svixVecBody, vecTime, errSvixSignature},
		{"other timestamp", []string{svixVecSecret}, svixHeaders("svix", svixVecID, "1614265331", svixVecSig), svixVecBody, vecTime, errSvixSignature},
		{"wrong secret", []string{otherSecret}, svixHeaders("svix", svixVecID, svixVecTS, svixVecSig), svixVecBody, vecTime, errSvixSignature},
		{"rotation: second secret matches", []string{otherSecret, svixVecSecret}, svixHeaders("svix", svixVecID, svixVecTS, svixVecSig), svixVecBody, vecTime, nil},
		{"v1a entry skipped", []string{svixVecSecret}, svixHeaders("svix", svixVecID, svixVecTS, v1aOnly), svixVecBody, vecTime, errSvixSignature},
		{"v1a then v1", []string{svixVecSecret}, svixHeaders("svix", svixVecID, svixVecTS, "v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mNl8EM+m7TBAg== "+svixVecSig), svixVecBody, vecTime, nil},
		{"several v1, last matches", []string{svixVecSecret}, svixHeaders("svix", svixVecID, svixVecTS, "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= v2,abc "+svixVecSig), svixVecBody, vecTime, nil},
		{"entry without comma", []string{svixVecSecret}, svixHeaders("svix", svixVecID, svixVecTS, "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="), svixVecBody, vecTime, errSvixSignature},
		{"webhook-* headers", []string{svixVecSecret}, svixHeaders("webhook", svixVecID, svixVecTS, svixVecSig), svixVecBody, vecTime, nil},
		{"no headers", []string{svixVecSecret}, http.Header{}, svixVecBody, vecTime, errSvixHeaders},
		{"bad timestamp", []string{svixVecSecret}, svixHeaders("svix", svixVecID, "1614265330.5", svixVecSig), svixVecBody, vecTime, errSvixTimestamp},
	}
	// An incomplete svix-* set falls back to the whole webhook-* set.
	partial := svixHeaders("webhook", svixVecID, svixVecTS, svixVecSig)
	partial.Set("svix-id", "msg_other")
	partial.Set("svix-signature", "v1,AAAA")
	tests = append(tests, struct {
		name    string
		secrets []string
		headers http.Header
		body    string
		now     time.Time
		want    error
	}{"partial svix-* falls back", []string{svixVecSecret}, partial, svixVecBody, vecTime, nil})

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := VerifySvix(tt.secrets, tt.headers, []byte(tt.body), tt.now)
			if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Errorf("VerifySvix = %v, want %v", err, tt.want)
			}
		})
	}

	t.Run("bad secret", func(t *testing.T) {
		err := VerifySvix([]string{"whsec_!!!"}, svixHeaders("svix", svixVecID, svixVecTS, svixVecSig), []byte(svixVecBody), vecTime)
		if err == nil || strings.Contains(err.Error(), "!!!") {
			t.Errorf("VerifySvix with a bad secret = %v, want an error not repeating it", err)
		}
	})
}

// webhookRecorder fakes UserStore, OrgStore and SessionRevoker, recording
// every call. fail makes the store methods fail while set.
type webhookRecorder struct {
	mu    sync.Mutex
	calls []string
	fail  error
}

func (r *webhookRecorder) record(format string, args ...any) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, fmt.Sprintf(format, args...))
	return r.fail
}

func (r *webhookRecorder) setFail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fail = err
}

func (r *webhookRecorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.calls
	r.calls = nil
	return c
}

func (r *webhookRecorder) PutUser(_ context.Context, u proxy.User) error {
	return r.record("PutUser %s email=%s keeps-orgs=%t", u.ID, u.Email, u.OrgIDs == nil)
}
func (r *webhookRecorder) DeleteUser(_ context.Context, id string) error {
	return r.record("DeleteUser %s", id)
}
func (r *webhookRecorder) PutOrg(_ context.Context, o proxy.Org) error {
	return r.record("PutOrg %s slug=%s name=%s", o.ID, o.Slug, o.Name)
}
func (r *webhookRecorder) DeleteOrg(_ context.Context, id string) error {
	return r.record("DeleteOrg %s", id)
}
func (r *webhookRecorder) PutMembership(_ context.Context, orgID, userID, role string) error {
	return r.record("PutMembership %s %s %s", orgID, userID, role)
}
func (r *webhookRecorder) DeleteMembership(_ context.Context, orgID, userID string) error {
	return r.record("DeleteMembership %s %s", orgID, userID)
}
func (r *webhookRecorder) RevokeSession(_ context.Context, id string) error {
	return r.record("RevokeSession %s", id)
}
func (r *webhookRecorder) RevokeUser(_ context.Context, id string) error {
	return r.record("RevokeUser %s", id)
}
func (r *webhookRecorder) RevokeMembership(_ context.Context, orgID, userID string, at time.Time) error {
	return r.record("RevokeMembership %s %s at=%d", orgID, userID, at.UnixMilli())
}
func (r *webhookRecorder) UpdateMembership(_ context.Context, orgID, userID, role string, at time.Time) error {
	return r.record("UpdateMembership %s %s %s at=%d", orgID, userID, role, at.UnixMilli())
}
func (r *webhookRecorder) RevokeOrganization(_ context.Context, orgID string, at time.Time) error {
	return r.record("RevokeOrganization %s at=%d", orgID, at.UnixMilli())
}

var (
	_ UserStore         = (*webhookRecorder)(nil)
	_ OrgStore          = (*webhookRecorder)(nil)
	_ SessionRevoker    = (*webhookRecorder)(nil)
	_ MembershipRevoker = (*webhookRecorder)(nil)
)

// testWebhookSecret is how Clerk's own tests build one:
// "whsec_" + base64("test_signing_secret_32_chars_long").
const testWebhookSecret = "whsec_dGVzdF9zaWduaW5nX3NlY3JldF8zMl9jaGFyc19sb25n"

type webhookEnv struct {
	h   http.Handler
	rec *webhookRecorder
	log *logBuffer
	now time.Time
}

func newWebhookEnv(t *testing.T, edit func(*WebhookConfig)) *webhookEnv {
	t.Helper()
	e := &webhookEnv{rec: &webhookRecorder{}, log: &logBuffer{}, now: testStart}
	cfg := WebhookConfig{
		Secrets:     []string{testWebhookSecret},
		Users:       e.rec,
		Sessions:    e.rec,
		Orgs:        e.rec,
		Memberships: e.rec,
		Logger:      slog.New(slog.NewTextHandler(e.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:         func() time.Time { return e.now },
	}
	if edit != nil {
		edit(&cfg)
	}
	h, err := NewWebhookHandler(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.h = h
	return e
}

// signSvix returns the headers Svix would send for body, signed by secret.
func signSvix(secret, id string, ts time.Time, body string) http.Header {
	key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	mac := hmac.New(sha256.New, key)
	sec := strconv.FormatInt(ts.Unix(), 10)
	mac.Write([]byte(id + "." + sec + "." + body))
	return svixHeaders("svix", id, sec, "v1,"+base64.StdEncoding.EncodeToString(mac.Sum(nil)))
}

func (e *webhookEnv) post(id, body string) *httptest.ResponseRecorder {
	return e.send(signSvix(testWebhookSecret, id, e.now, body), body)
}

func (e *webhookEnv) send(h http.Header, body string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, "/.tollgate/webhooks/clerk", strings.NewReader(body))
	for k, v := range h {
		r.Header[k] = v
	}
	r.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, r)
	return w
}

func (e *webhookEnv) check(t *testing.T, w *httptest.ResponseRecorder, code int, calls ...string) {
	t.Helper()
	if w.Code != code {
		t.Errorf("status = %d, want %d", w.Code, code)
	}
	if diff := cmp.Diff(calls, e.rec.take()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
}

func event(typ, data string) string {
	return `{"data":` + data + `,"object":"event","type":"` + typ + `","timestamp":1654012591835,"instance_id":"ins_123"}`
}

// userCreated follows the user.created example in Clerk's webhook docs,
// trimmed: the primary address is the second one.
const userCreatedData = `{
  "birthday": "", "created_at": 1654012591514,
  "email_addresses": [
    {"email_address": "old@example.org", "id": "idn_1", "linked_to": [], "object": "email_address",
     "verification": {"status": "verified", "strategy": "ticket"}},
    {"email_address": "example@example.org", "id": "idn_29w83yL7CwVlJXylYLxcslromF1", "linked_to": [],
     "object": "email_address", "verification": {"status": "verified", "strategy": "ticket"}}
  ],
  "external_accounts": [], "external_id": "567772", "first_name": "Example", "gender": "",
  "id": "user_29w83sxmDNGwOuEthce5gg56FcC", "image_url": "https://img.clerk.com/xxxxxx",
  "last_name": "Example", "last_sign_in_at": 1654012591514, "object": "user", "password_enabled": true,
  "phone_numbers": [], "primary_email_address_id": "idn_29w83yL7CwVlJXylYLxcslromF1",
  "primary_phone_number_id": null, "primary_web3_wallet_id": null, "private_metadata": {},
  "profile_image_url": "https://www.gravatar.com/avatar?d=mp", "public_metadata": {},
  "two_factor_enabled": false, "unsafe_metadata": {}, "updated_at": 1654012591835, "username": null,
  "web3_wallets": []
}`

func TestWebhook_UserCreatedRecordsPrimaryEmail(t *testing.T) {
	e := newWebhookEnv(t, nil)
	w := e.post("msg_1", event("user.created", userCreatedData))
	e.check(t, w, http.StatusOK, "PutUser user_29w83sxmDNGwOuEthce5gg56FcC email=example@example.org keeps-orgs=true")

	// No primary address: recorded without an email.
	w = e.post("msg_2", event("user.updated", `{"id":"user_2","primary_email_address_id":null,"first_name":null,"last_name":"L",
		"email_addresses":[{"id":"idn_9","email_address":"x@example.org"}]}`))
	e.check(t, w, http.StatusOK, "PutUser user_2 email= keeps-orgs=true")
}

func TestWebhook_UserDeletedRevokesUser(t *testing.T) {
	e := newWebhookEnv(t, nil)
	w := e.post("msg_1", event("user.deleted", `{"deleted":true,"id":"user_29wBMCtzATuFJut8jwBGRoJ5PGz","object":"user"}`))
	e.check(t, w, http.StatusOK, "RevokeUser user_29wBMCtzATuFJut8jwBGRoJ5PGz", "DeleteUser user_29wBMCtzATuFJut8jwBGRoJ5PGz")
}

func TestWebhook_SessionEvents(t *testing.T) {
	e := newWebhookEnv(t, nil)
	for i, typ := range []string{"session.revoked", "session.ended", "session.removed"} {
		w := e.post(fmt.Sprintf("msg_%d", i), event(typ, `{"id":"sess_`+typ[8:]+`","user_id":"user_1","status":"`+typ[8:]+`","object":"session"}`))
		e.check(t, w, http.StatusOK, "RevokeSession sess_"+typ[8:])
	}
	// session.created is not a revocation.
	e.check(t, e.post("msg_c", event("session.created", `{"id":"sess_new","user_id":"user_1"}`)), http.StatusOK)
}

func TestWebhook_OrgEvents(t *testing.T) {
	e := newWebhookEnv(t, nil)
	membership := `{"id":"orgmem_1","object":"organization_membership","role":"%s",
		"organization":{"id":"org_1","slug":"acme","name":"Acme"},
		"public_user_data":{"user_id":"user_1","identifier":"a@example.org"}}`
	e.check(t, e.post("m1", event("organization.created", `{"id":"org_1","slug":"acme","name":"Acme Inc"}`)), http.StatusOK,
		"PutOrg org_1 slug=acme name=Acme Inc")
	e.check(t, e.post("m2", event("organizationMembership.created", fmt.Sprintf(membership, "org:admin"))), http.StatusOK,
		"PutMembership org_1 user_1 org:admin")
	// Changes that take something away reach the identities first, at
	// Clerk's time of the event, then the store.
	e.check(t, e.post("m3", event("organizationMembership.updated", fmt.Sprintf(membership, "basic_member"))), http.StatusOK,
		"UpdateMembership org_1 user_1 org:basic_member at=1654012591835", "PutMembership org_1 user_1 org:basic_member")
	e.check(t, e.post("m4", event("organizationMembership.deleted", fmt.Sprintf(membership, "org:member"))), http.StatusOK,
		"RevokeMembership org_1 user_1 at=1654012591835", "DeleteMembership org_1 user_1")
	e.check(t, e.post("m5", event("organization.deleted", `{"deleted":true,"id":"org_1","object":"organization"}`)), http.StatusOK,
		"RevokeOrganization org_1 at=1654012591835", "DeleteOrg org_1")

	// Without an OrgStore, the identities still follow; other organisation
	// events are acknowledged and ignored.
	e = newWebhookEnv(t, func(c *WebhookConfig) { c.Orgs = nil })
	e.check(t, e.post("m1", event("organization.created", `{"id":"org_1"}`)), http.StatusOK)
	e.check(t, e.post("m2", event("organizationMembership.created", fmt.Sprintf(membership, "org:admin"))), http.StatusOK)
	e.check(t, e.post("m3", event("organizationMembership.deleted", fmt.Sprintf(membership, "org:admin"))), http.StatusOK,
		"RevokeMembership org_1 user_1 at=1654012591835")
	e.check(t, e.post("m4", event("organization.deleted", `{"id":"org_1","deleted":true}`)), http.StatusOK,
		"RevokeOrganization org_1 at=1654012591835")

	// A store failure comes after the identities changed: Svix retries, and
	// the retry changes them again, harmlessly.
	e = newWebhookEnv(t, nil)
	e.rec.setFail(errors.New("disk full"))
	e.check(t, e.post("m1", event("organizationMembership.deleted", fmt.Sprintf(membership, "org:admin"))), http.StatusInternalServerError,
		"RevokeMembership org_1 user_1 at=1654012591835", "DeleteMembership org_1 user_1")

	// Without both, nothing is done.
	e = newWebhookEnv(t, func(c *WebhookConfig) { c.Orgs, c.Memberships = nil, nil })
	e.check(t, e.post("m1", event("organizationMembership.deleted", fmt.Sprintf(membership, "org:admin"))), http.StatusOK)
}

func TestWebhook_DuplicateDoesNoWork(t *testing.T) {
	e := newWebhookEnv(t, nil)
	body := event("session.revoked", `{"id":"sess_1"}`)
	e.check(t, e.post("msg_1", body), http.StatusOK, "RevokeSession sess_1")
	e.check(t, e.post("msg_1", body), http.StatusOK)
	// Svix signs a retry afresh; still the same message.
	e.now = e.now.Add(time.Minute)
	e.check(t, e.post("msg_1", body), http.StatusOK)
	e.check(t, e.post("msg_2", body), http.StatusOK, "RevokeSession sess_1")
}

func TestWebhook_Rejected(t *testing.T) {
	body := event("user.deleted", `{"id":"user_1","deleted":true}`)
	tests := []struct {
		name    string
		headers func(e *webhookEnv) http.Header
	}{
		{"no headers", func(*webhookEnv) http.Header { return http.Header{} }},
		{"wrong secret", func(e *webhookEnv) http.Header { return signSvix(svixVecSecret, "msg_1", e.now, body) }},
		{"signed other body", func(e *webhookEnv) http.Header { return signSvix(testWebhookSecret, "msg_1", e.now, body+" ") }},
		{"stale", func(e *webhookEnv) http.Header {
			return signSvix(testWebhookSecret, "msg_1", e.now.Add(-6*time.Minute), body)
		}},
		{"v1a only", func(e *webhookEnv) http.Header {
			h := signSvix(testWebhookSecret, "msg_1", e.now, body)
			h.Set("svix-signature", strings.Replace(h.Get("svix-signature"), "v1,", "v1a,", 1))
			return h
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newWebhookEnv(t, nil)
			h := tt.headers(e)
			e.check(t, e.send(h, body), http.StatusBadRequest)
			if sig := h.Get("svix-signature"); sig != "" && strings.Contains(e.log.String(), sig) {
				t.Errorf("log has the signature:\n%s", e.log)
			}
			if strings.Contains(e.log.String(), "user_1") {
				t.Errorf("log has the body:\n%s", e.log)
			}
			// The message ID was not marked: a good delivery still works.
			e.check(t, e.post("msg_1", body), http.StatusOK, "RevokeUser user_1", "DeleteUser user_1")
		})
	}

	t.Run("bad payload", func(t *testing.T) {
		e := newWebhookEnv(t, nil)
		for _, b := range []string{`not json`, `{"type":"user.created"}`, event("user.created", `{"first_name":"no id"}`),
			event("session.revoked", `{"id":42}`), event("organizationMembership.created", `{"organization":{"id":"org_1"}}`)} {
			e.check(t, e.post("msg_1", b), http.StatusBadRequest)
		}
	})

	t.Run("method", func(t *testing.T) {
		e := newWebhookEnv(t, nil)
		w := httptest.NewRecorder()
		e.h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/.tollgate/webhooks/clerk", nil))
		e.check(t, w, http.StatusMethodNotAllowed)
		if got := w.Header().Get("Allow"); got != http.MethodPost {
			t.Errorf("Allow = %q, want POST", got)
		}
	})
}

func TestWebhook_Oversized(t *testing.T) {
	e := newWebhookEnv(t, func(c *WebhookConfig) { c.MaxBytes = 64 })
	body := event("session.revoked", `{"id":"sess_`+strings.Repeat("x", 64)+`"}`)
	h := signSvix(testWebhookSecret, "msg_1", e.now, body)

	// Announced by Content-Length.
	e.check(t, e.send(h, body), http.StatusRequestEntityTooLarge)

	// Streamed with no length.
	r := httptest.NewRequest(http.MethodPost, "/.tollgate/webhooks/clerk", io.MultiReader(strings.NewReader(body)))
	r.ContentLength = -1
	for k, v := range h {
		r.Header[k] = v
	}
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, r)
	e.check(t, w, http.StatusRequestEntityTooLarge)

	// Default limit: 256 KiB.
	e = newWebhookEnv(t, nil)
	big := event("session.revoked", `{"id":"sess_1","pad":"`+strings.Repeat("x", 256<<10)+`"}`)
	e.check(t, e.post("msg_2", big), http.StatusRequestEntityTooLarge)
}

func TestWebhook_UnknownTypeIgnored(t *testing.T) {
	e := newWebhookEnv(t, nil)
	for i, typ := range []string{"email.created", "subscriptionItem.active", "organizationInvitation.accepted", "some.future.event"} {
		e.check(t, e.post(fmt.Sprintf("msg_%d", i), event(typ, `{"id":"x_1"}`)), http.StatusOK)
	}
}

func TestWebhook_StoreErrorThenRetry(t *testing.T) {
	e := newWebhookEnv(t, nil)
	body := event("user.created", userCreatedData)
	want := "PutUser user_29w83sxmDNGwOuEthce5gg56FcC email=example@example.org keeps-orgs=true"

	e.rec.setFail(errors.New("disk full"))
	e.check(t, e.post("msg_1", body), http.StatusInternalServerError, want)
	e.rec.setFail(nil)
	e.now = e.now.Add(5 * time.Second)
	e.check(t, e.post("msg_1", body), http.StatusOK, want)
	e.check(t, e.post("msg_1", body), http.StatusOK)

	// user.deleted: the sessions are revoked even while the store fails.
	e.rec.setFail(errors.New("disk full"))
	e.check(t, e.post("msg_2", event("user.deleted", `{"id":"user_1"}`)), http.StatusInternalServerError,
		"RevokeUser user_1", "DeleteUser user_1")
}

func TestWebhook_CustomDedupe(t *testing.T) {
	var (
		mu     sync.Mutex
		marked []string
		fail   error
	)
	dedupe := func(_ context.Context, id string) (bool, func() error, error) {
		mu.Lock()
		defer mu.Unlock()
		if fail != nil {
			return false, nil, fail
		}
		if id == "msg_seen" {
			return true, nil, nil
		}
		return false, func() error {
			mu.Lock()
			defer mu.Unlock()
			marked = append(marked, id)
			return nil
		}, nil
	}
	e := newWebhookEnv(t, func(c *WebhookConfig) { c.Dedupe = dedupe })
	body := event("session.ended", `{"id":"sess_1"}`)
	e.check(t, e.post("msg_seen", body), http.StatusOK)
	e.check(t, e.post("msg_new", body), http.StatusOK, "RevokeSession sess_1")

	e.rec.setFail(errors.New("boom"))
	e.check(t, e.post("msg_fail", event("user.deleted", `{"id":"user_1"}`)), http.StatusInternalServerError,
		"RevokeUser user_1", "DeleteUser user_1")

	// The store cannot be read: whether msg_other was handled is unknown,
	// so it is applied (a revocation must not wait for the store) and
	// answered 500 unmarked, for Svix to deliver it again.
	e.rec.setFail(nil)
	mu.Lock()
	fail = errors.New("db down")
	mu.Unlock()
	e.check(t, e.post("msg_other", body), http.StatusInternalServerError, "RevokeSession sess_1")

	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff([]string{"msg_new"}, marked); diff != "" {
		t.Errorf("marked (-want +got):\n%s", diff)
	}
}

func TestNewWebhookHandler_Errors(t *testing.T) {
	rec := &webhookRecorder{}
	tests := []struct {
		name string
		cfg  WebhookConfig
	}{
		{"no secret", WebhookConfig{Users: rec, Sessions: rec}},
		{"bad secret", WebhookConfig{Secrets: []string{"whsec_not base64!"}, Users: rec, Sessions: rec}},
		{"empty secret", WebhookConfig{Secrets: []string{"whsec_"}, Users: rec, Sessions: rec}},
		{"no users", WebhookConfig{Secrets: []string{testWebhookSecret}, Sessions: rec}},
		{"no sessions", WebhookConfig{Secrets: []string{testWebhookSecret}, Users: rec}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewWebhookHandler(tt.cfg); err == nil {
				t.Error("NewWebhookHandler succeeded, want an error")
			}
		})
	}
}

// countingBody counts reads and fails them with err (nil: EOF).
type countingBody struct {
	reads int
	err   error
}

func (b *countingBody) Read([]byte) (int, error) {
	b.reads++
	if b.err != nil {
		return 0, b.err
	}
	return 0, io.EOF
}

// Ensure a delivery without a signature header is refused before its body
// is read (it cannot verify, and must not hold a reader's slot), and one
// whose body the gateway's byte budget cut gets 503, delivered again.
func TestWebhook_RefusedBeforeTheBodyAndBodyBudget(t *testing.T) {
	e := newWebhookEnv(t, nil)
	unsigned := &countingBody{}
	r := httptest.NewRequest(http.MethodPost, "/.tollgate/webhooks/clerk", unsigned)
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, r)
	if w.Code != http.StatusBadRequest || unsigned.reads != 0 {
		t.Errorf("no signature header: %d after %d body reads, want 400 after none", w.Code, unsigned.reads)
	}
	cut := &countingBody{err: fmt.Errorf("gateway: %w", proxy.ErrBodyBudget)}
	r = httptest.NewRequest(http.MethodPost, "/.tollgate/webhooks/clerk", cut)
	for k, v := range signSvix(testWebhookSecret, "msg_1", e.now, "{}") {
		r.Header[k] = v
	}
	w = httptest.NewRecorder()
	e.h.ServeHTTP(w, r)
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
		t.Errorf("a body the byte budget cut: %d (Retry-After %q), want 503 with Retry-After", w.Code, w.Header().Get("Retry-After"))
	}
	e.check(t, w, http.StatusServiceUnavailable)
}
