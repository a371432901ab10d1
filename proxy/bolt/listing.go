package bolt

import (
	"context"
	"fmt"

	"go.etcd.io/bbolt"

	"github.com/tollgate/tollgate/proxy"
)

// accountOf reads what the store records of one subject in tx; ok is
// false when it records nothing (no user record, no customer, no comp).
func accountOf(tx *bbolt.Tx, subject proxy.Subject) (proxy.Account, bool, error) {
	if !subject.Valid() {
		return proxy.Account{}, false, nil // records are keyed by valid IDs only
	}
	a, _, err := getAccount(tx, subject.ID)
	if err != nil {
		return proxy.Account{}, false, err
	}
	return accountView(tx, subject, &a)
}

// UserDetail reads what the store records of one subject (its account:
// user record, customer, subscriptions, every comp) with its customer's
// subscription history and its audit trail, in one consistent read. limit
// bounds History and Audit (as for AuditLog). An unknown subject is an
// error wrapping proxy.ErrNotFound.
func (s *Store) UserDetail(ctx context.Context, subject proxy.Subject, limit int) (proxy.UserDetail, error) {
	var d proxy.UserDetail
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		if err := checkSubject(subject); err != nil {
			return fmt.Errorf("%w: %w", proxy.ErrNotFound, err)
		}
		a, ok, err := accountOf(tx, subject)
		if err != nil {
			return err
		}
		if !ok {
			return proxy.ErrNotFound
		}
		d = proxy.UserDetail{Account: a}
		if d.History, err = historyOf(tx, a.CustomerID, limit); err != nil {
			return err
		}
		d.Audit, err = auditOf(tx, subject, limit)
		return err
	})
	if err != nil {
		return proxy.UserDetail{}, fmt.Errorf("bolt: user detail %s: %w", subject, err)
	}
	return d, nil
}

// Email is a user's email as the store knows it (proxy.Account.Email:
// Clerk's, else the one its Stripe customer carries); "" when it knows
// none.
func (s *Store) Email(ctx context.Context, userID string) (string, error) {
	var email string
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		a, _, err := accountOf(tx, proxy.Subject{Kind: proxy.SubjectUser, ID: userID})
		email = a.Email()
		return err
	})
	if err != nil {
		return "", fmt.Errorf("bolt: email of %s: %w", userID, err)
	}
	return email, nil
}
