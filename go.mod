module github.com/tollgate/tollgate

go 1.26.8

require (
	github.com/clerk/clerk-sdk-go/v2 v2.4.2
	github.com/go-jose/go-jose/v3 v3.0.4
	github.com/google/go-cmp v0.7.0
	github.com/hashicorp/golang-lru/v2 v2.0.7
	github.com/stripe/stripe-go/v76 v76.25.0
	go.etcd.io/bbolt v1.5.0
	gopkg.in/yaml.v3 v3.0.1
)

require (
	golang.org/x/crypto v0.19.0 // indirect
	golang.org/x/sys v0.45.0 // indirect
)
