package clerk

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/tollgate/tollgate/proxy"
)

const (
	defaultWebhookMaxBytes = 256 << 10
	svixTolerance          = 5 * time.Minute
	webhookDedupeSize      = 10_000
	webhookDeadline        = 10 * time.Second
)

// WebhookPath is where the gateway serves Clerk's webhook, under the
// internal prefix.
const WebhookPath = "/webhooks/clerk"

// handledEvents are the event types the webhook acts on (apply): what a
// Clerk webhook endpoint should be subscribed to.
var handledEvents = []string{
	"user.created", "user.updated", "user.deleted",
	"session.ended", "session.revoked", "session.removed",
	"organization.created", "organization.updated", "organization.deleted",
	"organizationMembership.created", "organizationMembership.updated", "organizationMembership.deleted",
}

// HandledEvents lists the Clerk event types tollgate acts on.
func HandledEvents() []string { return append([]string(nil), handledEvents...) }

// UserStore records the Clerk users that webhooks report. Implemented by
// proxy/bolt.Store.
type UserStore interface {
	// PutUser records or refreshes a user: its ID and primary email ("" if
	// none). OrgIDs is nil: memberships arrive in their own events
	// (OrgStore), and the store keeps those it has.
	PutUser(ctx context.Context, u proxy.User) error
	DeleteUser(ctx context.Context, userID string) error
}

// SessionRevoker ends tollgate's own gateway sessions (the __tollgate
// cookie) when Clerk ends the Clerk session behind them. gateway.Server
// implements it: the revocation applies at once, and an error means it
// was not kept for after a restart, so the event is delivered again.
type SessionRevoker interface {
	RevokeSession(ctx context.Context, sessionID string) error // the gateway session of one Clerk session
	RevokeUser(ctx context.Context, userID string) error       // every gateway session of a user (user.deleted)
}

// MembershipRevoker applies organisation changes at once to tollgate's
// identities (the gateway cookie, and Clerk tokens issued before the change
// that are still inside their minute). gateway.Server implements it, as
// SessionRevoker. at is Clerk's time of the event (zero when the payload
// has none).
type MembershipRevoker interface {
	RevokeMembership(ctx context.Context, orgID, userID string, at time.Time) error
	UpdateMembership(ctx context.Context, orgID, userID, role string, at time.Time) error
	RevokeOrganization(ctx context.Context, orgID string, at time.Time) error
}

// OrgStore records organisations and memberships, for organisation plans.
// Implemented by proxy/bolt.Store.
type OrgStore interface {
	PutOrg(ctx context.Context, o proxy.Org) error
	DeleteOrg(ctx context.Context, orgID string) error
	// PutMembership records a member's role, with the org: prefix
	// ("org:admin", "org:member", …).
	PutMembership(ctx context.Context, orgID, userID, role string) error
	DeleteMembership(ctx context.Context, orgID, userID string) error
}

// OrderStore keeps, for each Clerk object a webhook writes (a user, an
// organisation, a membership), the latest Clerk time applied to it, and
// decides whether a message about it is applied (proxy.ClerkVersion.Admit):
// a created or updated message older than what was applied, or than the
// object's deletion, is not. Implemented by proxy/bolt.Store and
// proxy/postgres.Store.
//
// LockClerkOrder holds one message from its ordering to its last write:
// without it, an older message admitted just before a newer one could
// write after it, and the older state would stay (a promotion's write
// landing after its demotion's). Every process writing to the store must
// share it: a store shared by several replicas locks in the database.
type OrderStore interface {
	OrderClerk(ctx context.Context, key string, at time.Time, deleted bool) (bool, error)
	LockClerkOrder(ctx context.Context) (unlock func(), err error)
}

