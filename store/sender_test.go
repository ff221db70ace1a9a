package store_test

import (
	"errors"
	"testing"

	"github.com/postern/postern/store"
)

func TestParseSenderPolicy(t *testing.T) {
	for name, want := range map[string]store.SenderPolicy{"registered": store.PolicyRegistered, "verified": store.PolicyVerified, "any": store.PolicyAny} {
		got, err := store.ParseSenderPolicy(name)
		if err != nil || got != want || got.String() != name {
			t.Errorf("ParseSenderPolicy(%q) = %v, %v; want %v", name, got, err, want)
		}
	}
	for _, bad := range []string{"", "Any", "strict"} {
		if _, err := store.ParseSenderPolicy(bad); err == nil {
			t.Errorf("ParseSenderPolicy(%q) accepted", bad)
		}
	}
	var zero store.SenderPolicy
	if zero != store.PolicyRegistered {
		t.Error("the zero SenderPolicy is not PolicyRegistered")
	}
}

func TestCheckSenderDomain(t *testing.T) {
	live := store.Server{AccountID: 1, DeliveryType: store.DeliveryLive}
	sandbox := store.Server{AccountID: 1, DeliveryType: store.DeliverySandbox}
	own := store.Domain{AccountID: 1}
	verified := store.Domain{AccountID: 1, DKIMVerified: true}
	others := store.Domain{AccountID: 2, DKIMVerified: true}
	broken := errors.New("disk on fire")
	for _, c := range []struct {
		policy store.SenderPolicy
		srv    store.Server
		d      store.Domain
		lookup error
		want   error
	}{
		{store.PolicyRegistered, live, own, nil, nil},
		{store.PolicyRegistered, live, store.Domain{}, store.ErrNotFound, store.ErrSenderNotRegistered},
		{store.PolicyRegistered, live, others, nil, store.ErrSenderNotRegistered},
		{store.PolicyVerified, live, own, nil, store.ErrSenderNotVerified},
		{store.PolicyVerified, live, verified, nil, nil},
		{store.PolicyVerified, live, others, nil, store.ErrSenderNotRegistered},
		{store.PolicyVerified, live, store.Domain{}, broken, broken},
		{store.PolicyAny, live, others, nil, nil},
		{store.PolicyVerified, sandbox, others, nil, nil},
	} {
		if got := c.policy.CheckSenderDomain(c.srv, c.d, c.lookup); !errors.Is(got, c.want) || (c.want == nil) != (got == nil) {
			t.Errorf("%v, %+v, %+v, %v: %v, want %v", c.policy, c.srv, c.d, c.lookup, got, c.want)
		}
	}
}
