package proxy

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash/crc32"
	"math/big"
	"slices"
	"strings"
	"time"
)

// tollgate's own API keys: their format, their record, and the store they
// live in. A key is
//
//	tg_live_ or tg_test_   the Stripe key's mode, so a test key never opens a live gateway
//	43 base62 characters   32 random bytes
//	6 base62 characters    CRC32 of everything before it
//
// The checksum lets a mistyped or made-up key be refused without a store
// read, as GitHub's tokens are; it is no secret and proves nothing.

// APIKey prefixes, by mode.
const (
	APIKeyPrefixLive = "tg_live_"
	APIKeyPrefixTest = "tg_test_"
	// ClerkAPIKeyPrefix starts Clerk's own API keys, verified by Clerk.
	ClerkAPIKeyPrefix = "ak_"
)

const (
	apiKeyRandomBytes = 32
	apiKeyRandomChars = 43 // ceil(256 / log2(62))
	apiKeyCRCChars    = 6  // ceil(32 / log2(62))
	// APIKeyLen is the length of every tollgate key.
	APIKeyLen = len(APIKeyPrefixLive) + apiKeyRandomChars + apiKeyCRCChars
	// APIKeyShownPrefix is how many leading characters of a key are kept
	// (APIKey.Prefix) to tell keys apart in lists: the mode and 4 random
	// characters, too few to help a guess.
	APIKeyShownPrefix = len(APIKeyPrefixLive) + 4
	// ScopeAll lets a key use every route.
	ScopeAll = "*"
)

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// Errors about keys. ErrAPIKeyMalformed is the only one decided without a
// store read.
var (
	ErrAPIKeyMalformed = errors.New("api key: malformed or bad checksum")
	ErrAPIKeyWrongMode = errors.New("api key: of the other Stripe mode")
	ErrAPIKeyUnknown   = errors.New("api key: unknown")
	ErrAPIKeyRevoked   = errors.New("api key: revoked")
	ErrAPIKeyExpired   = errors.New("api key: expired")
	ErrAPIKeyNotFound  = errors.New("api key: no such key")
	// ErrTooManyAPIKeys: the subject already has the most usable keys
	// CreateAPIKey was told to allow.
	ErrTooManyAPIKeys = errors.New("api key: too many keys: revoke one first")
	// ErrAPIKeyUnavailable: the key could not be checked (store or Clerk
	// down); not the client's fault.
	ErrAPIKeyUnavailable = errors.New("api key: could not be checked")
)

// APIKey is a key's record. The key itself is never stored: Hash is its
// SHA-256.
type APIKey struct {
	ID         string // "key_" and 16 base62 characters; sent upstream as X-Tollgate-Key
	Hash       [32]byte
	Prefix     string // the key's first APIKeyShownPrefix characters
	Subject    Subject
	Name       string
	Scopes     []string // route IDs, or ScopeAll
	CreatedBy  string   // a user ID, or "admin:<who>"
	CreatedAt  time.Time
	LastUsedAt time.Time // zero: never; written in batches
	ExpiresAt  time.Time // zero: never
	RevokedAt  time.Time // zero: not revoked
}

// Usable reports whether the key may be used at now.
func (k *APIKey) Usable(now time.Time) error {
	switch {
	case !k.RevokedAt.IsZero():
		return ErrAPIKeyRevoked
	case !k.ExpiresAt.IsZero() && !now.Before(k.ExpiresAt):
		return ErrAPIKeyExpired
	}
	return nil
}

// Allows reports whether the key's scopes admit routeID. A rule without a
// route ID admits only keys for every route: a key limited to some routes
// must not open those nobody named.
func (k *APIKey) Allows(routeID string) bool {
	return ScopesAllow(k.Scopes, routeID)
}

// ScopesAllow is APIKey.Allows for any list of scopes.
func ScopesAllow(scopes []string, routeID string) bool {
	if slices.Contains(scopes, ScopeAll) {
		return true
	}
	return routeID != "" && slices.Contains(scopes, routeID)
}

// APIKeyStore keeps key records. Implemented by proxy/bolt (and by any
// later store, which runs proxy/storetest's suite).
type APIKeyStore interface {
	// CreateAPIKey stores a new record; its ID and Hash must be new. When
	// maxUsable > 0 it refuses, with ErrTooManyAPIKeys, a subject that
	// already has maxUsable keys usable at k.CreatedAt, counted in the
	// same transaction as the write, so concurrent creations cannot pass
	// the cap together.
	CreateAPIKey(ctx context.Context, k APIKey, maxUsable int) error
	// APIKeyByHash is the record of the key with that hash, or an error
	// wrapping ErrAPIKeyNotFound.
	APIKeyByHash(ctx context.Context, hash [32]byte) (APIKey, error)
	// APIKeyByID is the record with that ID, or ErrAPIKeyNotFound.
	APIKeyByID(ctx context.Context, id string) (APIKey, error)
	// APIKeysOf lists a subject's keys, revoked ones too, oldest first.
	APIKeysOf(ctx context.Context, subject Subject) ([]APIKey, error)
	// RevokeAPIKey sets RevokedAt (once; a second revocation keeps the
	// first time) and returns the record.
	RevokeAPIKey(ctx context.Context, id string, at time.Time) (APIKey, error)
	// RecordAPIKeysUsed sets LastUsedAt of each key ID to the later of
	// its time and the stored one; unknown IDs are skipped.
	RecordAPIKeysUsed(ctx context.Context, used map[string]time.Time) error
}

