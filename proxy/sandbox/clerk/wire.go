package clerksandbox

import (
	"strings"
	"time"
)

// Wire shapes of Clerk's Backend API objects (field names as in Clerk's
// API reference and clerk-sdk-go v2's types).

type verificationJSON struct {
	Status   string `json:"status"`
	Strategy string `json:"strategy"`
	Attempts *int64 `json:"attempts"`
	ExpireAt *int64 `json:"expire_at"`
}

type emailJSON struct {
	ID           string           `json:"id"`
	Object       string           `json:"object"`
	EmailAddress string           `json:"email_address"`
	Reserved     bool             `json:"reserved"`
	Verification verificationJSON `json:"verification"`
	LinkedTo     []any            `json:"linked_to"`
	CreatedAt    int64            `json:"created_at"`
	UpdatedAt    int64            `json:"updated_at"`
}

type userJSON struct {
	ID                            string         `json:"id"`
	Object                        string         `json:"object"`
	Username                      *string        `json:"username"`
	FirstName                     *string        `json:"first_name"`
	LastName                      *string        `json:"last_name"`
	ImageURL                      string         `json:"image_url"`
	HasImage                      bool           `json:"has_image"`
	PrimaryEmailAddressID         *string        `json:"primary_email_address_id"`
	PrimaryPhoneNumberID          *string        `json:"primary_phone_number_id"`
	PrimaryWeb3WalletID           *string        `json:"primary_web3_wallet_id"`
	PasswordEnabled               bool           `json:"password_enabled"`
	TwoFactorEnabled              bool           `json:"two_factor_enabled"`
	TOTPEnabled                   bool           `json:"totp_enabled"`
	BackupCodeEnabled             bool           `json:"backup_code_enabled"`
	EmailAddresses                []emailJSON    `json:"email_addresses"`
	PhoneNumbers                  []any          `json:"phone_numbers"`
	Web3Wallets                   []any          `json:"web3_wallets"`
	Passkeys                      []any          `json:"passkeys"`
	ExternalAccounts              []any          `json:"external_accounts"`
	SAMLAccounts                  []any          `json:"saml_accounts"`
	EnterpriseAccounts            []any          `json:"enterprise_accounts"`
	PublicMetadata                map[string]any `json:"public_metadata"`
	PrivateMetadata               map[string]any `json:"private_metadata"`
	UnsafeMetadata                map[string]any `json:"unsafe_metadata"`
	ExternalID                    *string        `json:"external_id"`
	LastSignInAt                  *int64         `json:"last_sign_in_at"`
	Banned                        bool           `json:"banned"`
	Locked                        bool           `json:"locked"`
	LockoutExpiresInSeconds       *int64         `json:"lockout_expires_in_seconds"`
	VerificationAttemptsRemaining *int64         `json:"verification_attempts_remaining"`
	DeleteSelfEnabled             bool           `json:"delete_self_enabled"`
	CreateOrganizationEnabled     bool           `json:"create_organization_enabled"`
	LastActiveAt                  *int64         `json:"last_active_at"`
	LegalAcceptedAt               *int64         `json:"legal_accepted_at"`
	CreatedAt                     int64          `json:"created_at"`
	UpdatedAt                     int64          `json:"updated_at"`
}

type sessionJSON struct {
	Object                   string  `json:"object"`
	ID                       string  `json:"id"`
	ClientID                 string  `json:"client_id"`
	UserID                   string  `json:"user_id"`
	Status                   string  `json:"status"`
	LastActiveOrganizationID *string `json:"last_active_organization_id"`
	Actor                    any     `json:"actor"`
	LastActiveAt             int64   `json:"last_active_at"`
	ExpireAt                 int64   `json:"expire_at"`
	AbandonAt                int64   `json:"abandon_at"`
	CreatedAt                int64   `json:"created_at"`
	UpdatedAt                int64   `json:"updated_at"`
}

