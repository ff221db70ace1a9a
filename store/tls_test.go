package store_test

import (
	"testing"

	"github.com/postern/postern/store"
)

func TestTLSReportDayAddCapsFailureKinds(t *testing.T) {
	var d store.TLSReportDay
	ref := store.TLSPolicyRef{Type: store.TLSPolicyNotFound}
	for i := range store.MaxTLSFailureKinds + 10 {
		d.Add(store.TLSResult{Policy: ref, Failure: &store.TLSFailure{ResultType: "validation-failure", ReceivingIP: string(rune('a' + i))}, Count: 1})
	}
	if p := d.Policies[0]; p.Failure != int64(store.MaxTLSFailureKinds+10) || len(p.Failures) != store.MaxTLSFailureKinds {
		t.Errorf("failures %d in %d kinds, want %d in %d", p.Failure, len(p.Failures), store.MaxTLSFailureKinds+10, store.MaxTLSFailureKinds)
	}
}
