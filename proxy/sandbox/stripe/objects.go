package stripesandbox

import (
	"crypto/rand"
	"time"
)

// The objects a sandbox account holds, each in one mode.

// view is the API version and mode an answer is rendered for.
type view struct {
	version string
	live    bool // the key that asked is a live-mode key
}

// basil reports the shapes of 2025-03-31.basil and later.
func (v view) basil() bool { return versionDate(v.version) >= "2025-03-31" }

// dahlia reports the shapes of 2026-03-25.dahlia and later.
func (v view) dahlia() bool { return versionDate(v.version) >= "2026-03-25" }

func versionDate(v string) string {
	if len(v) < 10 {
		return v
	}
	return v[:10]
}

// endpoint is a webhook endpoint of one mode.
type endpoint struct {
	url, secret string
}

// object is anything that belongs to one mode.
type object interface{ isLive() bool }

type product struct {
	id, name string
	livemode bool
}

func (p *product) isLive() bool { return p.livemode }

type price struct {
	Price
	product  *product
	livemode bool
}

func (p *price) isLive() bool { return p.livemode }

// modeKey keys what two modes may both name (products derived from a
// price's product name).
func modeKey(live bool, id string) string {
	if live {
		return "live:" + id
	}
	return "test:" + id
}

func (p *price) recurring() bool { return p.Interval != "" }

type customer struct {
	id, email, name string
	address         *address // nil: none
	metadata        map[string]string
	created         time.Time
	seq             int64
	deleted         bool
	currency        string
	invoiceSeq      int64
	invoicePrefix   string
	livemode        bool
}

func (c *customer) isLive() bool { return c.livemode }

type subItem struct {
	id       string
	price    *price
	quantity int64
	created  time.Time
	// metered is where a metered item's next invoice starts counting
	// usage (billing time).
	metered time.Time
}

type subscription struct {
	id, customer       string
	status             string
	items              []subItem
	metadata           map[string]string
	created            time.Time
	seq                int64
	anchor             time.Time // billing cycle anchor
	periods            int       // periods since the anchor at current_period_start
	periodStart        time.Time
	periodEnd          time.Time
	trialStart         time.Time // zero: no trial
	trialEnd           time.Time
	cancelAtPeriodEnd  bool
	canceledAt         time.Time
	endedAt            time.Time
	cancelReason       string
	latestInvoice      string
	pastDueSince       time.Time
	retries            int
	nextRetry          time.Time
	defaultPaymentMeth string
	livemode           bool
	// pauseBehavior is pause_collection's behavior while payment
	// collection is paused ("" when it is not): keep_as_draft,
	// mark_uncollectible or void. The status stays what it is.
	pauseBehavior string
	pauseResumes  time.Time // pause_collection.resumes_at; zero: until resumed
	automaticTax  bool      // made by a Checkout with automatic_tax
}

func (s *subscription) isLive() bool { return s.livemode }

func (s *subscription) interval() string { return s.items[0].price.Interval }

func (s *subscription) currency() string { return s.items[0].price.Currency }

// amount is what one period costs.
func (s *subscription) amount() int64 {
	var n int64
	for _, it := range s.items {
		n += it.price.UnitAmount * it.quantity
	}
	return n
}

// live reports whether the subscription can still change by itself.
func (s *subscription) live() bool {
	switch s.status {
	case "trialing", "active", "past_due":
		return true
	}
	return false
}

// dueAt is when the billing engine next has work for the subscription.
func (s *subscription) dueAt() (time.Time, bool) {
	t, ok := s.billingDueAt()
	if s.pauseBehavior != "" && !s.pauseResumes.IsZero() && s.live() && (!ok || s.pauseResumes.Before(t)) {
		return s.pauseResumes, true
	}
	return t, ok
}

func (s *subscription) billingDueAt() (time.Time, bool) {
	switch s.status {
	case "trialing":
		return s.trialEnd, true
	case "active":
		return s.periodEnd, true
	case "past_due":
		if s.cancelAtPeriodEnd && s.periodEnd.Before(s.nextRetry) {
			return s.periodEnd, true
		}
		return s.nextRetry, true
	}
	return time.Time{}, false
}

type lineItem struct {
	price    *price
	quantity int64
}

type checkoutSession struct {
	id                string
	customer          string // "" until paid, when none was given
	customerEmail     string
	clientReferenceID string
	mode              string
	items             []lineItem
	trialDays         int64
	trialEnd          time.Time
	subMetadata       map[string]string
	metadata          map[string]string
	successURL        string
	cancelURL         string
	allowPromo        bool
	billingAddress    string            // billing_address_collection: "", auto or required
	customerUpdate    map[string]string // customer_update: address, name → auto or never
	automaticTax      bool
	address           *address // the billing address paid with
	status            string   // open, complete, expired
	paymentStatus     string   // unpaid, paid
	subscription      string
	created           time.Time
	expiresAt         time.Time
	seq               int64
	email             string // customer_details.email once paid
	livemode          bool
}

func (c *checkoutSession) isLive() bool { return c.livemode }

// trial reports whether paying starts a trial, and when it ends.
func (c *checkoutSession) trial(now time.Time) (time.Time, bool) {
	switch {
	case !c.trialEnd.IsZero():
		return c.trialEnd, true
	case c.trialDays > 0:
		return now.Add(time.Duration(c.trialDays) * 24 * time.Hour), true
	}
	return time.Time{}, false
}

// dueToday is what paying charges now; subtotal the same before trials.
func (c *checkoutSession) dueToday() (total int64) {
	trial := c.trialDays > 0 || !c.trialEnd.IsZero()
	for _, li := range c.items {
		if li.price.recurring() && trial {
			continue
		}
		total += li.price.UnitAmount * li.quantity
	}
	return total
}

func (c *checkoutSession) currency() string { return c.items[0].price.Currency }

type portalSession struct {
	id, customer, returnURL string
	created                 time.Time
	livemode                bool
}

type invoice struct {
	id, customer, subscription string
	number                     string
	billingReason              string
	currency                   string
	lines                      []invoiceLine
	created                    time.Time
	periodStart, periodEnd     time.Time
	paid                       bool
	paidAt                     time.Time
	attempts                   int64
	nextAttempt                time.Time
	livemode                   bool
	subMetadata                map[string]string // the subscription's when the invoice was made
	// state overrides the status of an unpaid invoice: "draft",
	// "uncollectible" or "void" (made while collection was paused).
	state string
}

func (in *invoice) isLive() bool { return in.livemode }

func (in *invoice) total() int64 {
	var n int64
	for _, l := range in.lines {
		n += l.amount
	}
	return n
}

type invoiceLine struct {
	id          string
	price       *price
	quantity    int64
	amount      int64
	description string
	subItem     string // "" for one-time items
	start, end  time.Time
}

func modeIndex(live bool) int {
	if live {
		return 1
	}
	return 0
}

// nextSeqLocked numbers objects in creation order (lists are newest first).
func (s *Stripe) nextSeqLocked() int64 {
	s.seq++
	return s.seq
}

// newID is a Stripe-looking object ID: prefix and 24 random letters and
// digits.
func newID(prefix string) string {
	const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	b := make([]byte, 24)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return prefix + string(b)
}