type orgJSON struct {
	Object                string         `json:"object"`
	ID                    string         `json:"id"`
	Name                  string         `json:"name"`
	Slug                  string         `json:"slug"`
	ImageURL              string         `json:"image_url"`
	HasImage              bool           `json:"has_image"`
	MembersCount          int64          `json:"members_count"`
	MaxAllowedMemberships int64          `json:"max_allowed_memberships"`
	AdminDeleteEnabled    bool           `json:"admin_delete_enabled"`
	PublicMetadata        map[string]any `json:"public_metadata"`
	PrivateMetadata       map[string]any `json:"private_metadata"`
	CreatedBy             string         `json:"created_by"`
	CreatedAt             int64          `json:"created_at"`
	UpdatedAt             int64          `json:"updated_at"`
}

func millis(t time.Time) int64 { return t.UnixMilli() }

func optString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func (c *Clerk) wireUser(u User) userJSON {
	created := millis(c.createdAt)
	w := userJSON{
		ID: u.ID, Object: "user",
		FirstName: optString(u.FirstName), LastName: optString(u.LastName),
		PasswordEnabled:           true,
		EmailAddresses:            []emailJSON{},
		PhoneNumbers:              []any{},
		Web3Wallets:               []any{},
		Passkeys:                  []any{},
		ExternalAccounts:          []any{},
		SAMLAccounts:              []any{},
		EnterpriseAccounts:        []any{},
		PublicMetadata:            map[string]any{},
		PrivateMetadata:           map[string]any{},
		UnsafeMetadata:            map[string]any{},
		DeleteSelfEnabled:         true,
		CreateOrganizationEnabled: true,
		CreatedAt:                 created,
		UpdatedAt:                 created,
	}
	if u.Email != "" {
		id := "idn_" + strings.TrimPrefix(u.ID, "user_")
		w.PrimaryEmailAddressID = &id
		w.EmailAddresses = append(w.EmailAddresses, emailJSON{
			ID: id, Object: "email_address", EmailAddress: u.Email,
			Verification: verificationJSON{Status: "verified", Strategy: "email_code"},
			LinkedTo:     []any{}, CreatedAt: created, UpdatedAt: created,
		})
	}
	c.mu.Lock()
	if t, ok := c.lastSignInAt[u.ID]; ok {
		v := millis(t)
		w.LastSignInAt, w.UpdatedAt = &v, v
	}
	var lastActive int64
	for _, s := range c.sessions {
		if s.userID == u.ID && millis(s.lastActiveAt) > lastActive {
			lastActive = millis(s.lastActiveAt)
		}
	}
	c.mu.Unlock()
	if lastActive > 0 {
		w.LastActiveAt = &lastActive
	}
	return w
}

func (c *Clerk) sessionCopy(id string) (sessionState, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.sessions[id]
	if s == nil {
		return sessionState{}, false
	}
	cp := *s
	cp.status = s.statusAt(c.now())
	return cp, true
}

func (c *Clerk) wireSession(s sessionState) sessionJSON {
	w := sessionJSON{
		Object: "session", ID: s.id, ClientID: s.clientID, UserID: s.userID, Status: s.status,
		LastActiveAt: millis(s.lastActiveAt),
		ExpireAt:     millis(s.createdAt.Add(sessionLife)),
		AbandonAt:    millis(s.createdAt.Add(sessionAbandon)),
		CreatedAt:    millis(s.createdAt),
		UpdatedAt:    millis(s.updatedAt),
	}
	if u, ok := c.user(s.userID); ok {
		w.LastActiveOrganizationID = optString(u.OrgID)
	}
	return w
}

func (c *Clerk) wireOrganization(o *orgState) orgJSON {
	created := millis(c.createdAt)
	c.orgMu.Lock()
	members := o.members
	c.orgMu.Unlock()
	return orgJSON{
		Object: "organization", ID: o.id, Name: o.name, Slug: o.slug,
		MembersCount: members, MaxAllowedMemberships: 5, AdminDeleteEnabled: true,
		PublicMetadata: map[string]any{}, PrivateMetadata: map[string]any{},
		CreatedBy: o.createdBy, CreatedAt: created, UpdatedAt: created,
	}
}
