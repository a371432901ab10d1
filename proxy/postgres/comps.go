package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tollgate/tollgate/proxy"
)

const compColumns = `id, subject, plan, expires_at, by_whom, reason, created_at, revoked, revoked_at, revoked_by, revoke_reason`

func scanComp(row pgx.Row) (proxy.Comp, error) {
	var r compRow
	if err := row.Scan(&r.ID, &r.Subject, &r.Plan, &r.ExpiresAt, &r.By, &r.Reason, &r.CreatedAt, &r.Revoked, &r.RevokedAt, &r.RevokedBy, &r.RevokeReason); err != nil {
		return proxy.Comp{}, err
	}
	return r.comp()
}

func getComp(ctx context.Context, q querier, id string, forUpdate bool) (proxy.Comp, bool, error) {
	sql := `SELECT ` + compColumns + ` FROM comps WHERE id = $1`
	if forUpdate {
		sql += ` FOR UPDATE`
	}
	c, err := scanComp(q.QueryRow(ctx, sql, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return proxy.Comp{}, false, nil
	}
	if err != nil {
		return proxy.Comp{}, false, fmt.Errorf("comp %s: %w", id, err)
	}
	return c, true, nil
}

func compsOf(ctx context.Context, q querier, subject proxy.Subject) ([]proxy.Comp, error) {
	rows, err := q.Query(ctx, `SELECT `+compColumns+` FROM comps WHERE subject = $1 ORDER BY created_at, id`, subject.ID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []proxy.Comp
	for rows.Next() {
		c, err := scanComp(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// PutComp stores a comp (a new one, or a change to one of the same
// subject), and the subject's entitlements change: a change-log entry.
func (s *Store) PutComp(ctx context.Context, c proxy.Comp) error {
	wrap := func(err error) error { return fmt.Errorf("postgres: put comp %s: %w", c.ID, err) }
	if err := c.Check(); err != nil {
		return wrap(err)
	}
	if c.CreatedAt.IsZero() {
		c.CreatedAt = s.now()
	}
	err := s.update(ctx, func(t *wtx) error {
		old, ok, err := getComp(ctx, t, c.ID, true)
		if err != nil {
			return err
		}
		if ok {
			if err := c.Replaces(&old); err != nil {
				return err
			}
		}
		_, err = t.Exec(ctx, `INSERT INTO comps (`+compColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
			ON CONFLICT (id) DO UPDATE SET plan = $3, expires_at = $4, by_whom = $5, reason = $6, created_at = $7, revoked = $8,
				revoked_at = $9, revoked_by = $10, revoke_reason = $11`,
			c.ID, c.Subject.ID, clean(c.Plan), c.ExpiresAt.UTC(), clean(c.By), clean(c.Reason), c.CreatedAt.UTC(), c.Revoked, ts(c.RevokedAt), clean(c.RevokedBy), clean(c.RevokeReason))
		if err != nil {
			return err
		}
		t.changed(ChangeSubject, c.Subject.ID)
		return reindex(ctx, t, c.Subject)
	})
	if err != nil {
		return wrap(err)
	}
	return nil
}

// Comp reads a comp (proxy.ErrNotFound when unknown).
func (s *Store) Comp(ctx context.Context, id string) (proxy.Comp, error) {
	c, ok, err := getComp(ctx, s.pool, id, false)
	if err == nil && !ok {
		err = proxy.ErrNotFound
	}
	if err != nil {
		return proxy.Comp{}, fmt.Errorf("postgres: comp %s: %w", id, err)
	}
	return c, nil
}

// RevokeComp revokes a comp once (a second revocation keeps the first).
func (s *Store) RevokeComp(ctx context.Context, id, by, reason string) error {
	err := s.update(ctx, func(t *wtx) error {
		c, ok, err := getComp(ctx, t, id, true)
		if err != nil {
			return err
		}
		if !ok {
			return proxy.ErrNotFound
		}
		if c.Revoked {
			return nil
		}
		if _, err := t.Exec(ctx, `UPDATE comps SET revoked = true, revoked_at = $2, revoked_by = $3, revoke_reason = $4 WHERE id = $1`,
			id, t.now.UTC(), clean(by), clean(reason)); err != nil {
			return err
		}
		t.changed(ChangeSubject, c.Subject.ID)
		return reindex(ctx, t, c.Subject)
	})
	if err != nil {
		return fmt.Errorf("postgres: revoke comp %s: %w", id, err)
	}
	return nil
}

// Comps lists a subject's comps, oldest first.
func (s *Store) Comps(ctx context.Context, subject proxy.Subject) ([]proxy.Comp, error) {
	out, err := compsOf(ctx, s.pool, subject)
	if err != nil {
		return nil, fmt.Errorf("postgres: comps of %s: %w", subject, err)
	}
	return out, nil
}

// Audit appends an admin action.
func (s *Store) Audit(ctx context.Context, e proxy.AuditEntry) error {
	if e.Action == "" {
		return errors.New("postgres: audit: empty action")
	}
	if e.At.IsZero() {
		e.At = s.now()
	}
	subject := ""
	if e.Subject != (proxy.Subject{}) {
		if err := checkSubject(e.Subject); err != nil {
			return fmt.Errorf("postgres: audit %s: %w", e.Action, err)
		}
		subject = e.Subject.ID
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO audit (at, actor, action, subject, detail) VALUES ($1, $2, $3, $4, $5)`,
		e.At.UTC(), clean(e.Actor), clean(e.Action), subject, clean(e.Detail))
	if err != nil {
		return fmt.Errorf("postgres: audit %s: %w", e.Action, err)
	}
	return nil
}

// AuditLog lists the admin actions about subject (zero: all), newest first.
func (s *Store) AuditLog(ctx context.Context, subject proxy.Subject, limit int) ([]proxy.AuditEntry, error) {
	out, err := auditOf(ctx, s.pool, subject, limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: audit log %s: %w", subject, err)
	}
	return out, nil
}

func auditOf(ctx context.Context, q querier, subject proxy.Subject, limit int) ([]proxy.AuditEntry, error) {
	if limit <= 0 || limit > proxy.MaxAuditPage {
		limit = proxy.MaxAuditPage
	}
	var (
		rows pgx.Rows
		err  error
	)
	if subject == (proxy.Subject{}) {
		rows, err = q.Query(ctx, `SELECT at, actor, action, subject, detail FROM audit ORDER BY at DESC, seq DESC LIMIT $1`, limit)
	} else {
		rows, err = q.Query(ctx, `SELECT at, actor, action, subject, detail FROM audit WHERE subject = $1 ORDER BY at DESC, seq DESC LIMIT $2`, subject.ID, limit)
	}
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []proxy.AuditEntry
	for rows.Next() {
		var (
			e   proxy.AuditEntry
			sub string
			at  time.Time
		)
		if err := rows.Scan(&at, &e.Actor, &e.Action, &sub, &e.Detail); err != nil {
			return nil, err
		}
		e.At = at.UTC()
		if sub != "" {
			if e.Subject, err = proxy.ParseSubject(sub); err != nil {
				return nil, err
			}
		}
		out = append(out, e)
	}
	return out, rows.Err()
}