// WebhookConfig configures NewWebhookHandler.
type WebhookConfig struct {
	// Secrets are the endpoint's signing secrets (whsec_…). Any may match,
	// so a secret can be rotated by listing the old and the new. Required.
	Secrets  []string
	Users    UserStore      // required
	Sessions SessionRevoker // required
	Orgs     OrgStore       // nil: organisation events are not stored
	// Memberships applies membership and organisation deletions, and role
	// changes, to identities at once. nil: they wait for the next token.
	Memberships MembershipRevoker
	Logger      *slog.Logger // nil: discard
	Now         func() time.Time
	MaxBytes    int64 // largest accepted body; 0: 256 KiB
	// Dedupe reports whether a message ID (svix-id) has been handled
	// already and, if not, returns mark, called once the message has been
	// handled successfully. nil: an in-memory LRU of the 10,000 most recent
	// IDs.
	Dedupe func(ctx context.Context, msgID string) (seen bool, mark func() error, err error)
	// MaxAge is how long Dedupe remembers a message ID (the store's:
	// stripe.EventRetention). A message that gives or restores (a user's,
	// an organisation's or a membership's created or updated) whose
	// Clerk time is older is acknowledged and ignored: Svix retries for
	// about a day, so only a resend signed anew brings one so old. Order
	// (by each object's Clerk time, kept for good) is what orders
	// messages; this is a second guard. One that takes away still
	// applies. 0: no limit.
	MaxAge time.Duration
	// Order orders each Clerk object's messages by Clerk's time. nil: in
	// memory (the 100,000 objects last written), forgotten at a restart.
	Order OrderStore
}

type webhookHandler struct {
	keys     [][]byte
	users    UserStore
	sessions SessionRevoker
	orgs     OrgStore
	members  MembershipRevoker
	log      *slog.Logger
	now      func() time.Time
	maxBytes int64
	dedupe   func(ctx context.Context, msgID string) (bool, func() error, error)
	maxAge   time.Duration
	order    OrderStore
}

