package main

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/tollgate/tollgate/proxy/stripe"
)

// The Stripe webhook endpoint: made or updated last, as a new one's
// signing secret is shown once; taken back if that secret cannot be kept.

// stripeWebhook makes or updates the Stripe endpoint and settles
// STRIPE_WEBHOOK_SECRET.
func (r *initRun) stripeWebhook(ctx context.Context) error {
	whURL := r.cfg.PublicURL + r.o.internalPrefix + stripe.WebhookPath
	q := question{label: "Stripe webhook signing secret", flag: "stripe-webhook-secret", given: r.o.stripeWebhook, secret: true,
		needed: "  It is required: tollgate check and serve refuse a config without it, so tollgate will not start. " +
			"Paste it, or press Ctrl+C to stop; nothing has been written.",
		check: func(s string) (string, error) { return s, checkSecret(s, "whsec_") }}
	if onThisMachine(r.public) {
		if !r.deliversHere() {
			fmt.Fprintf(r.out, "\nStripe cannot deliver webhooks to %s, which is on this machine, so no endpoint was made. To try them here, run\n"+
				"  stripe listen --forward-to %s\nwhich prints the signing secret to use.\n", r.cfg.PublicURL, whURL)
			return r.stripeSecret(r.secretDefault(q, envStripeWebhook),
				"public_url is on this machine: pass stripe listen's signing secret with -stripe-webhook-secret")
		}
		fmt.Fprintf(r.out, "\n%s is on this machine; the Stripe stand-in at %s delivers there, so the endpoint is made as for a public site.\n",
			r.cfg.PublicURL, r.cfg.StripeAPIURL)
	}
	octx, cancel := r.online(ctx)
	defer cancel()
	we, err := stripe.EnsureWebhookEndpoint(octx, r.stripeConfig())
	if err != nil {
		return fmt.Errorf("the Stripe webhook endpoint (nothing was written): %w", err)
	}
	n := len(stripe.HandledEvents())
	for _, id := range we.Others {
		r.note(fmt.Sprintf("Stripe endpoint %s has the same URL as %s: it delivers the same events, signed with another secret; delete it in the dashboard (Developers → Webhooks)", id, we.ID))
	}
	if we.Created {
		fmt.Fprintf(r.out, "Stripe: made the webhook endpoint %s at %s, subscribed to the %d events tollgate handles; its signing secret goes to %s.\n",
			we.ID, we.URL, n, envStripeWebhook)
		if r.o.stripeWebhook != "" {
			r.note("-stripe-webhook-secret is not used: the endpoint was made now, with a secret of its own")
		}
		r.vars[envStripeWebhook], r.madeEndpoint = we.Secret, we.ID
		return nil
	}
	did := "its events are already the %d tollgate handles"
	if we.Updated {
		did = "its events are now the %d tollgate handles"
	}
	fmt.Fprintf(r.out, "Stripe: the webhook endpoint %s at %s is there already; "+did+".\n", we.ID, we.URL, n)
	if r.o.stripeWebhook == "" && r.env.get(envStripeWebhook) == "" && r.p.interactive {
		fmt.Fprintln(r.out, "Stripe shows an endpoint's signing secret only when it makes it. In the dashboard (Developers → Webhooks → the endpoint)"+
			" roll the secret and paste the new one here: tollgate does not start without it.")
	}
	return r.stripeSecret(r.secretDefault(q, envStripeWebhook),
		"Stripe shows an endpoint's signing secret only when it makes it, and tollgate.env has none: roll the secret in the dashboard "+
			"(Developers → Webhooks → "+we.ID+") and pass it with -stripe-webhook-secret, or delete the endpoint and run init again")
}

// stripeSecret settles STRIPE_WEBHOOK_SECRET from q; without an answer
// (scripted, or the input ended) it fails with missing, and nothing is
// written: tollgate does not start without the secret.
func (r *initRun) stripeSecret(q question, missing string) error {
	if !r.p.interactive && q.given == "" && q.def == "" {
		return fmt.Errorf("%w: %s (nothing was written)", errUsage, missing)
	}
	v, err := r.p.ask(q)
	if err != nil {
		return fmt.Errorf("%w; tollgate does not start without the Stripe webhook signing secret, so nothing was written: %s", err, missing)
	}
	r.vars[envStripeWebhook] = v
	return nil
}

// onThisMachine reports a public URL Stripe cannot reach: localhost or a
// loopback address.
func onThisMachine(u *url.URL) bool {
	h := strings.ToLower(u.Hostname())
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// takeBackEndpoint deletes the endpoint this run made when the files that
// were to keep its secret could not be written: Stripe never shows that
// secret again, and a run that finds the endpoint could not get it. It
// returns err saying what became of the endpoint.
func (r *initRun) takeBackEndpoint(ctx context.Context, err error) error {
	if r.madeEndpoint == "" {
		return err
	}
	// ctx may be what ended the write (Ctrl+C): the delete gets a context
	// of its own, bounded as every call init makes.
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.o.onlineTimeout)
	defer cancel()
	if derr := stripe.DeleteWebhookEndpoint(dctx, r.stripeConfig(), r.madeEndpoint); derr != nil {
		return fmt.Errorf("%w; the Stripe webhook endpoint %s was made, its signing secret (shown once) is lost, and deleting it failed (%v): "+
			"delete it in the dashboard (Developers → Webhooks) and run init again", err, r.madeEndpoint, derr)
	}
	fmt.Fprintf(r.out, "Stripe: deleted the webhook endpoint %s again, as its signing secret, which Stripe shows once, could not be kept.\n", r.madeEndpoint)
	return fmt.Errorf("%w; the Stripe webhook endpoint %s made by this run was deleted again, as its signing secret could not be kept: "+
		"fix that and run init again", err, r.madeEndpoint)
}
