package bolt

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"go.etcd.io/bbolt"

	"github.com/tollgate/tollgate/proxy"
)

const bucketOrgs = "orgs"

type orgRecord struct {
	V    int    `json:"v"`
	Slug string `json:"slug,omitempty"`
	Name string `json:"name,omitempty"`
}

func (r *orgRecord) version() int { return r.V }

// PutOrg records or refreshes an organisation (organization.created/updated).
func (s *Store) PutOrg(ctx context.Context, o proxy.Org) error {
	if o.ID == "" {
		return errors.New("bolt: put org: empty id")
	}
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte(bucketOrgs))
		if err != nil {
			return err
		}
		return putRecord(b, o.ID, &orgRecord{V: recordVersion, Slug: o.Slug, Name: o.Name})
	})
	if err != nil {
		return fmt.Errorf("bolt: put org %s: %w", o.ID, err)
	}
	return nil
}

// Org reads an organisation (an error wrapping proxy.ErrNotFound if unknown).
func (s *Store) Org(ctx context.Context, id string) (proxy.Org, error) {
	var o proxy.Org
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte(bucketOrgs))
		if b == nil || b.Get([]byte(id)) == nil {
			return proxy.ErrNotFound
		}
		var rec orgRecord
		if err := decodeRecord(b.Get([]byte(id)), &rec); err != nil {
			return err
		}
		o = proxy.Org{ID: id, Slug: rec.Slug, Name: rec.Name}
		return nil
	})
	if err != nil {
		return proxy.Org{}, fmt.Errorf("bolt: org %s: %w", id, err)
	}
	return o, nil
}

// DeleteOrg forgets an organisation and every membership in it. Its Stripe
// customer, if any, is left alone (as for users).
func (s *Store) DeleteOrg(ctx context.Context, orgID string) error {
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		if b := tx.Bucket([]byte(bucketOrgs)); b != nil {
			if err := b.Delete([]byte(orgID)); err != nil {
				return err
			}
		}
		if err := revokeKeysOfTx(tx, proxy.Subject{Kind: proxy.SubjectOrg, ID: orgID}, s.now()); err != nil {
			return err
		}
		// Memberships live on the users' records: this walks them all,
		// on an event as rare as an organisation's deletion.
		var changed []string
		if b := optionalBucket(tx, bucketAccounts); b != nil {
			c := b.Cursor()
			for k, v := c.Seek([]byte("user_")); k != nil; k, v = c.Next() {
				a, err := decodeAccount(tx, v)
				if err != nil {
					return fmt.Errorf("account %s: %w", k, err)
				}
				if slices.Contains(a.OrgIDs, orgID) {
					changed = append(changed, string(k))
				}
			}
		}
		for _, id := range changed {
			if err := editAccount(tx, id, func(a *account) { a.LeaveOrg(orgID) }); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("bolt: delete org %s: %w", orgID, err)
	}
	return nil
}

// PutMembership records that a user belongs to an organisation
// (organizationMembership.created/updated). The role is Clerk's to keep: the
// gate reads it from the session token, which is current.
func (s *Store) PutMembership(ctx context.Context, orgID, userID, _ string) error {
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		err := editAccount(tx, userID, func(a *account) { a.JoinOrg(orgID) })
		if err != nil {
			return err
		}
		// A membership may be the first the store hears of the user.
		return reindex(tx, proxy.Subject{Kind: proxy.SubjectUser, ID: userID}, s.now())
	})
	if err != nil {
		return fmt.Errorf("bolt: put membership %s in %s: %w", userID, orgID, err)
	}
	return nil
}

// DeleteMembership records that a user left an organisation. A user not
// on record, or not in it, is left alone: a membership's deletion may be
// delivered after the user's (Svix does not order deliveries), and must
// not record the deleted user again.
func (s *Store) DeleteMembership(ctx context.Context, orgID, userID string) error {
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		a, ok, err := getAccount(tx, userID)
		if err != nil || !ok || !slices.Contains(a.OrgIDs, orgID) {
			return err
		}
		err = editAccount(tx, userID, func(a *account) { a.LeaveOrg(orgID) })
		if err != nil {
			return err
		}
		return reindex(tx, proxy.Subject{Kind: proxy.SubjectUser, ID: userID}, s.now())
	})
	if err != nil {
		return fmt.Errorf("bolt: delete membership %s in %s: %w", userID, orgID, err)
	}
	return nil
}
