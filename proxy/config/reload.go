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
// key, clerk.frontend_api_url rather than clerk, so that the person who
// sent SIGHUP knows which edit needs the restart; the caller keeps the
// running config. A field added to one of these sections is compared too,
// and named by its section until restartKeys names it.
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
	if old.QuotaFlush != cfg.QuotaFlush {
		// The flush loop runs at the interval it started with. Limits,
		// free: and cost_header reload.
		keys = append(keys, "quota_flush")
	}
	if old.MeterWindow != cfg.MeterWindow {
		// The limiter, built once, cuts windows at the length it started with.
		keys = append(keys, "meter_window")
	}
	keys = append(keys, changedFields("clerk", old.Clerk, cfg.Clerk, nil)...)
	keys = append(keys, changedFields("stripe", old.Stripe, cfg.Stripe, stripeReloadable)...)
	keys = append(keys, changedFields("store", old.Store, cfg.Store, nil)...)
	keys = append(keys, changedFields("admin", old.Admin, cfg.Admin, nil)...)
	keys = append(keys, changedFields("api_keys", old.APIKeys, cfg.APIKeys, nil)...)
	if len(keys) > 0 {
		return fmt.Errorf("reload refused: %s changed; restart tollgate to apply", strings.Join(keys, ", "))
	}
	return nil
}

// stripeReloadable are the fields of the stripe section a reload may
// change: policies the gate reads on every request, and Checkout's options,
// which the gateway passes with each Checkout from the config serving.
var stripeReloadable = map[string]bool{"PastDueGrace": true, "PausedCollection": true, "ReconcileInterval": true,
	"AllowPromotionCodes": true, "AutomaticTax": true}

// restartKeys names the config key of each field of the restart-only
// sections.
var restartKeys = map[string]map[string]string{
	"clerk": {"PublishableKey": "publishable_key", "SecretKey": "secret_key", "JWTKey": "jwt_key",
		"AuthorizedParties": "authorized_parties", "WebhookSecrets": "webhook_secret", "ForwardCookies": "forward_cookies",
		"ProxyURL": "proxy_url", "APIURL": "api_url", "FrontendAPIURL": "frontend_api_url", "SignInURL": "sign_in_url", "APIKeys": "api_keys"},
	"api_keys": {"Enabled": "enabled", "Header": "header", "MaxFailures": "max_failures"},
	"stripe":   {"SecretKey": "secret_key", "WebhookSecrets": "webhook_secret", "APIURL": "api_url"},
	"store": {"Driver": "driver", "Path": "path", "CacheSize": "cache_size", "DSN": "dsn", "MaxConns": "max_conns", "MinConns": "min_conns",
		"MaxConnLifetime": "max_conn_lifetime", "MaxConnIdle": "max_conn_idle", "ConnectTimeout": "connect_timeout"},
	"admin": {"Listen": "listen", "Token": "token", "Users": "users"},
}

// changedFields lists, as section.key, the fields of two values of one
// section's struct that differ, leaving out the reloadable ones.
func changedFields(section string, old, cfg any, reloadable map[string]bool) []string {
	ov, nv := reflect.ValueOf(old), reflect.ValueOf(cfg)
	var keys []string
	for i := range ov.NumField() {
		name := ov.Type().Field(i).Name
		if reloadable[name] || reflect.DeepEqual(ov.Field(i).Interface(), nv.Field(i).Interface()) {
			continue
		}
		key, ok := restartKeys[section][name]
		if !ok {
			key = section
		} else {
			key = section + "." + key
		}
		if len(keys) == 0 || keys[len(keys)-1] != key {
			keys = append(keys, key)
		}
	}
	return keys
}
