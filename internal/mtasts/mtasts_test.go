package mtasts

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseRecord(t *testing.T) {
	good := map[string]string{
		"v=STSv1; id=20160831085700Z;": "20160831085700Z",
		"v=STSv1;id=abc":               "abc",
		"v=STSv1; id=abc; ext=1":       "abc",
		"v=STSv1;  id=A1b2  ;":         "A1b2",
	}
	for in, id := range good {
		rec, err := ParseRecord(in)
		if err != nil || rec.ID != id {
			t.Errorf("ParseRecord(%q) = %+v, %v; want id %q", in, rec, err, id)
		}
	}
	for _, in := range []string{"", "v=STSv1", "v=STSv2; id=a", "id=a; v=STSv1", "v=STSv1; id=", "v=STSv1; id=a-b",
		"v=STSv1; id=" + strings.Repeat("a", 33), "v=STSv1; junk"} {
		if rec, err := ParseRecord(in); err == nil {
			t.Errorf("ParseRecord(%q) = %+v, want an error", in, rec)
		}
	}
}

func TestFindRecord(t *testing.T) {
	if rec, err := FindRecord([]string{"google-site-verification=x", "v=STSv1; id=1"}); err != nil || rec.ID != "1" {
		t.Errorf("one record among others: %+v, %v", rec, err)
	}
	if _, err := FindRecord([]string{"v=spf1 -all"}); !errors.Is(err, ErrNoRecord) {
		t.Errorf("no record: %v, want ErrNoRecord", err)
	}
	if _, err := FindRecord([]string{"v=STSv1; id=1", "v=STSv1; id=2"}); !errors.Is(err, ErrNoRecord) {
		t.Errorf("two records: %v, want ErrNoRecord (RFC 8461 §3.1)", err)
	}
}

const enforce = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\n"

func TestParsePolicy(t *testing.T) {
	p, err := ParsePolicy(enforce)
	if err != nil {
		t.Fatal(err)
	}
	if p.Mode != ModeEnforce || p.MaxAge != 7*24*time.Hour || len(p.MX) != 2 {
		t.Fatalf("policy = %+v", p)
	}
	if got := strings.Join(p.Lines(), "|"); got != "version: STSv1|mode: enforce|mx: mail.example.com|mx: *.example.net|max_age: 604800" {
		t.Errorf("Lines = %s", got)
	}
	// LF line ends, unknown keys, a trailing dot.
	if p, err := ParsePolicy("version: STSv1\nmode: testing\nfoo: bar\nmx: MX.Example.org.\nmax_age: 86400\n"); err != nil || p.Mode != ModeTesting || p.MX[0] != "mx.example.org" {
		t.Errorf("lenient policy = %+v, %v", p, err)
	}
	if p, err := ParsePolicy("version: STSv1\nmode: none\nmax_age: 0\n"); err != nil || p.Mode != ModeNone {
		t.Errorf("mode none without mx = %+v, %v", p, err)
	}
	for name, in := range map[string]string{
		"no version":     "mode: enforce\nmx: a.b\nmax_age: 1\n",
		"wrong version":  "version: STSv2\nmode: enforce\nmx: a.b\nmax_age: 1\n",
		"no mode":        "version: STSv1\nmx: a.b\nmax_age: 1\n",
		"bad mode":       "version: STSv1\nmode: strict\nmx: a.b\nmax_age: 1\n",
		"no max_age":     "version: STSv1\nmode: enforce\nmx: a.b\n",
		"max_age > year": "version: STSv1\nmode: enforce\nmx: a.b\nmax_age: 31557601\n",
		"negative age":   "version: STSv1\nmode: enforce\nmx: a.b\nmax_age: -1\n",
		"no mx":          "version: STSv1\nmode: enforce\nmax_age: 1\n",
		"bad mx":         "version: STSv1\nmode: enforce\nmx: a.*.b\nmax_age: 1\n",
		"no colon":       "version: STSv1\nmode enforce\n",
		"html":           "<html><body>not found</body></html>",
	} {
		if p, err := ParsePolicy(in); err == nil {
			t.Errorf("%s: ParsePolicy = %+v, want an error", name, p)
		}
	}
}

