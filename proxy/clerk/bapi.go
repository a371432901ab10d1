package clerk

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"

	"github.com/clerk/clerk-sdk-go/v2"
	"github.com/clerk/clerk-sdk-go/v2/session"

	"github.com/tollgate/tollgate/proxy"
)

var errNoSecretKey = errors.New("clerk: no secret key configured for the Backend API")

// CheckSession implements proxy.SessionChecker with one Backend API call
// (GET /v1/sessions/{id}): active while Clerk reports the session
// "active", and the session's last_active_organization_id, the organisation
// its next token will carry. A session Clerk does not know is not active,
// and no error.
func (c *Client) CheckSession(ctx context.Context, sessionID string) (proxy.SessionStatus, error) {
	if !c.hasSecret {
		return proxy.SessionStatus{}, errNoSecretKey
	}
	if sessionID == "" {
		return proxy.SessionStatus{}, nil
	}
	// Session checks keep within their share of the budget, so that
	// revocations, users and handshake nonces still get through.
	if err := c.budget.room(sessionCheckShare); err != nil {
		return proxy.SessionStatus{}, err
	}
	s, err := c.sessions.Get(ctx, url.PathEscape(sessionID))
	switch {
	case isNotFound(err):
		return proxy.SessionStatus{}, nil
	case err != nil:
		return proxy.SessionStatus{}, fmt.Errorf("clerk: get session: %w", apiError(err))
	}
	return proxy.SessionStatus{Active: s.Status == "active", OrgID: s.LastActiveOrganizationID}, nil
}

// RefreshStretch implements proxy.RefreshPacer: by how much the session
// check interval is stretched now, as this client's share of Clerk's
// Backend API budget fills up (budget.go).
func (c *Client) RefreshStretch() float64 { return c.budget.stretch() }

// EndSession implements proxy.SessionEnder: it revokes the session in Clerk
// (POST /v1/sessions/{id}/revoke, clerk-sdk-go's session.Revoke), after
// which Clerk reports it "revoked" and the handshake of any tab signs it
// out; and it returns the Set-Cookie values that drop the session token
// cookies from the app's host (__client_uat is Clerk's, set on the
// registrable domain: the next handshake sets it to 0). A session Clerk no
// longer holds active counts as ended, however the revoke call answered.
func (c *Client) EndSession(ctx context.Context, sessionID string) ([]string, error) {
	clear := slices.Clone(c.clearSession)
	if !c.hasSecret {
		return clear, errNoSecretKey
	}
	_, err := c.sessions.Revoke(ctx, &session.RevokeParams{ID: url.PathEscape(sessionID)})
	if err == nil {
		return clear, nil
	}
	if st, cerr := c.CheckSession(ctx, sessionID); cerr == nil && !st.Active {
		return clear, nil
	}
	return clear, fmt.Errorf("clerk: revoke session: %w", apiError(err))
}

// EndUserSessions revokes every active Clerk session of a user (Backend
// API: GET /v1/sessions?user_id=…&status=active, then each one's revoke),
// so that no handshake mints the user a fresh token afterwards. It returns
// how many it ended.
func (c *Client) EndUserSessions(ctx context.Context, userID string) (int, error) {
	if !c.hasSecret {
		return 0, errNoSecretKey
	}
	active := "active"
	var ids []string
	// Revoking changes what "active" lists, so the whole list is read
	// first, a page of up to 500 at a time.
	for offset := int64(0); ; {
		p := &session.ListParams{UserID: &userID, Status: &active}
		p.Limit, p.Offset = clerk.Int64(500), clerk.Int64(offset)
		list, err := c.sessions.List(ctx, p)
		if err != nil {
			return 0, fmt.Errorf("clerk: list sessions of %s: %w", userID, apiError(err))
		}
		for _, s := range list.Sessions {
			ids = append(ids, s.ID)
		}
		offset += int64(len(list.Sessions))
		if len(list.Sessions) == 0 || offset >= list.TotalCount {
			break
		}
	}
	for i, id := range ids {
		if _, err := c.sessions.Revoke(ctx, &session.RevokeParams{ID: url.PathEscape(id)}); err != nil {
			return i, fmt.Errorf("clerk: revoke session %s: %w", id, apiError(err))
		}
	}
	return len(ids), nil
}

// Email returns a user's primary email address from the Backend API, or ""
// if the user has none (proxy.Directory). An unknown user is an error
// wrapping proxy.ErrNotFound.
func (c *Client) Email(ctx context.Context, userID string) (string, error) {
	if !c.hasSecret {
		return "", errNoSecretKey
	}
	if userID == "" {
		return "", fmt.Errorf("clerk: get user: empty id: %w", proxy.ErrNotFound)
	}
	u, err := c.users.Get(ctx, url.PathEscape(userID))
	switch {
	case isNotFound(err):
		return "", fmt.Errorf("clerk: get user %s: %w", userID, proxy.ErrNotFound)
	case err != nil:
		return "", fmt.Errorf("clerk: get user %s: %w", userID, apiError(err))
	}
	if u.PrimaryEmailAddressID == nil {
		return "", nil
	}
	for _, e := range u.EmailAddresses {
		if e != nil && e.ID == *u.PrimaryEmailAddressID {
			return e.EmailAddress, nil
		}
	}
	return "", nil
}

// handshakePayload exchanges a handshake nonce for its Set-Cookie
// directives (GET /v1/clients/handshake_payload?nonce=…), within the
// bounds of nonceGuard, for the client at remoteAddr. clerk-sdk-go has no
// method for it; its Backend does the call.
func (c *Client) handshakePayload(ctx context.Context, remoteAddr, nonce string) ([]string, error) {
	if !c.hasSecret {
		return nil, errNoSecretKey
	}
	return c.nonces.exchange(ctx, remoteAddr, nonce, func(ctx context.Context) ([]string, error) {
		req := clerk.NewAPIRequest(http.MethodGet, "/clients/handshake_payload")
		req.SetParams(&nonceParams{nonce: nonce})
		var out handshakePayload
		if err := c.backend.Call(ctx, req, &out); err != nil {
			return nil, fmt.Errorf("clerk: get handshake payload: %w", apiError(err))
		}
		return out.Directives, nil
	})
}

type handshakePayload struct {
	clerk.APIResource
	Directives []string `json:"directives"`
}

type nonceParams struct {
	clerk.APIParams
	nonce string
}

func (p *nonceParams) ToQuery() url.Values { return url.Values{"nonce": {p.nonce}} }

func isNotFound(err error) bool {
	var apiErr *clerk.APIErrorResponse
	return errors.As(err, &apiErr) && apiErr.HTTPStatusCode == http.StatusNotFound
}

// apiError strips the request URL from transport errors: it can carry a
// handshake nonce, which is not for the logs. Clerk's 429 comes back
// wrapping proxy.ErrRateLimited.
func apiError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	var apiErr *clerk.APIErrorResponse
	if errors.As(err, &apiErr) && apiErr.HTTPStatusCode == http.StatusTooManyRequests {
		return fmt.Errorf("%w: %w", proxy.ErrRateLimited, err)
	}
	return err
}
