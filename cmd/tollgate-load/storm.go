package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	stripego "github.com/stripe/stripe-go/v76"
	stripeclient "github.com/stripe/stripe-go/v76/client"

	"github.com/tollgate/tollgate/proxy/gateway"
	stripesandbox "github.com/tollgate/tollgate/proxy/sandbox/stripe"
	"github.com/tollgate/tollgate/proxy/stripe"
)

const (
	stormSecretKey = "sk_test_load"
	stormWhsec     = "whsec_load"
)

// stormEventTypes are what a renewal day sends, per customer.
func stormEventTypes() []string {
	return []string{"invoice.upcoming_ignored", "invoice.paid", "invoice.payment_succeeded",
		"customer.subscription.updated", "invoice.payment_failed"}
}

// runStorm is the webhook-storm scenario: a renewal day's burst of signed
// Stripe events through the gateway, against the sandbox Stripe. It
// prints the ingest rate (every event acknowledged), how long the dirty
// worker took to drain the backlog after the last event against the bound
// (backlog ÷ pace + 3 s), and fails unless the store ends as Stripe is.
func runStorm(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("tollgate-load webhook-storm", flag.ContinueOnError)
	events := fs.Int("events", 5000, "signed events to deliver")
	customers := fs.Int("customers", 500, "customers they name")
	inflight := fs.Int("c", 8, "deliveries in flight")
	rate := fs.Float64("rate", stripe.DefaultPacing().Background.Rate, "the background lane's calls a second (Stripe's test mode allows 25 in all, live 100)")
	timeout := fs.Duration("timeout", 10*time.Minute, "give up on the drain after this long")
	storeKind := fs.String("store", "bolt", "the store: bolt, or postgres (several replicas' store)")
	dsn := fs.String("dsn", "", "with -store postgres: the database (default: a throwaway local cluster, as in the tests)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *customers < 1 || *events < *customers {
		return errors.New("want at least one customer and at least as many events as customers")
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	sb := stripesandbox.New(stripesandbox.Options{SecretKey: stormSecretKey})
	defer sb.Close()
	sbURL := serve(sb.Handler())
	sb.SetBaseURL(sbURL)
	api := stripeclient.New(stormSecretKey, stripego.NewBackendsWithConfig(&stripego.BackendConfig{
		URL: stripego.String(sbURL), LeveledLogger: &stripego.LeveledLogger{Level: stripego.LevelNull}}))
	fmt.Fprintf(out, "webhook storm: %d events over %d customers, %d in flight, background lane %.0f calls/s (the sandbox Stripe on loopback)\n",
		*events, *customers, *inflight, *rate)
	setup := time.Now()
	ids, err := stormCustomers(api, sbURL, *customers)
	if err != nil {
		return fmt.Errorf("setting up customers: %w", err)
	}
	// A fifth of the subscriptions change in Stripe before the storm: the
	// events' bodies say nothing of it, the final state must.
	for i, c := range ids {
		if i%5 == 0 {
			sb.SetSubscriptionStatus(c.sub, []string{"past_due", "canceled", "unpaid"}[i/5%3])
		}
	}
	fmt.Fprintf(out, "set up %d customers with a subscription each in %s\n", len(ids), time.Since(setup).Round(time.Millisecond))

	store, storeDesc, closeStore, err := openLoadStore(ctx, *storeKind, *dsn)
	if err != nil {
		return err
	}
	defer closeStore()
	fmt.Fprintf(out, "store: %s\n", storeDesc)
	billing, err := stripe.New(stripe.Config{SecretKey: stormSecretKey, WebhookSecrets: []string{stormWhsec}, APIURL: sbURL,
		PublicURL: &url.URL{Scheme: "http", Host: "127.0.0.1"}, Store: store, Logger: slog.New(slog.DiscardHandler),
		Pacing: stripe.Pacing{Background: stripe.Lane{Rate: *rate, Burst: int(max(*rate, 4))}}})
	if err != nil {
		return err
	}
	upstream := serve(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") }))
	gwURL, _, err := startGateway(upstream, []gateway.InternalRoute{{Pattern: "POST " + stripe.WebhookPath, Handler: billing.WebhookHandler(), Webhook: true}})
	if err != nil {
		return err
	}
	workerCtx, stopWorker := context.WithCancel(ctx)
	workerDone := make(chan struct{})
	go func() { billing.RunDirty(workerCtx); close(workerDone) }()
	defer func() { stopWorker(); <-workerDone }()

	bodies := make([][]byte, *events)
	types := stormEventTypes()
	for i := range bodies {
		c := ids[i%len(ids)]
		typ := types[i/len(ids)%len(types)]
		obj := map[string]any{"id": fmt.Sprintf("in_storm_%d", i), "object": "invoice", "customer": c.customer, "status": "paid"}
		if typ == "customer.subscription.updated" {
			obj = map[string]any{"id": c.sub, "object": "subscription", "customer": c.customer, "status": "active"}
		}
		bodies[i], _ = json.Marshal(map[string]any{"id": fmt.Sprintf("evt_storm_%06d", i), "object": "event", "api_version": stripesandbox.APIVersion,
			"created": time.Now().Unix(), "type": typ, "livemode": false, "pending_webhooks": 1, "data": map[string]any{"object": obj}})
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *inflight, Proxy: nil}}
	var next atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range *inflight {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(bodies) || ctx.Err() != nil {
					return
				}
				for {
					code, err := postSigned(ctx, client, gwURL+"/.tollgate"+stripe.WebhookPath, bodies[i])
					if err == nil && code < 300 {
						break
					}
					if ctx.Err() != nil {
						return
					}
					failed.Add(1) // delivered again, as Stripe would
				}
			}
		})
	}
	wg.Wait()
	ingest := time.Since(start)
	if ctx.Err() != nil {
		return fmt.Errorf("storm: %w", ctx.Err())
	}
	atLast, err := store.DirtyBacklog(ctx)
	if err != nil {
		return err
	}
	pace := *rate / 2 // customers a second: two calls each
	bound := time.Duration(float64(atLast.Customers)/pace*float64(time.Second)) + 3*time.Second
	drainStart := time.Now()
	for {
		bl, err := store.DirtyBacklog(ctx)
		if err != nil {
			return err
		}
		if bl.Customers == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("drain: %w (backlog %d)", ctx.Err(), bl.Customers)
		case <-time.After(20 * time.Millisecond): // a load tool polling, not a test
		}
	}
	drain := time.Since(drainStart)
	eps := float64(*events) / ingest.Seconds()
	fmt.Fprintf(out, "ingest: %d events acknowledged in %s: %.0f events/s (target 500: %.2fx); %d answers other than 2xx, delivered again\n",
		*events, ingest.Round(time.Millisecond), eps, eps/500, failed.Load())
	fmt.Fprintf(out, "backlog after the last event: %d customers; drained in %s (bound: backlog ÷ %.1f customers/s + 3 s = %s: %.2fx)\n",
		atLast.Customers, drain.Round(time.Millisecond), pace, bound.Round(time.Millisecond), drain.Seconds()/bound.Seconds())
	calls := sb.APICalls()
	fmt.Fprintf(out, "Stripe calls: %d customer fetches, %d subscription lists, for %d events\n",
		calls["GET /v1/customers/{id}"], calls["GET /v1/subscriptions"], *events)
	mismatched, err := stormCompare(ctx, api, store, ids)
	if err != nil {
		return err
	}
	if mismatched > 0 {
		return fmt.Errorf("final state: %d of %d customers differ from Stripe", mismatched, len(ids))
	}
	fmt.Fprintf(out, "final state: all %d customers equal Stripe's (statuses and period ends)\n", len(ids))
	// The bound is reported, not enforced: on a shared machine a load run
	// measures; the tests hold the bound on an injected clock.
	return nil
}