func TestMatchMX(t *testing.T) {
	p, _ := ParsePolicy(enforce)
	for host, want := range map[string]bool{
		"mail.example.com":    true,
		"MAIL.example.com.":   true,
		"mx.example.com":      false,
		"a.example.net":       true,
		"example.net":         false,
		"a.b.example.net":     false,
		".example.net":        false,
		"mail.example.com.eu": false,
	} {
		if got := p.MatchMX(host); got != want {
			t.Errorf("MatchMX(%q) = %v, want %v", host, got, want)
		}
	}
}

// policyServer serves handler over HTTPS on loopback for the name
// mta-sts.example.com and returns a fetcher that reaches it.
func policyServer(t *testing.T, handler http.HandlerFunc) *Fetcher {
	t.Helper()
	srv := httptest.NewUnstartedServer(handler)
	srv.EnableHTTP2 = false
	srv.StartTLS()
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	var d net.Dialer
	client := NewClient(func(ctx context.Context, network, addr string) (net.Conn, error) {
		if host, _, _ := net.SplitHostPort(addr); host != "mta-sts.example.com" {
			t.Errorf("dialed %s", addr)
		}
		return d.DialContext(ctx, network, srv.Listener.Addr().String())
	})
	// httptest's certificate is for example.com and its subdomains.
	client.Transport.(*http.Transport).TLSClientConfig = &tls.Config{RootCAs: srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}
	p, _ := strconv.Atoi(port)
	return &Fetcher{Client: client, Port: p}
}

func TestFetch(t *testing.T) {
	var path string
	f := policyServer(t, func(w http.ResponseWriter, r *http.Request) {
		path = r.URL.Path
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte(enforce))
	})
	p, text, err := f.Fetch(context.Background(), "example.com")
	if err != nil {
		t.Fatal(err)
	}
	if path != "/.well-known/mta-sts.txt" || text != enforce || p.Mode != ModeEnforce {
		t.Errorf("fetched %s: %+v", path, p)
	}
}

func TestFetchRefusals(t *testing.T) {
	for name, h := range map[string]http.HandlerFunc{
		"redirect": func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "https://mta-sts.example.com/elsewhere", http.StatusFound)
		},
		"not found": func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) },
		"html": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.Write([]byte(enforce))
		},
		"too large": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.Write([]byte(enforce + strings.Repeat("x: y\n", MaxPolicySize/5)))
		},
	} {
		t.Run(name, func(t *testing.T) {
			f := policyServer(t, h)
			_, _, err := f.Fetch(context.Background(), "example.com")
			var fe *FetchError
			if !errors.As(err, &fe) {
				t.Errorf("Fetch = %v, want a FetchError", err)
			}
		})
	}
	t.Run("invalid", func(t *testing.T) {
		f := policyServer(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.Write([]byte("version: STSv1\nmode: enforce\n"))
		})
		_, _, err := f.Fetch(context.Background(), "example.com")
		var fe *FetchError
		if err == nil || errors.As(err, &fe) {
			t.Errorf("Fetch = %v, want a parse error, not a FetchError", err)
		}
	})
	t.Run("untrusted certificate", func(t *testing.T) {
		f := policyServer(t, func(w http.ResponseWriter, r *http.Request) {})
		f.Client.Transport.(*http.Transport).TLSClientConfig = nil // the system's roots
		if _, _, err := f.Fetch(context.Background(), "example.com"); err == nil {
			t.Error("a certificate from an unknown authority was accepted")
		}
	})
}

func FuzzParsePolicy(f *testing.F) {
	f.Add(enforce)
	f.Add("version: STSv1\nmode: none\nmax_age: 0\n")
	f.Fuzz(func(t *testing.T, text string) {
		p, err := ParsePolicy(text)
		if err != nil {
			return
		}
		// What parses, parses again from its lines to the same policy.
		again, err := ParsePolicy(strings.Join(p.Lines(), "\n"))
		if err != nil || again.Mode != p.Mode || again.MaxAge != p.MaxAge || len(again.MX) != len(p.MX) {
			t.Fatalf("%q: reparsed %+v, %v; was %+v", text, again, err, p)
		}
		p.MatchMX("mail.example.com")
	})
}

func FuzzParseRecord(f *testing.F) {
	f.Add("v=STSv1; id=20160831085700Z;")
	f.Add("v=STSv1;id=a;x=y")
	f.Fuzz(func(t *testing.T, txt string) {
		rec, err := ParseRecord(txt)
		if err == nil && (rec.ID == "" || len(rec.ID) > 32) {
			t.Fatalf("%q: accepted id %q", txt, rec.ID)
		}
	})
}
