package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tollgate/tollgate/proxy"
)

// seenPerTx bounds one last-seen transaction, as bolt's.
const seenPerTx = 1000

// RecordSeen writes a batch of last-seen times (proxy.SeenRecorder's
// batches, from a proxy.TimeBatcher), a thousand users a transaction, in
// ID order so that two replicas' batches lock rows in one order.
func (s *Store) RecordSeen(ctx context.Context, seen map[string]time.Time) error {
	ids := make([]string, 0, len(seen))
	for id := range seen {
		if (proxy.Subject{Kind: proxy.SubjectUser, ID: id}).Valid() {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	for chunk := range slices.Chunk(ids, seenPerTx) {
		err := s.update(ctx, func(t *wtx) error {
			for _, id := range chunk {
				listed := false
				err := editAccount(ctx, t, id, func(a *account) {
					a.Seen(seen[id])
					listed = a.List != nil
				})
				if err != nil {
					return err
				}
				if !listed {
					if err := reindex(ctx, t, proxy.Subject{Kind: proxy.SubjectUser, ID: id}); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("postgres: record seen (%d users): %w", len(ids), err)
		}
	}
	return nil
}

// PutUser records or refreshes a user (Clerk's webhooks, sign-ins).
func (s *Store) PutUser(ctx context.Context, u proxy.User) error {
	if err := checkSubject(proxy.Subject{Kind: proxy.SubjectUser, ID: u.ID}); err != nil {
		return fmt.Errorf("postgres: put user: %w", err)
	}
	if err := s.update(ctx, func(t *wtx) error { return putUser(ctx, t, u) }); err != nil {
		return fmt.Errorf("postgres: put user %s: %w", u.ID, err)
	}
	return nil
}

// PutUsers records many users in one transaction (tollgate store copy).
func (s *Store) PutUsers(ctx context.Context, users []proxy.User) error {
	for _, u := range users {
		if err := checkSubject(proxy.Subject{Kind: proxy.SubjectUser, ID: u.ID}); err != nil {
			return fmt.Errorf("postgres: put users: %w", err)
		}
	}
	err := s.update(ctx, func(t *wtx) error {
		for _, u := range users {
			if err := putUser(ctx, t, u); err != nil {
				return fmt.Errorf("user %s: %w", u.ID, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("postgres: put %d users: %w", len(users), err)
	}
	return nil
}

func putUser(ctx context.Context, t *wtx, u proxy.User) error {
	err := editAccount(ctx, t, u.ID, func(a *account) { a.PutUser(u) })
	if err != nil {
		return err
	}
	return reindex(ctx, t, proxy.Subject{Kind: proxy.SubjectUser, ID: u.ID})
}

// DeleteUser forgets what Clerk told of a user and revokes its API keys;
// its customer link and comps stay, as bolt's.
func (s *Store) DeleteUser(ctx context.Context, userID string) error {
	subject := proxy.Subject{Kind: proxy.SubjectUser, ID: userID}
	err := s.update(ctx, func(t *wtx) error {
		if err := revokeKeysOf(ctx, t, subject); err != nil {
			return err
		}
		if _, ok, err := getAccount(ctx, t, userID); err != nil || !ok {
			return err
		}
		err := editAccount(ctx, t, userID, (*account).ForgetUser)
		if err != nil {
			return err
		}
		return reindex(ctx, t, subject)
	})
	if err != nil {
		return fmt.Errorf("postgres: delete user %s: %w", userID, err)
	}
	return nil
}

// User reads a user (proxy.ErrNotFound when tollgate has recorded none).
func (s *Store) User(ctx context.Context, userID string) (proxy.User, error) {
	a, ok, err := getAccount(ctx, s.pool, userID)
	if err == nil && (!ok || !a.User) {
		err = proxy.ErrNotFound
	}
	if err != nil {
		return proxy.User{}, fmt.Errorf("postgres: user %s: %w", userID, err)
	}
	return a.AsUser(userID), nil
}

// Users lists recorded users by ID after the given one.
func (s *Store) Users(ctx context.Context, after string, limit int) ([]proxy.User, error) {
	if limit <= 0 || limit > proxy.MaxUsersPage {
		limit = proxy.MaxUsersPage
	}
	rows, err := s.pool.Query(ctx, `SELECT id, `+accountColumns+` FROM accounts WHERE is_user AND id > $1 ORDER BY id LIMIT $2`,
		max(after, "user_"), limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: users after %q: %w", after, err)
	}
	defer rows.Close()
	var out []proxy.User
	for rows.Next() {
		var id string
		a, err := scanAccountWithID(rows, &id)
		if err != nil {
			return nil, fmt.Errorf("postgres: users after %q: %w", after, err)
		}
		out = append(out, a.AsUser(id))
	}
	return out, rows.Err()
}

// scanAccountWithID scans a row of id then accountColumns.
func scanAccountWithID(row pgx.Row, id *string) (account, error) {
	return scanAccount(rowFunc(func(dest ...any) error { return row.Scan(append([]any{id}, dest...)...) }))
}

type rowFunc func(dest ...any) error

func (f rowFunc) Scan(dest ...any) error { return f(dest...) }

// Email is the user's email: Clerk's, else its customer's.
func (s *Store) Email(ctx context.Context, userID string) (string, error) {
	subject := proxy.Subject{Kind: proxy.SubjectUser, ID: userID}
	if !subject.Valid() {
		return "", nil
	}
	a, _, err := getAccount(ctx, s.pool, userID)
	if err != nil {
		return "", fmt.Errorf("postgres: email of %s: %w", userID, err)
	}
	pa, _, err := accountView(ctx, s.pool, subject, &a)
	if err != nil {
		return "", fmt.Errorf("postgres: email of %s: %w", userID, err)
	}
	return pa.Email(), nil
}

// UserDetail is everything recorded of a subject, for the admin API.
func (s *Store) UserDetail(ctx context.Context, subject proxy.Subject, limit int) (proxy.UserDetail, error) {
	wrap := func(err error) error { return fmt.Errorf("postgres: user detail %s: %w", subject, err) }
	if err := checkSubject(subject); err != nil {
		return proxy.UserDetail{}, wrap(fmt.Errorf("%w: %w", proxy.ErrNotFound, err))
	}
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return proxy.UserDetail{}, wrap(err)
	}
	defer tx.Rollback(ctx)
	a, _, err := getAccount(ctx, tx, subject.ID)
	if err != nil {
		return proxy.UserDetail{}, wrap(err)
	}
	pa, ok, err := accountView(ctx, tx, subject, &a)
	if err != nil {
		return proxy.UserDetail{}, wrap(err)
	}
	if !ok {
		return proxy.UserDetail{}, wrap(proxy.ErrNotFound)
	}
	d := proxy.UserDetail{Account: pa}
	if d.History, err = historyOf(ctx, tx, pa.CustomerID, limit); err != nil {
		return proxy.UserDetail{}, wrap(err)
	}
	if d.Audit, err = auditOf(ctx, tx, subject, limit); err != nil {
		return proxy.UserDetail{}, wrap(err)
	}
	return d, nil
}

// PutOrg records an organisation.
func (s *Store) PutOrg(ctx context.Context, o proxy.Org) error {
	if o.ID == "" {
		return errors.New("postgres: put org: empty id")
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO orgs (id, slug, name) VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE SET slug = $2, name = $3`,
		clean(o.ID), clean(o.Slug), clean(o.Name))
	if err != nil {
		return fmt.Errorf("postgres: put org %s: %w", o.ID, err)
	}
	return nil
}

// Org reads an organisation (proxy.ErrNotFound when unknown).
func (s *Store) Org(ctx context.Context, id string) (proxy.Org, error) {
	o := proxy.Org{ID: id}
	err := s.pool.QueryRow(ctx, `SELECT slug, name FROM orgs WHERE id = $1`, id).Scan(&o.Slug, &o.Name)
	if errors.Is(err, pgx.ErrNoRows) {
		err = proxy.ErrNotFound
	}
	if err != nil {
		return proxy.Org{}, fmt.Errorf("postgres: org %s: %w", id, err)
	}
	return o, nil
}

// DeleteOrg forgets an organisation, revokes its keys, and takes it out of
// its members' organisations (found by the org_ids index).
func (s *Store) DeleteOrg(ctx context.Context, orgID string) error {
	err := s.update(ctx, func(t *wtx) error {
		if _, err := t.Exec(ctx, `DELETE FROM orgs WHERE id = $1`, orgID); err != nil {
			return err
		}
		if err := revokeKeysOf(ctx, t, proxy.Subject{Kind: proxy.SubjectOrg, ID: orgID}); err != nil {
			return err
		}
		rows, err := t.Query(ctx, `SELECT id FROM accounts WHERE org_ids @> ARRAY[$1::text] ORDER BY id`, orgID)
		if err != nil {
			return err
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		for _, id := range ids {
			if err := editAccount(ctx, t, id, func(a *account) { a.LeaveOrg(orgID) }); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("postgres: delete org %s: %w", orgID, err)
	}
	return nil
}

// PutMembership records that a user belongs to an organisation.
func (s *Store) PutMembership(ctx context.Context, orgID, userID, _ string) error {
	err := s.update(ctx, func(t *wtx) error {
		err := editAccount(ctx, t, userID, func(a *account) { a.JoinOrg(orgID) })
		if err != nil {
			return err
		}
		return reindex(ctx, t, proxy.Subject{Kind: proxy.SubjectUser, ID: userID})
	})
	if err != nil {
		return fmt.Errorf("postgres: put membership %s in %s: %w", userID, orgID, err)
	}
	return nil
}

// DeleteMembership takes a user out of an organisation.
func (s *Store) DeleteMembership(ctx context.Context, orgID, userID string) error {
	err := s.update(ctx, func(t *wtx) error {
		// A user not on record, or not in it, is left alone: the deletion
		// may be delivered after the user's (Svix does not order
		// deliveries), and must not record the deleted user again.
		a, ok, err := getAccount(ctx, t, userID)
		if err != nil || !ok || !slices.Contains(a.OrgIDs, orgID) {
			return err
		}
		err = editAccount(ctx, t, userID, func(a *account) { a.LeaveOrg(orgID) })
		if err != nil {
			return err
		}
		return reindex(ctx, t, proxy.Subject{Kind: proxy.SubjectUser, ID: userID})
	})
	if err != nil {
		return fmt.Errorf("postgres: delete membership %s in %s: %w", userID, orgID, err)
	}
	return nil
}
