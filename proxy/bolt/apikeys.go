package bolt

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.etcd.io/bbolt"

	"github.com/tollgate/tollgate/proxy"
)

// API keys (proxy.APIKey), in three buckets created by the first key:
//
//	api_keys             key ID                  → JSON apiKeyRecord
//	api_key_hashes       SHA-256 of the key      → key ID
//	api_keys_by_subject  subject NUL key ID      → empty
//
// The key itself is never stored.
const (
	bucketAPIKeys          = "api_keys"
	bucketAPIKeyHashes     = "api_key_hashes"
	bucketAPIKeysBySubject = "api_keys_by_subject"
)

var _ proxy.APIKeyStore = (*Store)(nil)

type apiKeyRecord struct {
	V          int       `json:"v"`
	Hash       string    `json:"hash"` // hex
	Prefix     string    `json:"prefix"`
	Subject    string    `json:"subject"`
	Name       string    `json:"name"`
	Scopes     []string  `json:"scopes"`
	CreatedBy  string    `json:"created_by"`
	CreatedAt  time.Time `json:"created_at"`
	LastUsedAt time.Time `json:"last_used_at,omitzero"`
	ExpiresAt  time.Time `json:"expires_at,omitzero"`
	RevokedAt  time.Time `json:"revoked_at,omitzero"`
}

func (r *apiKeyRecord) version() int { return r.V }

func apiKeyToRecord(k *proxy.APIKey) apiKeyRecord {
	return apiKeyRecord{V: recordVersion, Hash: hex.EncodeToString(k.Hash[:]), Prefix: k.Prefix, Subject: k.Subject.String(),
		Name: k.Name, Scopes: k.Scopes, CreatedBy: k.CreatedBy, CreatedAt: utc(k.CreatedAt), LastUsedAt: utc(k.LastUsedAt),
		ExpiresAt: utc(k.ExpiresAt), RevokedAt: utc(k.RevokedAt)}
}

func (r *apiKeyRecord) key(id string) (proxy.APIKey, error) {
	k := proxy.APIKey{ID: id, Prefix: r.Prefix, Name: r.Name, Scopes: r.Scopes, CreatedBy: r.CreatedBy, CreatedAt: r.CreatedAt,
		LastUsedAt: r.LastUsedAt, ExpiresAt: r.ExpiresAt, RevokedAt: r.RevokedAt}
	sub, err := proxy.ParseSubject(r.Subject)
	if err != nil {
		return proxy.APIKey{}, fmt.Errorf("api key %s: %w", id, err)
	}
	k.Subject = sub
	if n, err := hex.Decode(k.Hash[:], []byte(r.Hash)); err != nil || n != len(k.Hash) {
		return proxy.APIKey{}, fmt.Errorf("api key %s: bad hash", id)
	}
	return k, nil
}

func getAPIKey(b *bbolt.Bucket, id string) (proxy.APIKey, error) {
	v := b.Get([]byte(id))
	if v == nil {
		return proxy.APIKey{}, fmt.Errorf("%s: %w", id, proxy.ErrAPIKeyNotFound)
	}
	var rec apiKeyRecord
	if err := decodeRecord(v, &rec); err != nil {
		return proxy.APIKey{}, fmt.Errorf("api key %s: %w", id, err)
	}
	return rec.key(id)
}

func putAPIKey(b *bbolt.Bucket, k *proxy.APIKey) error {
	rec := apiKeyToRecord(k)
	return putRecord(b, k.ID, &rec)
}

// CreateAPIKey stores a new key record, unless maxUsable > 0 and the
// subject already has that many usable keys: counted in the write's own
// transaction (bbolt has one writer at a time), so two creations at once
// cannot both pass the cap.
func (s *Store) CreateAPIKey(ctx context.Context, k proxy.APIKey, maxUsable int) error {
	if !proxy.ValidAPIKeyID(k.ID) || !k.Subject.Valid() {
		return fmt.Errorf("bolt: create api key: invalid ID %q or subject %q", k.ID, k.Subject)
	}
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		keys, err := createdBucket(tx, bucketAPIKeys)
		if err != nil {
			return err
		}
		hashes, err := createdBucket(tx, bucketAPIKeyHashes)
		if err != nil {
			return err
		}
		bySubject, err := createdBucket(tx, bucketAPIKeysBySubject)
		if err != nil {
			return err
		}
		if keys.Get([]byte(k.ID)) != nil || hashes.Get(k.Hash[:]) != nil {
			return errors.New("a key with this ID or hash exists")
		}
		if maxUsable > 0 {
			n, err := usableKeysOf(bySubject, keys, k.Subject, k.CreatedAt)
			if err != nil {
				return err
			}
			if n >= maxUsable {
				return proxy.ErrTooManyAPIKeys
			}
		}
		if err := putAPIKey(keys, &k); err != nil {
			return err
		}
		if err := hashes.Put(k.Hash[:], []byte(k.ID)); err != nil {
			return err
		}
		return bySubject.Put(subjectKeyIndex(k.Subject, k.ID), nil)
	})
	if err != nil {
		return fmt.Errorf("bolt: create api key: %w", err)
	}
	return nil
}

