package postgres

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tollgate/tollgate/proxy"
)

var _ proxy.APIKeyStore = (*Store)(nil)

const apiKeyColumns = `id, hash, prefix, subject, name, scopes, created_by, created_at, last_used_at, expires_at, revoked_at`

func scanAPIKey(row pgx.Row) (proxy.APIKey, error) {
	var (
		k                      proxy.APIKey
		hash                   []byte
		subject                string
		used, expires, revoked *time.Time
	)
	if err := row.Scan(&k.ID, &hash, &k.Prefix, &subject, &k.Name, &k.Scopes, &k.CreatedBy, &k.CreatedAt, &used, &expires, &revoked); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return proxy.APIKey{}, proxy.ErrAPIKeyNotFound
		}
		return proxy.APIKey{}, err
	}
	if len(hash) != len(k.Hash) {
		return proxy.APIKey{}, fmt.Errorf("api key %s: bad hash", k.ID)
	}
	copy(k.Hash[:], hash)
	sub, err := proxy.ParseSubject(subject)
	if err != nil {
		return proxy.APIKey{}, fmt.Errorf("api key %s: %w", k.ID, err)
	}
	k.Subject, k.CreatedAt = sub, k.CreatedAt.UTC()
	k.LastUsedAt, k.ExpiresAt, k.RevokedAt = tm(used), tm(expires), tm(revoked)
	return k, nil
}

// CreateAPIKey stores a new key record; its ID and hash must be new (the
// table's keys refuse either twice). With maxUsable > 0 the subject's
// usable keys are counted in the same transaction, under a lock on the
// subject (two creations at once on two replicas cannot both pass).
func (s *Store) CreateAPIKey(ctx context.Context, k proxy.APIKey, maxUsable int) error {
	if !proxy.ValidAPIKeyID(k.ID) || !k.Subject.Valid() {
		return fmt.Errorf("postgres: create api key: invalid ID %q or subject %q", k.ID, k.Subject)
	}
	scopes := k.Scopes
	if scopes == nil {
		scopes = []string{}
	}
	err := s.update(ctx, func(t *wtx) error {
		if maxUsable > 0 {
			if _, err := t.Exec(ctx, `SELECT pg_advisory_xact_lock(4, hashtext($1))`, k.Subject.ID); err != nil {
				return err
			}
			var n int
			if err := t.QueryRow(ctx, `SELECT count(*) FROM api_keys WHERE subject = $1 AND revoked_at IS NULL
				AND (expires_at IS NULL OR expires_at > $2)`, k.Subject.ID, k.CreatedAt.UTC()).Scan(&n); err != nil {
				return err
			}
			if n >= maxUsable {
				return proxy.ErrTooManyAPIKeys
			}
		}
		_, err := t.Exec(ctx, `INSERT INTO api_keys (`+apiKeyColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
			k.ID, k.Hash[:], k.Prefix, k.Subject.ID, clean(k.Name), scopes, clean(k.CreatedBy), k.CreatedAt.UTC(), ts(k.LastUsedAt), ts(k.ExpiresAt), ts(k.RevokedAt))
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "23505" {
			err = errors.New("a key with this ID or hash exists")
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("postgres: create api key: %w", err)
	}
	return nil
}

// APIKeyByHash reads the record of the key with that hash.
func (s *Store) APIKeyByHash(ctx context.Context, hash [32]byte) (proxy.APIKey, error) {
	k, err := scanAPIKey(s.pool.QueryRow(ctx, `SELECT `+apiKeyColumns+` FROM api_keys WHERE hash = $1`, hash[:]))
	if err != nil {
		return proxy.APIKey{}, fmt.Errorf("postgres: api key by hash: %w", err)
	}
	return k, nil
}

// APIKeyByID reads a key record by ID.
func (s *Store) APIKeyByID(ctx context.Context, id string) (proxy.APIKey, error) {
	k, err := scanAPIKey(s.pool.QueryRow(ctx, `SELECT `+apiKeyColumns+` FROM api_keys WHERE id = $1`, id))
	if err != nil {
		return proxy.APIKey{}, fmt.Errorf("postgres: api key %s: %w", id, err)
	}
	return k, nil
}

// APIKeysOf lists a subject's keys, revoked ones too, oldest first.
func (s *Store) APIKeysOf(ctx context.Context, subject proxy.Subject) ([]proxy.APIKey, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+apiKeyColumns+` FROM api_keys WHERE subject = $1 ORDER BY created_at, id`, subject.ID)
	if err != nil {
		return nil, fmt.Errorf("postgres: api keys of %s: %w", subject, err)
	}
	defer rows.Close()
	var out []proxy.APIKey
	for rows.Next() {
		k, err := scanAPIKey(rows)
		if err != nil {
			return nil, fmt.Errorf("postgres: api keys of %s: %w", subject, err)
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// RevokeAPIKey sets RevokedAt once and returns the record; every replica
// drops the key from its cache (the change log).
func (s *Store) RevokeAPIKey(ctx context.Context, id string, at time.Time) (proxy.APIKey, error) {
	var k proxy.APIKey
	err := s.update(ctx, func(t *wtx) error {
		var err error
		if k, err = scanAPIKey(t.QueryRow(ctx, `SELECT `+apiKeyColumns+` FROM api_keys WHERE id = $1 FOR UPDATE`, id)); err != nil {
			return err
		}
		if !k.RevokedAt.IsZero() {
			return nil
		}
		k.RevokedAt = at.UTC()
		if _, err := t.Exec(ctx, `UPDATE api_keys SET revoked_at = $2 WHERE id = $1`, id, k.RevokedAt); err != nil {
			return err
		}
		t.changed(ChangeKey, id)
		return nil
	})
	if err != nil {
		return proxy.APIKey{}, fmt.Errorf("postgres: revoke api key %s: %w", id, err)
	}
	return k, nil
}

// revokeKeysOf revokes every key of a subject (its user or organisation
// was deleted in Clerk).
func revokeKeysOf(ctx context.Context, t *wtx, subject proxy.Subject) error {
	tag, err := t.Exec(ctx, `UPDATE api_keys SET revoked_at = $2 WHERE subject = $1 AND revoked_at IS NULL`, subject.ID, t.now.UTC())
	if err != nil {
		return fmt.Errorf("revoke keys of %s: %w", subject, err)
	}
	if tag.RowsAffected() > 0 {
		t.changed(ChangeKeysOf, subject.ID)
	}
	return nil
}

// RecordAPIKeysUsed moves each key's LastUsedAt forward, in one statement.
func (s *Store) RecordAPIKeysUsed(ctx context.Context, used map[string]time.Time) error {
	if len(used) == 0 {
		return nil
	}
	ids := slices.Sorted(maps.Keys(used))
	times := make([]time.Time, len(ids))
	for i, id := range ids {
		times[i] = used[id].UTC()
	}
	_, err := s.pool.Exec(ctx, `UPDATE api_keys k SET last_used_at = u.at FROM unnest($1::text[], $2::timestamptz[]) AS u(id, at)
		WHERE k.id = u.id AND (k.last_used_at IS NULL OR k.last_used_at < u.at)`, ids, times)
	if err != nil {
		return fmt.Errorf("postgres: record api keys used (%d): %w", len(ids), err)
	}
	return nil
}
