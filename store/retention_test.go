package store_test

import (
	"testing"

	"github.com/postern/postern/store"
)

func TestRetentionDefault(t *testing.T) {
	if got := (store.Server{}).Retention(); got != store.DefaultRetentionDays {
		t.Errorf("zero RetentionDays: %d, want %d", got, store.DefaultRetentionDays)
	}
	if got := (store.Server{RetentionDays: 7}).Retention(); got != 7 {
		t.Errorf("7: %d", got)
	}
}
