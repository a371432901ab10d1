//go:build !schema2

package main

import (
	"context"

	"github.com/tollgate/tollgate/proxy/bolt"
)

// takeListing: schema 1 has no listing index.
func takeListing(context.Context, *bolt.Store) (*Listing, error) { return nil, nil }
