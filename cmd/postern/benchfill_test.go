package main

import (
	"encoding/json"
	"github.com/postern/postern/internal/bench"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/internal/testutil/pgtest"
	"github.com/postern/postern/store"
	"github.com/postern/postern/store/bolt"
)

func fillJSON(t *testing.T, dir string, args ...string) (FillResult, string) {
	t.Helper()
	out, errOut, code := runPostern(t, dir, nil, append([]string{"bench", "fill", "-json"}, args...)...)
	if code != 0 {
		t.Fatalf("bench fill %q: exit %d\n%s", args, code, errOut)
	}
	var res FillResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	return res, errOut
}

// postern bench fill puts its messages in a store that serve then
// serves: spread over the servers and the days asked, Sandbox, so
// delivered; its token is fill-1's; a second run measures searches and
// purges what is older than -purge-older days, and only that.
func TestBenchFill(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, data := initialized(t, dir)
	res, errOut := fillJSON(t, dir, "-data", data, "-messages", "2000", "-servers", "10", "-days", "30", "-progress")
	if res.Messages != 2000 || res.Servers != 10 || res.Token == "" || res.FillPerSecond <= 0 || res.StoreBytes <= 0 {
		t.Errorf("result %+v", res)
	}
	if !strings.Contains(errOut, "2000/2000 messages") {
		t.Errorf("no progress on stderr: %q", errOut)
	}

	p := startPostern(t, dir, nil, "serve", "-smtp-addr", "127.0.0.1:0")
	send(t, p.listening(t, "smtp"), res.Token, "rcpt@example.net", "after the fill")
	p.stop(t)

	now := time.Now()
	count := func() (all, old int, servers []store.Server) {
		st, err := bolt.Open(bolt.Path(data), bolt.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		if err := st.Check(); err != nil {
			t.Errorf("store consistency: %v", err)
		}
		accounts, err := st.Accounts()
		if err != nil {
			t.Fatal(err)
		}
		srvs, err := st.ListServers(accounts[0].ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, srv := range srvs {
			if !strings.HasPrefix(srv.Name, "fill-") {
				continue
			}
			servers = append(servers, srv)
			r, err := st.SearchMessages(srv.ID, store.MessageQuery{})
			if err != nil {
				t.Fatal(err)
			}
			all += r.Total
			r, err = st.SearchMessages(srv.ID, store.MessageQuery{To: now.AddDate(0, 0, -15)})
			if err != nil {
				t.Fatal(err)
			}
			old += r.Total
			r, err = st.SearchMessages(srv.ID, store.MessageQuery{Statuses: []string{store.StatusQueued}})
			if err != nil || r.Total != 0 {
				t.Errorf("server %s: %d queued (%v)", srv.Name, r.Total, err)
			}
		}
		return all, old, servers
	}
	all, old, servers := count()
	if all != 2001 || len(servers) != 10 || old < 600 || old > 1400 {
		t.Fatalf("%d messages on %d fill servers, %d older than 15 days; want 2,001 on 10, about half", all, len(servers), old)
	}
	for _, srv := range servers {
		if srv.DeliveryType != store.DeliverySandbox {
			t.Errorf("server %s is %s", srv.Name, srv.DeliveryType)
		}
	}

	res, _ = fillJSON(t, dir, "-data", data, "-messages", "0", "-servers", "10", "-search", "50", "-purge-older", "15")
	if res.Token != "" || res.SearchP99Ms <= 0 || res.StatsP99Ms <= 0 || res.Purged != old || res.ProbeMaxMs <= 0 {
		t.Errorf("second run %+v; want %d purged", res, old)
	}
	for _, q := range bench.SearchQueries {
		if l, ok := res.SearchByQuery[q.Name]; !ok || l.P99Ms <= 0 || l.MaxMs < l.P50Ms {
			t.Errorf("search %q: %+v", q.Name, l)
		}
	}
	if all2, old2, _ := count(); old2 != 0 || all2 < all-old {
		t.Errorf("after the purge: %d messages, %d older than 15 days", all2, old2)
	}
}

func TestBenchFillPostgres(t *testing.T) {
	t.Parallel()
	dsn := pgtest.New(t)
	res, _ := fillJSON(t, t.TempDir(), "-store", dsn, "-messages", "300", "-servers", "5", "-search", "10", "-purge-older", "15", "-quiet")
	if res.Messages != 300 || res.Servers != 5 || res.Token == "" || res.SearchP99Ms <= 0 || res.Purged < 50 || res.Purged > 250 {
		t.Errorf("result %+v", res)
	}
}
