package clerk

import (
	"encoding/json"
	"testing"
)

// HandledEvents, which setup prints for the Clerk endpoint's
// subscription, is exactly what the webhook applies: each listed type is
// acted on, and types next to them are not.
func TestHandledEvents_AreWhatTheWebhookApplies(t *testing.T) {
	e := newWebhookEnv(t, nil)
	h := e.h.(*webhookHandler)
	data := json.RawMessage(`{"id":"x_1","organization":{"id":"org_1"},"public_user_data":{"user_id":"user_1"},"role":"org:admin"}`)
	for _, typ := range HandledEvents() {
		if handled, err := h.apply(t.Context(), svixEvent{Type: typ, Data: data}); !handled || err != nil {
			t.Errorf("%s: handled %v, %v", typ, handled, err)
		}
	}
	for _, typ := range []string{"session.created", "session.pending", "email.created", "organizationInvitation.created", "role.created"} {
		if handled, _ := h.apply(t.Context(), svixEvent{Type: typ, Data: data}); handled {
			t.Errorf("%s is applied but not in HandledEvents", typ)
		}
	}
}
