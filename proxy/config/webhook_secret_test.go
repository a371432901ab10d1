package config

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// A Stripe webhook_secret that is there but not a signing secret (the API
// key pasted by mistake) is one error, that one: not also "empty; it is
// required", which would contradict it.
func TestParseConfig_AWrongWebhookSecretIsNotAlsoMissing(t *testing.T) {
	doc := "public_url: https://app.example.com\nupstream: http://app:3000\n" +
		"routes: [{path: /p/*, access: paid}]\nclerk: { publishable_key: \"${CLERK_PUBLISHABLE_KEY}\", secret_key: sk_test_x }\n" +
		"session: { secret: \"${TOLLGATE_SESSION_SECRET}\" }\nstripe: { secret_key: sk_test_x, webhook_secret: \"${STRIPE_WEBHOOK_SECRET}\" }\n" +
		"plans: { pro: { prices: [price_a], routes: [\"*\"] } }\n"
	env := map[string]string{"CLERK_PUBLISHABLE_KEY": testPublishableKey, "TOLLGATE_SESSION_SECRET": testSessionSecret,
		"STRIPE_WEBHOOK_SECRET": "sk_test_pastedByMistake"}
	_, err := Parse("config.yaml", []byte(doc), func(k string) string { return env[k] })
	want := []string{"config.yaml:6: stripe.webhook_secret: is not a Stripe webhook signing secret; want whsec_… from the Stripe dashboard " +
		"(Webhooks → the endpoint → Signing secret)"}
	if diff := cmp.Diff(errorLines(err), want); diff != "" {
		t.Errorf("(-got +want):\n%s", diff)
	}
}
