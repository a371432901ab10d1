//go:build schema1

package dump

import "context"

// takeListing: schema 1 has no listing index.
func takeListing(context.Context, Store) (*Listing, error) { return nil, nil }
