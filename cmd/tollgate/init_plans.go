package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/tollgate/tollgate/proxy/stripe"
)

// The plans: chosen among the Stripe account's active recurring prices,
// by number when asked, by -plan NAME=price_… in scripts.

var planKeyPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)

func (r *initRun) askPlans(ctx context.Context) error {
	if !r.writeCfg {
		return nil
	}
	octx, cancel := r.online(ctx)
	defer cancel()
	prices, err := stripe.ListRecurringPrices(octx, r.stripeConfig())
	if err != nil {
		return err
	}
	mode := liveOrTest(strings.Contains(r.vars[envStripeSecret], "_live_"))
	if len(prices) == 0 {
		return fmt.Errorf("the Stripe account has no active recurring price in %s mode: add a product with a recurring price "+
			"(Stripe dashboard → Product catalogue), then run init again; nothing was written", mode)
	}
	var plans []initPlan
	switch {
	case len(r.o.plans) > 0:
		for _, f := range r.o.plans {
			key, list, ok := strings.Cut(f, "=")
			if !ok {
				return fmt.Errorf("%w: -plan %q: want NAME=price_…[,price_…]", errUsage, f)
			}
			plans = append(plans, initPlan{Key: strings.TrimSpace(key), Prices: splitList(list)})
		}
		if err := checkPlans(plans, prices); err != nil {
			return fmt.Errorf("%w: -plan: %w%s", errUsage, err, priceChoices(prices))
		}
	case len(r.prior.Plans) > 0 && checkPlans(r.prior.Plans, prices) == nil:
		plans = r.prior.Plans
		if r.p.interactive {
			ok, err := r.p.confirm("\nKeep the plans of "+r.cfgPath+" ("+planSummary(plans)+")?", true)
			if err != nil {
				return err
			}
			if !ok {
				plans = nil
			}
		}
	case !r.p.interactive:
		return fmt.Errorf("%w: plans: no answer; pass -plan NAME=price_…[,price_…]%s", errUsage, priceChoices(prices))
	}
	if plans == nil {
		if plans, err = r.choosePlans(prices, mode); err != nil {
			return err
		}
	}
	for i := range plans {
		i0 := slices.IndexFunc(prices, func(p stripe.RecurringPrice) bool { return p.ID == plans[i].Prices[0] })
		plans[i].Name = prices[i0].ProductName
	}
	r.cfg.Plans = plans
	return nil
}

// choosePlans asks for the plans, each a choice of numbered prices.
func (r *initRun) choosePlans(prices []stripe.RecurringPrice, mode string) ([]initPlan, error) {
	fmt.Fprintf(r.out, "\nActive recurring prices in the Stripe account (%s mode):\n", mode)
	for i, p := range prices {
		fmt.Fprintf(r.out, "  %2d. %s\n", i+1, describePrice(p))
	}
	var plans []initPlan
	for n := 1; ; n++ {
		ids, err := r.p.ask(question{label: fmt.Sprintf("Plan %d: its prices (numbers or price IDs; several, e.g. monthly and yearly, with commas)", n),
			flag: "plan", check: func(s string) (string, error) {
				ids, err := pickPrices(s, prices)
				if err == nil {
					err = checkPlans(append(slices.Clone(plans), initPlan{Key: "x", Prices: ids}), prices)
				}
				return strings.Join(ids, ","), err
			}})
		if err != nil {
			return nil, err
		}
		first := prices[slices.IndexFunc(prices, func(p stripe.RecurringPrice) bool { return p.ID == strings.Split(ids, ",")[0] })]
		key, err := r.p.ask(question{label: fmt.Sprintf("Plan %d: its name in URLs and the config", n), flag: "plan",
			def: uniqueKey(slug(first.ProductName), plans), check: func(s string) (string, error) {
				return s, checkPlans(append(slices.Clone(plans), initPlan{Key: s, Prices: []string{first.ID}}), prices)
			}})
		if err != nil {
			return nil, err
		}
		plans = append(plans, initPlan{Key: key, Prices: strings.Split(ids, ",")})
		if len(planPrices(plans)) == len(prices) {
			return plans, nil
		}
		more, err := r.p.confirm("Another plan?", false)
		if err != nil || !more {
			return plans, err
		}
	}
}