type stormCustomer struct{ customer, sub string }

// stormCustomers makes n customers, each paying for a subscription through
// the sandbox's Checkout, a few at a time.
func stormCustomers(api *stripeclient.API, sbURL string, n int) ([]stormCustomer, error) {
	out := make([]stormCustomer, n)
	errs := make([]error, n)
	web := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				out[i], errs[i] = stormCustomerOne(api, web, i)
			}
		})
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

func stormCustomerOne(api *stripeclient.API, web *http.Client, i int) (stormCustomer, error) {
	cus, err := api.Customers.New(&stripego.CustomerParams{Email: stripego.String(fmt.Sprintf("c%d@example.com", i)),
		Metadata: map[string]string{"clerk_user_id": fmt.Sprintf("user_storm_%d", i)}})
	if err != nil {
		return stormCustomer{}, err
	}
	cs, err := api.CheckoutSessions.New(&stripego.CheckoutSessionParams{Mode: stripego.String("subscription"), Customer: stripego.String(cus.ID),
		SuccessURL: stripego.String("http://127.0.0.1/"), CancelURL: stripego.String("http://127.0.0.1/"),
		LineItems: []*stripego.CheckoutSessionLineItemParams{{Price: stripego.String("price_demo_pro_monthly"), Quantity: stripego.Int64(1)}}})
	if err != nil {
		return stormCustomer{}, err
	}
	if err := loopbackOnly(cs.URL); err != nil {
		return stormCustomer{}, err
	}
	resp, err := web.PostForm(cs.URL, url.Values{"email": {cus.Email}, "card_number": {"4242424242424242"}, "exp": {"12 / 34"}, "cvc": {"123"}})
	if err != nil {
		return stormCustomer{}, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		return stormCustomer{}, fmt.Errorf("pay: status %d", resp.StatusCode)
	}
	it := api.Subscriptions.List(&stripego.SubscriptionListParams{Customer: stripego.String(cus.ID)})
	if !it.Next() {
		if err := it.Err(); err != nil {
			return stormCustomer{}, fmt.Errorf("customer %s: its subscription: %w", cus.ID, err)
		}
		return stormCustomer{}, fmt.Errorf("customer %s: no subscription after paying", cus.ID)
	}
	return stormCustomer{customer: cus.ID, sub: it.Subscription().ID}, nil
}

