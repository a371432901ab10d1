package config

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/tollgate/tollgate/proxy"
)

// CheckReload refuses a reload that changes what tollgate reads only when
// it starts (README, "Operating tollgate"): the listeners, public_url,
// internal_prefix, the Clerk section, the Stripe key, API URL and webhook
// secrets, the store and the admin section. The error names each changed
// key; the caller keeps the running config. A key added to one of these
// sections is covered by the section's comparison.
func CheckReload(old, cfg *proxy.Config) error {
	var keys []string
	if old.Listen != cfg.Listen {
		keys = append(keys, "listen")
	}
	if old.PublicURL.String() != cfg.PublicURL.String() {
		keys = append(keys, "public_url")
	}
	if old.InternalPrefix != cfg.InternalPrefix {
		keys = append(keys, "internal_prefix")
	}
	if !reflect.DeepEqual(old.Clerk, cfg.Clerk) {
		keys = append(keys, "clerk")
	}
	if old.Stripe.SecretKey != cfg.Stripe.SecretKey || old.Stripe.APIURL != cfg.Stripe.APIURL ||
		!reflect.DeepEqual(old.Stripe.WebhookSecrets, cfg.Stripe.WebhookSecrets) {
		keys = append(keys, "stripe")
	}
	if old.Store != cfg.Store {
		keys = append(keys, "store")
	}
	if !reflect.DeepEqual(old.Admin, cfg.Admin) {
		keys = append(keys, "admin")
	}
	if len(keys) > 0 {
		return fmt.Errorf("reload refused: %s changed; restart tollgate to apply", strings.Join(keys, ", "))
	}
	return nil
}