func describePrice(p stripe.RecurringPrice) string {
	name := p.ProductName
	if p.Nickname != "" && p.Nickname != name {
		name += " (" + p.Nickname + ")"
	}
	return fmt.Sprintf("%s — %s/%s   %s", name, p.Format(), p.Per(), p.ID)
}

func priceChoices(prices []stripe.RecurringPrice) string {
	var b strings.Builder
	b.WriteString("; the account's active recurring prices:")
	for _, p := range prices {
		b.WriteString("\n  " + describePrice(p))
	}
	return b.String()
}

func planSummary(plans []initPlan) string {
	var parts []string
	for _, p := range plans {
		parts = append(parts, p.Key+": "+strings.Join(p.Prices, ", "))
	}
	return strings.Join(parts, "; ")
}

func planPrices(plans []initPlan) []string {
	var out []string
	for _, p := range plans {
		out = append(out, p.Prices...)
	}
	return out
}

// pickPrices reads a choice of prices: numbers from the list, or IDs.
func pickPrices(s string, prices []stripe.RecurringPrice) ([]string, error) {
	var ids []string
	for _, item := range splitList(s) {
		if n, err := strconv.Atoi(item); err == nil {
			if n < 1 || n > len(prices) {
				return nil, fmt.Errorf("%d is not a number from 1 to %d", n, len(prices))
			}
			item = prices[n-1].ID
		}
		ids = append(ids, item)
	}
	if len(ids) == 0 {
		return nil, errors.New("no price chosen")
	}
	return ids, nil
}

// checkPlans checks plans against the account's prices: valid keys, each
// plan with prices, each price active and recurring, and in one plan only.
func checkPlans(plans []initPlan, prices []stripe.RecurringPrice) error {
	owner, keys := map[string]string{}, map[string]bool{}
	for _, p := range plans {
		if !planKeyPattern.MatchString(p.Key) {
			return fmt.Errorf("%q is not a plan name; want letters, digits, _ or - (it appears in /.tollgate/subscribe/{plan} URLs)", p.Key)
		}
		if keys[p.Key] {
			return fmt.Errorf("plan %q is named twice", p.Key)
		}
		keys[p.Key] = true
		if len(p.Prices) == 0 {
			return fmt.Errorf("plan %q has no price", p.Key)
		}
		for _, id := range p.Prices {
			if !slices.ContainsFunc(prices, func(sp stripe.RecurringPrice) bool { return sp.ID == id }) {
				return fmt.Errorf("%q is not an active recurring price of the account", id)
			}
			if o, dup := owner[id]; dup {
				return fmt.Errorf("%s is already a price of plan %q; a price belongs to one plan only", id, o)
			}
			owner[id] = p.Key
		}
	}
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// slug makes a plan key of a product name: "Pro Plus" is "pro-plus".
func slug(name string) string {
	var b strings.Builder
	for _, c := range strings.ToLower(name) {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
			b.WriteRune(c)
		case b.Len() > 0 && !strings.HasSuffix(b.String(), "-"):
			b.WriteByte('-')
		}
	}
	s := strings.TrimSuffix(b.String(), "-")
	if len(s) > 64 {
		s = strings.TrimSuffix(s[:64], "-")
	}
	return cmp.Or(s, "plan")
}

func uniqueKey(key string, plans []initPlan) string {
	taken := func(k string) bool { return slices.ContainsFunc(plans, func(p initPlan) bool { return p.Key == k }) }
	for i := 2; taken(key); i++ {
		key = strings.TrimSuffix(key, "-"+strconv.Itoa(i-1)) + "-" + strconv.Itoa(i)
	}
	return key
}
