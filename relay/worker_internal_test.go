package relay

import (
	"context"
	"strings"
	"testing"
	"time"
)

// The retry intervals: 5 minutes doubling up to 4 hours, each varied by
// at most ±20%.
func TestBackoff(t *testing.T) {
	r := 0.5
	w, err := NewWorker(WorkerConfig{Store: nilStore{}, MX: nilDeliverer{}, Rand: func() float64 { return r }})
	if err != nil {
		t.Fatal(err)
	}
	want := []time.Duration{5 * time.Minute, 10 * time.Minute, 20 * time.Minute, 40 * time.Minute, 80 * time.Minute, 160 * time.Minute, 4 * time.Hour, 4 * time.Hour}
	for attempts, d := range want {
		if got := w.backoff(attempts); got != d {
			t.Errorf("backoff(%d) = %v, want %v", attempts, got, d)
		}
	}
	if got := w.backoff(1000); got != 4*time.Hour {
		t.Errorf("backoff(1000) = %v", got)
	}
	r = 0
	if got := w.backoff(0); got != 4*time.Minute {
		t.Errorf("lowest jitter: %v, want 4m", got)
	}
	r = 0.999999
	if got := w.backoff(6); got < 287*time.Minute || got > 288*time.Minute {
		t.Errorf("highest jitter on the cap: %v, want just under 4h48m", got)
	}
}

func TestDestinations(t *testing.T) {
	w, err := NewWorker(WorkerConfig{Store: nilStore{}, MX: nilDeliverer{}, Smarthost: nilDeliverer{}, SmarthostDomains: []string{"Via.Example."}})
	if err != nil {
		t.Fatal(err)
	}
	ds := w.destinations([]string{"a@B.example", "x@via.example", "c@b.example", "d@a.example", "y@VIA.example"})
	var got []string
	for _, d := range ds {
		got = append(got, d.key+":"+strings.Join(d.to, ","))
	}
	want := "[[smarthost]:x@via.example,y@VIA.example a.example:d@a.example b.example:a@B.example,c@b.example]"
	if s := "[" + strings.Join(got, " ") + "]"; s != want {
		t.Errorf("destinations %s, want %s", s, want)
	}
}

type nilStore struct{ Store }

type nilDeliverer struct{}

func (nilDeliverer) DeliverDomain(context.Context, string, Envelope, Message) (Result, error) {
	return Result{}, nil
}
func (nilDeliverer) Deliver(context.Context, Envelope, Message) (Result, error) { return Result{}, nil }
