package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/postern/postern/api"
	"github.com/postern/postern/store/bolt"
)

type health struct {
	Status string
	Checks map[string]string
}

func getHealth(t *testing.T, url string) (int, health) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var h health
	if err := json.Unmarshal(body, &h); err != nil {
		t.Fatalf("GET %s: %v in %q", url, err, body)
	}
	return resp.StatusCode, h
}

// readyz fails, naming the store, while the store cannot commit, and
// recovers with it; healthz stays 200 throughout.
func TestReadyzFollowsTheStore(t *testing.T) {
	var broken atomic.Bool
	st, err := bolt.Open(filepath.Join(t.TempDir(), bolt.FileName), bolt.Options{BeforeCommit: func() error {
		if broken.Load() {
			return errors.New("injected: no space left on device")
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var relayRunning atomic.Bool
	relayRunning.Store(true)
	reg := prometheus.NewRegistry()
	h, err := api.NewOps(api.OpsConfig{Gatherer: reg, Ready: []api.Check{
		{Name: "store", Run: func(context.Context) error { return st.Ping() }},
		{Name: "relay", Run: func(context.Context) error {
			if !relayRunning.Load() {
				return errors.New("not running")
			}
			return nil
		}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()

	if code, h := getHealth(t, srv.URL+"/readyz"); code != http.StatusOK || h.Status != "ok" || h.Checks["store"] != "ok" || h.Checks["relay"] != "ok" {
		t.Fatalf("readyz of a working store: %d %+v, want 200 ok", code, h)
	}
	broken.Store(true)
	code, got := getHealth(t, srv.URL+"/readyz")
	if code != http.StatusServiceUnavailable || got.Status != "unavailable" ||
		!strings.Contains(got.Checks["store"], "no space left") || got.Checks["relay"] != "ok" {
		t.Fatalf("readyz of a store that cannot commit: %d %+v, want 503 naming the store", code, got)
	}
	if code, h := getHealth(t, srv.URL+"/healthz"); code != http.StatusOK || h.Status != "ok" {
		t.Fatalf("healthz while the store fails: %d %+v, want 200", code, h)
	}
	broken.Store(false)
	if code, h := getHealth(t, srv.URL+"/readyz"); code != http.StatusOK {
		t.Fatalf("readyz after the store recovered: %d %+v, want 200", code, h)
	}
	relayRunning.Store(false)
	if code, h := getHealth(t, srv.URL+"/readyz"); code != http.StatusServiceUnavailable || h.Checks["relay"] != "not running" || h.Checks["store"] != "ok" {
		t.Fatalf("readyz with the relay stopped: %d %+v, want 503 naming the relay", code, h)
	}
	// A store that hangs is not ready either.
	blocked := make(chan struct{})
	defer close(blocked)
	h2, err := api.NewOps(api.OpsConfig{Gatherer: reg, CheckTimeout: 50 * time.Millisecond, Ready: []api.Check{
		{Name: "store", Run: func(context.Context) error { <-blocked; return nil }},
	}})
	if err != nil {
		t.Fatal(err)
	}
	srv2 := httptest.NewServer(h2)
	defer srv2.Close()
	if code, h := getHealth(t, srv2.URL+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(h.Checks["store"], "no answer") {
		t.Fatalf("readyz with a hanging store: %d %+v, want 503", code, h)
	}
	// POST is not a health check.
	resp, err := http.Post(srv.URL+"/readyz", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /readyz: %d, want 405", resp.StatusCode)
	}
}
