package stripesandbox

import (
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/stripe/stripe-go/v76"
)

// The list a setup chooses plans from: active recurring prices, each with
// its product expanded for the product's name; one-time prices are left
// out, and a type Stripe does not know is refused.
func TestPrices_ListRecurringWithProducts(t *testing.T) {
	f := newSBFixture(t, Options{})
	p := &stripe.PriceListParams{Active: stripe.Bool(true), Type: stripe.String("recurring")}
	p.AddExpand("data.product")
	type row struct{ ID, Product, Name, Interval string }
	var got []row
	it := f.sc.Prices.List(p)
	for it.Next() {
		pr := it.Price()
		got = append(got, row{pr.ID, pr.Product.ID, pr.Product.Name, string(pr.Recurring.Interval)})
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	want := []row{
		{"price_demo_pro_monthly", "prod_pro", "Pro", "month"},
		{"price_demo_pro_yearly", "prod_pro", "Pro", "year"},
		{"price_demo_team_monthly", "prod_team", "Team", "month"},
		{"price_demo_api_monthly", "prod_api", "API", "month"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("recurring prices (-want +got):\n%s", diff)
	}
	inactive := f.sc.Prices.List(&stripe.PriceListParams{Active: stripe.Bool(false)})
	if inactive.Next() {
		t.Errorf("an inactive price: %s", inactive.Price().ID)
	}
	status, _, body := f.rawCall(t, "GET", "/v1/prices?type=monthly", f.s.SecretKey(), "", nil)
	if e, _ := body["error"].(map[string]any); status != http.StatusBadRequest || e["param"] != "type" {
		t.Errorf("type=monthly: %d %v", status, body)
	}
}