// NewWebhookHandler returns the handler for Clerk's webhooks
// (POST /.tollgate/webhooks/clerk). It verifies each delivery's Svix
// signature on the raw, size-capped body, skips message IDs it has handled
// before, and applies user, session and organisation events to the stores:
//
//   - user.created, user.updated: Users.PutUser;
//   - user.deleted: Sessions.RevokeUser, then Users.DeleteUser;
//   - session.ended, session.revoked, session.removed: Sessions.RevokeSession;
//   - organization.created, organization.updated: Orgs.PutOrg;
//   - organization.deleted: Memberships.RevokeOrganization, then
//     Orgs.DeleteOrg;
//   - organizationMembership.created: Orgs.PutMembership;
//     organizationMembership.updated: Memberships.UpdateMembership, then
//     Orgs.PutMembership; organizationMembership.deleted:
//     Memberships.RevokeMembership, then Orgs.DeleteMembership.
//
// Other event types get 200 and are ignored. A bad signature or payload
// gets 400 and changes nothing; a storage failure gets 500 and the message
// is not marked as handled, so Svix retries it.
func NewWebhookHandler(cfg WebhookConfig) (http.Handler, error) {
	if len(cfg.Secrets) == 0 {
		return nil, errors.New("clerk: webhook: no signing secret")
	}
	if cfg.Users == nil || cfg.Sessions == nil {
		return nil, errors.New("clerk: webhook: Users and Sessions are required")
	}
	keys, err := svixKeys(cfg.Secrets)
	if err != nil {
		return nil, err
	}
	h := &webhookHandler{
		keys:     keys,
		users:    cfg.Users,
		sessions: cfg.Sessions,
		orgs:     cfg.Orgs,
		members:  cfg.Memberships,
		log:      cfg.Logger,
		now:      cfg.Now,
		maxBytes: cfg.MaxBytes,
		dedupe:   cfg.Dedupe,
		maxAge:   cfg.MaxAge,
		order:    cfg.Order,
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.now == nil {
		h.now = time.Now
	}
	if h.maxBytes <= 0 {
		h.maxBytes = defaultWebhookMaxBytes
	}
	if h.order == nil {
		versions, err := lru.New[string, proxy.ClerkVersion](100_000)
		if err != nil {
			return nil, fmt.Errorf("clerk: webhook: order cache: %w", err)
		}
		h.order = memoryOrder{versions: versions, lock: proxy.NewClerkOrderLock()}
	}
	if h.dedupe == nil {
		seen, err := lru.New[string, struct{}](webhookDedupeSize)
		if err != nil {
			return nil, fmt.Errorf("clerk: webhook: dedupe cache: %w", err)
		}
		h.dedupe = func(_ context.Context, id string) (bool, func() error, error) {
			if seen.Contains(id) {
				return true, nil, nil
			}
			return false, func() error { seen.Add(id, struct{}{}); return nil }, nil
		}
	}
	return h, nil
}

var (
	errSvixHeaders   = errors.New("clerk: webhook: missing svix-id, svix-timestamp or svix-signature")
	errSvixTimestamp = errors.New("clerk: webhook: invalid timestamp")
	errSvixTooOld    = errors.New("clerk: webhook: timestamp too old")
	errSvixTooNew    = errors.New("clerk: webhook: timestamp too new")
	errSvixSignature = errors.New("clerk: webhook: no matching signature")
)

// VerifySvix checks a Svix-signed delivery: the svix-id, svix-timestamp and
// svix-signature headers (or, if any is missing, webhook-id,
// webhook-timestamp and webhook-signature), a timestamp within five minutes
// of now, and a v1 HMAC-SHA256 signature of "<id>.<timestamp>.<body>" by
// any of secrets (whsec_<base64 key>). body must be the raw request body.
func VerifySvix(secrets []string, headers http.Header, body []byte, now time.Time) error {
	keys, err := svixKeys(secrets)
	if err != nil {
		return err
	}
	_, err = verifySvix(keys, headers, body, now)
	return err
}

func svixKeys(secrets []string) ([][]byte, error) {
	keys := make([][]byte, 0, len(secrets))
	for i, s := range secrets {
		k, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(strings.TrimSpace(s), "whsec_"))
		if err != nil || len(k) == 0 {
			// The secret itself is not repeated in the error.
			return nil, fmt.Errorf("clerk: webhook: secret %d is not whsec_ followed by base64", i+1)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// verifySvix returns the message ID once the delivery checks out.
func verifySvix(keys [][]byte, headers http.Header, body []byte, now time.Time) (string, error) {
	id, ts, sigs := headers.Get("svix-id"), headers.Get("svix-timestamp"), headers.Get("svix-signature")
	if id == "" || ts == "" || sigs == "" {
		id, ts, sigs = headers.Get("webhook-id"), headers.Get("webhook-timestamp"), headers.Get("webhook-signature")
		if id == "" || ts == "" || sigs == "" {
			return "", errSvixHeaders
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return "", errSvixTimestamp
	}
	nowSec := now.Unix()
	tol := int64(svixTolerance / time.Second)
	switch {
	case sec < nowSec-tol:
		return "", errSvixTooOld
	case sec > nowSec+tol:
		return "", errSvixTooNew
	}

	signed := make([]byte, 0, len(id)+len(body)+24)
	signed = append(signed, id...)
	signed = append(signed, '.')
	signed = strconv.AppendInt(signed, sec, 10)
	signed = append(signed, '.')
	signed = append(signed, body...)

	want := make([][]byte, len(keys))
	for i, k := range keys {
		mac := hmac.New(sha256.New, k)
		mac.Write(signed)
		want[i] = base64.StdEncoding.AppendEncode(nil, mac.Sum(nil))
	}
	for _, entry := range strings.Fields(sigs) {
		version, sig, ok := strings.Cut(entry, ",")
		if !ok || version != "v1" {
			continue // v1a (asymmetric) and future versions
		}
		for _, w := range want {
			if hmac.Equal([]byte(sig), w) {
				return id, nil
			}
		}
	}
	return "", errSvixSignature
}

// Only the fields used are decoded.
type (
	svixEvent struct {
		Type      string          `json:"type"`
		Data      json.RawMessage `json:"data"`
		Timestamp int64           `json:"timestamp"` // Unix milliseconds, Clerk's clock
	}
	// UpdatedAt is the object's updated_at, Unix milliseconds, Clerk's
	// clock (clerk-sdk-go v2's User, Organization and
	// OrganizationMembership); 0 when absent (a DeletedObject).
	clerkUserData struct {
		ID                    string `json:"id"`
		UpdatedAt             int64  `json:"updated_at"`
		PrimaryEmailAddressID string `json:"primary_email_address_id"`
		EmailAddresses        []struct {
			ID           string `json:"id"`
			EmailAddress string `json:"email_address"`
		} `json:"email_addresses"`
	}
	clerkIDData struct {
		ID        string `json:"id"`
		UpdatedAt int64  `json:"updated_at"`
	}
	clerkOrgData struct {
		ID        string `json:"id"`
		UpdatedAt int64  `json:"updated_at"`
		Slug      string `json:"slug"`
		Name      string `json:"name"`
	}
	clerkMembershipData struct {
		Organization struct {
			ID string `json:"id"`
		} `json:"organization"`
		PublicUserData struct {
			UserID string `json:"user_id"`
		} `json:"public_user_data"`
		Role      string `json:"role"`
		UpdatedAt int64  `json:"updated_at"`
	}
)

// errBadPayload marks a verified payload that cannot be applied: 400.
var errBadPayload = errors.New("clerk: webhook: bad payload")

func (h *webhookHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		webhookReply(w, http.StatusMethodNotAllowed)
		return
	}
	ctx := r.Context()
	if r.ContentLength > h.maxBytes {
		h.log.WarnContext(ctx, "clerk webhook: body too large", "limit", h.maxBytes)
		webhookReply(w, http.StatusRequestEntityTooLarge)
		return
	}
	if r.Header.Get("svix-signature") == "" && r.Header.Get("webhook-signature") == "" {
		// Refused before the body is read: a delivery without a
		// signature cannot verify, and must not hold a reader's slot.
		w.Header().Set("Connection", "close")
		webhookReply(w, http.StatusBadRequest)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.maxBytes))
	if err != nil {
		if errors.Is(err, proxy.ErrBodyBudget) {
			w.Header().Set("Retry-After", "10")
			webhookReply(w, http.StatusServiceUnavailable)
			return
		}
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			h.log.WarnContext(ctx, "clerk webhook: body too large", "limit", h.maxBytes)
			webhookReply(w, http.StatusRequestEntityTooLarge)
			return
		}
		webhookReply(w, http.StatusBadRequest)
		return
	}
	msgID, err := verifySvix(h.keys, r.Header, body, h.now())
	if err != nil {
		// Never log the body or the signatures.
		h.log.WarnContext(ctx, "clerk webhook: rejected", "reason", err.Error())
		webhookReply(w, http.StatusBadRequest)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, webhookDeadline)
	defer cancel()
	webhookReply(w, h.handle(ctx, msgID, body))
}

func (h *webhookHandler) handle(ctx context.Context, msgID string, body []byte) int {
	log := h.log.With("msg_id", msgID)
	seen, mark, dedupeErr := h.dedupe(ctx, msgID)
	if dedupeErr != nil {
		// Whether it was handled cannot be told, so it is handled again
		// (every event's work is idempotent): a revocation must apply at
		// once even while the store cannot be read. The answer is still
		// 500, and nothing is marked, so Svix delivers it again.
		log.ErrorContext(ctx, "clerk webhook: dedupe lookup", "err", dedupeErr)
		seen, mark = false, nil
	}
	if seen {
		log.InfoContext(ctx, "clerk webhook: duplicate, skipped")
		return http.StatusOK
	}
	var ev svixEvent
	if err := json.Unmarshal(body, &ev); err != nil || ev.Type == "" {
		log.WarnContext(ctx, "clerk webhook: payload is not an event")
		return http.StatusBadRequest
	}
	log = log.With("type", ev.Type)
	var applied bool
	var err error
	if h.stale(&ev) {
		log.WarnContext(ctx, "clerk webhook: a change that gives, older than the duplicate check remembers: ignored", "event_time", ev.time(), "max_age", h.maxAge)
	} else {
		applied, err = h.apply(ctx, ev)
	}
	switch {
	case errors.Is(err, errBadPayload):
		log.WarnContext(ctx, "clerk webhook: rejected", "reason", err.Error())
		return http.StatusBadRequest
	case err != nil:
		log.ErrorContext(ctx, "clerk webhook: store", "err", err)
		return http.StatusInternalServerError
	}
	if dedupeErr != nil {
		return http.StatusInternalServerError
	}
	if mark != nil {
		if err := mark(); err != nil {
			// The work is done and idempotent; a retry only repeats it.
			log.ErrorContext(ctx, "clerk webhook: mark handled", "err", err)
			return http.StatusInternalServerError
		}
	}
	if applied {
		log.InfoContext(ctx, "clerk webhook: applied")
	} else {
		log.DebugContext(ctx, "clerk webhook: ignored")
	}
	return http.StatusOK
}

// apply carries out one event. It reports whether the event type is one it
// handles.
func (h *webhookHandler) apply(ctx context.Context, ev svixEvent) (bool, error) {
	switch ev.Type {
	case "user.created", "user.updated":
		var d clerkUserData
		if err := decodeData(ev.Data, &d, &d.ID); err != nil {
			return true, err
		}
		unlock, err := h.lockOrder(ctx)
		if err != nil {
			return true, err
		}
		defer unlock()
		if ok, err := h.admit(ctx, proxy.ClerkUserKey(d.ID), h.clerkTime(&ev, d.UpdatedAt, false), false); !ok || err != nil {
			return true, err
		}
		u := proxy.User{ID: d.ID}
		for _, e := range d.EmailAddresses {
			if d.PrimaryEmailAddressID != "" && e.ID == d.PrimaryEmailAddressID {
				u.Email = e.EmailAddress
				break
			}
		}
		return true, wrapStore("put user", h.users.PutUser(ctx, u))

	case "user.deleted":
		var d clerkIDData
		if err := decodeData(ev.Data, &d, &d.ID); err != nil {
			return true, err
		}
		// Revoke first: it applies at once, whatever the store does; a
		// failure of either write has Svix deliver the event again.
		revoked := wrapStore("revoke user", h.sessions.RevokeUser(ctx, d.ID))
		unlock, err := h.lockOrder(ctx)
		if err != nil {
			return true, err
		}
		defer unlock()
		_, tomb := h.admit(ctx, proxy.ClerkUserKey(d.ID), h.clerkTime(&ev, d.UpdatedAt, true), true)
		return true, errors.Join(revoked, tomb, wrapStore("delete user", h.users.DeleteUser(ctx, d.ID)))

	case "session.ended", "session.revoked", "session.removed":
		var d clerkIDData
		if err := decodeData(ev.Data, &d, &d.ID); err != nil {
			return true, err
		}
		return true, wrapStore("revoke session", h.sessions.RevokeSession(ctx, d.ID))

	case "organization.created", "organization.updated":
		if h.orgs == nil {
			return false, nil
		}
		var d clerkOrgData
		if err := decodeData(ev.Data, &d, &d.ID); err != nil {
			return true, err
		}
		unlock, err := h.lockOrder(ctx)
		if err != nil {
			return true, err
		}
		defer unlock()
		if ok, err := h.admit(ctx, proxy.ClerkOrgKey(d.ID), h.clerkTime(&ev, d.UpdatedAt, false), false); !ok || err != nil {
			return true, err
		}
		return true, wrapStore("put org", h.orgs.PutOrg(ctx, proxy.Org{ID: d.ID, Slug: d.Slug, Name: d.Name}))

	case "organization.deleted":
		if h.orgs == nil && h.members == nil {
			return false, nil
		}
		var d clerkIDData
		if err := decodeData(ev.Data, &d, &d.ID); err != nil {
			return true, err
		}
		// Identities first: they change at once, whatever the store does.
		var revoked error
		if h.members != nil {
			revoked = wrapStore("revoke org", h.members.RevokeOrganization(ctx, d.ID, ev.time()))
		}
		unlock, err := h.lockOrder(ctx)
		if err != nil {
			return true, err
		}
		defer unlock()
		_, tomb := h.admit(ctx, proxy.ClerkOrgKey(d.ID), h.clerkTime(&ev, d.UpdatedAt, true), true)
		if h.orgs == nil {
			return true, errors.Join(revoked, tomb)
		}
		return true, errors.Join(revoked, tomb, wrapStore("delete org", h.orgs.DeleteOrg(ctx, d.ID)))

	case "organizationMembership.created", "organizationMembership.updated", "organizationMembership.deleted":
		if h.orgs == nil && (h.members == nil || ev.Type == "organizationMembership.created") {
			return false, nil
		}
		var d clerkMembershipData
		if err := decodeData(ev.Data, &d, &d.Organization.ID, &d.PublicUserData.UserID); err != nil {
			return true, err
		}
		orgID, userID, role := d.Organization.ID, d.PublicUserData.UserID, orgRole(d.Role)
		deleted := ev.Type == "organizationMembership.deleted"
		at := h.clerkTime(&ev, d.UpdatedAt, deleted)
		var revoked error
		if deleted && h.members != nil {
			// Identities first, before the order lock, as a deleted
			// user's or organisation's: they change at once, whatever
			// the store does, even while a frozen replica holds the lock
			// (every replica orders identities' changes by Clerk's time,
			// so this needs no lock). Under it, a removed member kept the
			// organisation, its admin rights included, until Svix's retry
			// minutes later.
			revoked = wrapStore("revoke membership", h.members.RevokeMembership(ctx, orgID, userID, at))
		}
		unlock, err := h.lockOrder(ctx)
		if err != nil {
			return true, errors.Join(revoked, err)
		}
		defer unlock()
		var tomb error
		if !deleted {
			// An older message than the membership's last applied one
			// (a demotion's earlier promotion, resent) changes nothing:
			// neither the store nor any identity.
			if ok, err := h.admit(ctx, proxy.ClerkMembershipKey(orgID, userID), at, false); !ok || err != nil {
				return true, err
			}
			if h.members != nil && ev.Type == "organizationMembership.updated" {
				revoked = wrapStore("revoke membership", h.members.UpdateMembership(ctx, orgID, userID, role, at))
			}
		} else {
			_, tomb = h.admit(ctx, proxy.ClerkMembershipKey(orgID, userID), at, true)
		}
		switch {
		case h.orgs == nil:
			return true, errors.Join(revoked, tomb)
		case deleted:
			return true, errors.Join(revoked, tomb, wrapStore("delete membership", h.orgs.DeleteMembership(ctx, orgID, userID)))
		}
		return true, errors.Join(revoked, wrapStore("put membership", h.orgs.PutMembership(ctx, orgID, userID, role)))
	}
	return false, nil
}

// lockOrder takes the order store's lock (OrderStore). Its error is a
// store error: Svix delivers again.
func (h *webhookHandler) lockOrder(ctx context.Context) (func(), error) {
	unlock, err := h.order.LockClerkOrder(ctx)
	if err != nil {
		return nil, wrapStore("lock order", err)
	}
	return unlock, nil
}

// admit asks the order store whether a message about key made at at is
// applied (OrderStore). Its error is a store error: Svix delivers again.
func (h *webhookHandler) admit(ctx context.Context, key string, at time.Time, deleted bool) (bool, error) {
	ok, err := h.order.OrderClerk(ctx, key, at, deleted)
	if err != nil {
		return false, wrapStore("order", err)
	}
	if !ok {
		h.log.WarnContext(ctx, "clerk webhook: older than the object's last applied change or deletion: ignored",
			"object", key, "clerk_time", at)
	}
	return ok, nil
}

// clerkTimeAhead is how far ahead of the receiver's clock a Clerk time may
// be: Svix's own tolerance for a delivery's timestamp (VerifySvix).
const clerkTimeAhead = 5 * time.Minute

// clerkTime is the Clerk time that orders a message about an object whose
// updated_at is updatedAt (Unix ms, 0: absent): for a creation or update
// the object's updated_at (clerk-sdk-go v2's User, Organization,
// OrganizationMembership), else the envelope's timestamp; for a deletion
// the later of the two (a DeletedObject has no updated_at, and a deleted
// membership's is its last update's, not the deletion's). It is never more
// than clerkTimeAhead after now: a time years ahead (a clock glitch, a
// corrupted field) would otherwise freeze the object, every real change
// after it ignored as older.
func (h *webhookHandler) clerkTime(ev *svixEvent, updatedAt int64, deleted bool) time.Time {
	ms := updatedAt
	if ms <= 0 || deleted && ev.Timestamp > ms {
		ms = ev.Timestamp
	}
	if ms <= 0 {
		return time.Time{}
	}
	at := time.UnixMilli(ms)
	if limit := h.now().Add(clerkTimeAhead); at.After(limit) {
		return limit
	}
	return at
}

// memoryOrder is the OrderStore of a webhook without one: versions kept
// in memory.
type memoryOrder struct {
	versions *lru.Cache[string, proxy.ClerkVersion]
	lock     proxy.ClerkOrderLock
}

func (m memoryOrder) LockClerkOrder(ctx context.Context) (func(), error) { return m.lock.Lock(ctx) }

func (m memoryOrder) OrderClerk(_ context.Context, key string, at time.Time, deleted bool) (bool, error) {
	v, _ := m.versions.Get(key)
	next, ok := v.Admit(at, deleted)
	if ok {
		m.versions.Add(key, next)
	}
	return ok, nil
}

// time is when Clerk says the event happened (zero if the payload has no
// timestamp).
// stale reports whether ev gives or restores something and Clerk made it
// longer than maxAge ago (WebhookConfig.MaxAge).
func (h *webhookHandler) stale(ev *svixEvent) bool {
	switch ev.Type {
	case "user.created", "user.updated", "organization.created", "organization.updated",
		"organizationMembership.created", "organizationMembership.updated":
	default:
		return false
	}
	at := ev.time()
	return h.maxAge > 0 && !at.IsZero() && h.now().Sub(at) > h.maxAge
}

func (ev *svixEvent) time() time.Time {
	if ev.Timestamp <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(ev.Timestamp)
}

// decodeData decodes an event's data into v and checks that the required
// fields, pointers into v, are set.
func decodeData(data json.RawMessage, v any, required ...*string) error {
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%w: data: %v", errBadPayload, err)
	}
	for _, f := range required {
		if *f == "" {
			return fmt.Errorf("%w: a required id is missing", errBadPayload)
		}
	}
	return nil
}

func wrapStore(op string, err error) error {
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

func webhookReply(w http.ResponseWriter, code int) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, http.StatusText(code)+"\n")
}