// stormCompare counts the customers whose stored subscriptions differ from
// Stripe's (status and period end).
func stormCompare(ctx context.Context, api *stripeclient.API, store stripe.Store, ids []stormCustomer) (int, error) {
	type view struct {
		Status string
		End    int64
	}
	stripeSide := map[string][]view{}
	p := &stripego.SubscriptionListParams{Status: stripego.String("all")}
	p.Limit = stripego.Int64(100)
	it := api.Subscriptions.List(p)
	for it.Next() {
		s := it.Subscription()
		stripeSide[s.Customer.ID] = append(stripeSide[s.Customer.ID], view{string(s.Status), s.CurrentPeriodEnd})
	}
	if err := it.Err(); err != nil {
		return 0, err
	}
	bad := 0
	for _, c := range ids {
		st, _, err := store.StoredCustomer(ctx, c.customer)
		if err != nil {
			return 0, err
		}
		var got []view
		for _, s := range st.Subscriptions {
			got = append(got, view{string(s.Status), s.CurrentPeriodEnd.Unix()})
		}
		want := stripeSide[c.customer]
		if !slices.Equal(got, want) {
			bad++
		}
	}
	return bad, nil
}

// postSigned posts an event signed as Stripe signs it.
func postSigned(ctx context.Context, client *http.Client, u string, body []byte) (int, error) {
	if err := loopbackOnly(u); err != nil {
		return 0, err
	}
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	mac := hmac.New(sha256.New, []byte(stormWhsec))
	mac.Write([]byte(ts + "."))
	mac.Write(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("Stripe-Signature", "t="+ts+",v1="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// loopbackOnly refuses any address but this machine's.
func loopbackOnly(u string) error {
	pu, err := url.Parse(u)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(pu.Hostname()); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("refusing %s: loopback only", pu.Host)
	}
	return nil
}