// VerifiedAPIKey is what Clerk says of one of its API keys (ak_…).
type VerifiedAPIKey struct {
	ID      string // ak_ key ID, Clerk's "id"
	Subject Subject
	Scopes  []string
	// Claims are the custom claims Clerk stores with the key (nil: none).
	// tollgate authorises by subject and scopes only.
	Claims map[string]any
}

// APIKeyVerifier verifies Clerk's API keys. Implemented by proxy/clerk
// with the Backend API, cached by the key's hash. An invalid key's error
// wraps ErrAPIKeyUnknown (or ErrAPIKeyRevoked, ErrAPIKeyExpired); one that
// could not be checked wraps ErrAPIKeyUnavailable.
type APIKeyVerifier interface {
	VerifyAPIKey(ctx context.Context, secret string) (VerifiedAPIKey, error)
}

// APIKeyUseRecorder notes a key's use off the request path.
type APIKeyUseRecorder interface {
	KeyUsed(id string, at time.Time)
}

// NewAPIKey makes a fresh key for the mode (live: Stripe live mode) and
// its record, without scopes or subject. The key is returned once; only
// its hash is kept.
func NewAPIKey(live bool, now time.Time) (key string, rec APIKey, err error) {
	var b [apiKeyRandomBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", APIKey{}, fmt.Errorf("api key: random: %w", err)
	}
	prefix := APIKeyPrefixTest
	if live {
		prefix = APIKeyPrefixLive
	}
	body := prefix + encodeBase62(b[:], apiKeyRandomChars)
	key = body + checksum(body)
	var idb [12]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return "", APIKey{}, fmt.Errorf("api key: random: %w", err)
	}
	rec = APIKey{ID: "key_" + encodeBase62(idb[:], 16), Hash: HashAPIKey(key), Prefix: key[:APIKeyShownPrefix], CreatedAt: now}
	return key, rec, nil
}

// HashAPIKey is the SHA-256 of a key: what stores keep and look it up by.
func HashAPIKey(key string) [32]byte { return sha256.Sum256([]byte(key)) }

// LooksLikeAPIKey reports whether a credential is meant as a tollgate key
// (either mode), whether or not it is well formed: it then never goes to
// Clerk.
func LooksLikeAPIKey(s string) bool {
	return strings.HasPrefix(s, APIKeyPrefixLive) || strings.HasPrefix(s, APIKeyPrefixTest)
}

// CheckAPIKey checks a key's form, checksum and mode without any store:
// ErrAPIKeyMalformed or ErrAPIKeyWrongMode, or nil.
func CheckAPIKey(key string, live bool) error {
	if len(key) != APIKeyLen || !LooksLikeAPIKey(key) {
		return ErrAPIKeyMalformed
	}
	for i := len(APIKeyPrefixLive); i < len(key); i++ {
		if strings.IndexByte(base62, key[i]) < 0 {
			return ErrAPIKeyMalformed
		}
	}
	body := key[:len(key)-apiKeyCRCChars]
	if checksum(body) != key[len(body):] {
		return ErrAPIKeyMalformed
	}
	if strings.HasPrefix(key, APIKeyPrefixLive) != live {
		return ErrAPIKeyWrongMode
	}
	return nil
}

// ValidAPIKeyID reports whether id is a key ID NewAPIKey could make.
func ValidAPIKeyID(id string) bool {
	rest, ok := strings.CutPrefix(id, "key_")
	if !ok || len(rest) != 16 {
		return false
	}
	for i := 0; i < len(rest); i++ {
		if strings.IndexByte(base62, rest[i]) < 0 {
			return false
		}
	}
	return true
}

// checksum is the CRC32 of s in base62, apiKeyCRCChars wide.
func checksum(s string) string {
	c := crc32.ChecksumIEEE([]byte(s))
	var out [apiKeyCRCChars]byte
	for i := apiKeyCRCChars - 1; i >= 0; i-- {
		out[i] = base62[c%62]
		c /= 62
	}
	return string(out[:])
}

// encodeBase62 writes b as a big-endian number in base62, left-padded with
// zeros to width characters.
func encodeBase62(b []byte, width int) string {
	n := new(big.Int).SetBytes(b)
	out := make([]byte, width)
	base, mod := big.NewInt(62), new(big.Int)
	for i := width - 1; i >= 0; i-- {
		n.DivMod(n, base, mod)
		out[i] = base62[mod.Int64()]
	}
	return string(out)
}