// usableKeysOf counts sub's keys usable at now.
func usableKeysOf(bySubject, keys *bbolt.Bucket, sub proxy.Subject, now time.Time) (int, error) {
	prefix := []byte(sub.String() + "\x00")
	n := 0
	c := bySubject.Cursor()
	for ik, _ := c.Seek(prefix); ik != nil && bytes.HasPrefix(ik, prefix); ik, _ = c.Next() {
		k, err := getAPIKey(keys, string(ik[len(prefix):]))
		if err != nil {
			return 0, err
		}
		if k.Usable(now) == nil {
			n++
		}
	}
	return n, nil
}

func subjectKeyIndex(sub proxy.Subject, id string) []byte {
	return []byte(sub.String() + "\x00" + id)
}

// APIKeyByHash reads a key's record by its hash: one read transaction.
func (s *Store) APIKeyByHash(ctx context.Context, hash [32]byte) (proxy.APIKey, error) {
	var k proxy.APIKey
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		hashes, keys := optionalBucket(tx, bucketAPIKeyHashes), optionalBucket(tx, bucketAPIKeys)
		if hashes == nil || keys == nil {
			return proxy.ErrAPIKeyNotFound
		}
		id := hashes.Get(hash[:])
		if id == nil {
			return proxy.ErrAPIKeyNotFound
		}
		var err error
		k, err = getAPIKey(keys, string(id))
		return err
	})
	if err != nil {
		return proxy.APIKey{}, fmt.Errorf("bolt: api key by hash: %w", err)
	}
	return k, nil
}

// APIKeyByID reads a key's record by its ID.
func (s *Store) APIKeyByID(ctx context.Context, id string) (proxy.APIKey, error) {
	var k proxy.APIKey
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		keys := optionalBucket(tx, bucketAPIKeys)
		if keys == nil {
			return proxy.ErrAPIKeyNotFound
		}
		var err error
		k, err = getAPIKey(keys, id)
		return err
	})
	if err != nil {
		return proxy.APIKey{}, fmt.Errorf("bolt: api key %s: %w", id, err)
	}
	return k, nil
}

// APIKeysOf lists a subject's keys, oldest first.
func (s *Store) APIKeysOf(ctx context.Context, subject proxy.Subject) ([]proxy.APIKey, error) {
	var out []proxy.APIKey
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		bySubject, keys := optionalBucket(tx, bucketAPIKeysBySubject), optionalBucket(tx, bucketAPIKeys)
		if bySubject == nil || keys == nil {
			return nil
		}
		prefix := []byte(subject.String() + "\x00")
		c := bySubject.Cursor()
		for ik, _ := c.Seek(prefix); ik != nil && bytes.HasPrefix(ik, prefix); ik, _ = c.Next() {
			k, err := getAPIKey(keys, string(ik[len(prefix):]))
			if err != nil {
				return err
			}
			out = append(out, k)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("bolt: api keys of %s: %w", subject, err)
	}
	slices.SortStableFunc(out, func(a, b proxy.APIKey) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, nil
}

// RevokeAPIKey marks a key revoked at at (the first revocation stands).
func (s *Store) RevokeAPIKey(ctx context.Context, id string, at time.Time) (proxy.APIKey, error) {
	var k proxy.APIKey
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		keys := optionalBucket(tx, bucketAPIKeys)
		if keys == nil {
			return proxy.ErrAPIKeyNotFound
		}
		var err error
		if k, err = getAPIKey(keys, id); err != nil {
			return err
		}
		if !k.RevokedAt.IsZero() {
			return nil
		}
		k.RevokedAt = at
		return putAPIKey(keys, &k)
	})
	if err != nil {
		return proxy.APIKey{}, fmt.Errorf("bolt: revoke api key %s: %w", id, err)
	}
	return k, nil
}

// revokeKeysOfTx revokes every unrevoked key of subject at at, inside a
// write transaction: a user or organisation Clerk deleted keeps no key
// that would start working again once its revocation record expires.
func revokeKeysOfTx(tx *bbolt.Tx, subject proxy.Subject, at time.Time) error {
	bySubject, keys := tx.Bucket([]byte(bucketAPIKeysBySubject)), tx.Bucket([]byte(bucketAPIKeys))
	if bySubject == nil || keys == nil {
		return nil
	}
	prefix := []byte(subject.String() + "\x00")
	c := bySubject.Cursor()
	for ik, _ := c.Seek(prefix); ik != nil && bytes.HasPrefix(ik, prefix); ik, _ = c.Next() {
		k, err := getAPIKey(keys, string(ik[len(prefix):]))
		if err != nil {
			return err
		}
		if k.RevokedAt.IsZero() {
			k.RevokedAt = at
			if err := putAPIKey(keys, &k); err != nil {
				return err
			}
		}
	}
	return nil
}

// RecordAPIKeysUsed writes a batch of last-used times in one transaction.
func (s *Store) RecordAPIKeysUsed(ctx context.Context, used map[string]time.Time) error {
	if len(used) == 0 {
		return nil
	}
	ids := make([]string, 0, len(used))
	for id := range used {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		keys := optionalBucket(tx, bucketAPIKeys)
		if keys == nil {
			return nil
		}
		for _, id := range ids {
			k, err := getAPIKey(keys, id)
			if errors.Is(err, proxy.ErrAPIKeyNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			if !used[id].After(k.LastUsedAt) {
				continue
			}
			k.LastUsedAt = used[id]
			if err := putAPIKey(keys, &k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("bolt: record api keys used (%d): %w", len(ids), err)
	}
	return nil
}
