package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/internal/dkim"

	"github.com/postern/postern/api"
	"github.com/postern/postern/auth"
	"github.com/postern/postern/store"
	"github.com/postern/postern/store/bolt"
)

// decodeRoutes are the requests whose bodies the API decodes. Account
// routes use the operator's account token, server routes the server's.
var decodeRoutes = []struct {
	method, path string
	server       bool
}{
	{"POST", "/accounts", false},
	{"POST", "/account/tokens", false},
	{"POST", "/domains", false},
	{"PUT", "/domains/{dom}", false},
	{"POST", "/servers", false},
	{"PUT", "/servers/{srv}", false},
	{"POST", "/servers/{srv}/tokens", false},
	{"PUT", "/server", true},
}

// decodeSeeds are request bodies: realistic ones and tricky ones.
var decodeSeeds = []string{
	`{"Name":"staging","Color":"Blue","SmtpApiActivated":true,"DeliveryType":"Live"}`,
	`{"Name":"renamed","RateLimitPerMinute":100,"DailyQuota":1000,"RetentionDays":30}`,
	`{"Name":"example.org"}`,
	`{"Name":"acme","Role":"Admin"}`,
	`{"Role":"Operator"}`,
	`{"ReturnPathDomain":"bounces.example.org"}`,
	`{"Name":null,"Color":123,"SmtpApiActivated":"yes"}`,
	`{"RateLimitPerMinute":-1,"DailyQuota":1e300,"RetentionDays":9999999999999999999999}`,
	`{"Name":"` + strings.Repeat("x", 300) + `"}`,
	`{"Name":"\u0000\ud800"}`,
	`{"Name":"a","Name":"b"}`,
	`[]`, `null`, `""`, `0`, `{}`, `{`, `{"Name":`, ``, "\xff\xfe", `{"Name":"x"} trailing`,
	`{"DeliveryType":"Sandbox","Color":"","Name":" "}`,
	`{"Name":"UPPER.Example.ORG."}`,
	`{"Name":"-bad-.example"}`,
	`{"Name":"xn--bcher-kva.example"}`,
}

// FuzzDecodeJSON sends each request that has a body through the real
// handlers. Whatever the body, the answer is never a 500: it is a
// success with a JSON body, or a Postmark error body (ErrorCode and a
// Message).
func FuzzDecodeJSON(f *testing.F) {
	for i, s := range decodeSeeds {
		f.Add(uint8(i%len(decodeRoutes)), []byte(s))
		f.Add(uint8(i*3+1)%uint8(len(decodeRoutes)), []byte(s))
	}
	fa := newFuzzAPI(f)

	f.Fuzz(func(t *testing.T, route uint8, body []byte) {
		rt := decodeRoutes[int(route)%len(decodeRoutes)]
		ct := "application/json"
		if route >= 128 {
			ct = "application/json; charset=\"utf-8"
		}
		path := strings.NewReplacer("{dom}", fmt.Sprint(fa.domainID), "{srv}", fmt.Sprint(fa.serverID)).Replace(rt.path)
		rec := fa.do(rt.method, path, ct, body, rt.server)
		checkAnswer(t, rt.method+" "+path+fmt.Sprintf(" %q", body), rec)
	})
}

// fuzzAPI is the real API over a store in a temporary directory, with
// the operator account, its Sandbox server and one domain, for fuzz
// targets that send requests through the handlers.
type fuzzAPI struct {
	do                 func(method, path, ct string, body []byte, server bool) *httptest.ResponseRecorder
	serverID, domainID int64
}

func newFuzzAPI(f *testing.F) fuzzAPI {
	f.Helper()
	st, err := bolt.Open(filepath.Join(f.TempDir(), bolt.FileName), bolt.Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() {
		if err := st.Check(); err != nil {
			f.Errorf("store consistency: %v", err)
		}
		st.Close()
	})
	inst, err := auth.Init(st, time.Now())
	if err != nil {
		f.Fatal(err)
	}
	// One set of real keys, reused: making RSA keys per input would be
	// all the fuzzer did.
	keys, err := dkim.GenerateKeys("template.example")
	if err != nil {
		f.Fatal(err)
	}
	gen := func(domain string) ([]store.DKIMKey, error) {
		var out []store.DKIMKey
		for _, k := range keys.List() {
			out = append(out, store.DKIMKey{Algorithm: k.Algorithm, Selector: k.Selector, PrivateKey: k.PrivateKey,
				Host: k.Selector + "._domainkey." + domain, TextValue: k.TextValue})
		}
		return out, nil
	}
	a, err := api.New(api.Config{Store: st, Auth: auth.NewAuthenticator(st), Resolver: emptyResolver{}, GenerateKeys: gen, PublicURL: "http://postern.test"})
	if err != nil {
		f.Fatal(err)
	}
	do := func(method, path, ct string, body []byte, server bool) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, path, bytes.NewReader(body))
		req.Header.Set("Content-Type", ct)
		req.Header.Set("Accept", "application/json")
		if server {
			req.Header.Set(serverHeader, inst.ServerToken)
		} else {
			req.Header.Set(accountHeader, inst.AccountToken)
		}
		rec := httptest.NewRecorder()
		a.ServeHTTP(rec, req)
		return rec
	}
	rec := do("POST", "/domains", "application/json", []byte(`{"Name":"fuzz.example"}`), false)
	var dom struct{ ID int64 }
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &dom) != nil || dom.ID == 0 {
		f.Fatalf("creating the domain: %d %s", rec.Code, rec.Body)
	}
	return fuzzAPI{do: do, serverID: inst.ServerID, domainID: dom.ID}
}

// checkAnswer fails t unless rec is what every answer must be: never a
// 500, always JSON, and for an error a Postmark body (ErrorCode and a
// Message).
func checkAnswer(t *testing.T, what string, rec *httptest.ResponseRecorder) {
	t.Helper()
	if rec.Code >= 500 {
		t.Fatalf("%s: %d %s", what, rec.Code, rec.Body)
	}
	if !json.Valid(rec.Body.Bytes()) {
		t.Fatalf("%s: %d with a body that is not JSON: %q", what, rec.Code, rec.Body)
	}
	if rec.Code >= 400 {
		var e struct {
			ErrorCode *int
			Message   string
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.ErrorCode == nil || e.Message == "" {
			t.Fatalf("%s: %d without a Postmark error body: %s", what, rec.Code, rec.Body)
		}
	}
}

// TestWriteAPIFuzzSeeds writes the seeds of FuzzDecodeJSON into
// testdata/fuzz:
//
//	POSTERN_WRITE_FUZZ_SEEDS=1 go test -run TestWriteAPIFuzzSeeds ./api/
func TestWriteAPIFuzzSeeds(t *testing.T) {
	if os.Getenv("POSTERN_WRITE_FUZZ_SEEDS") == "" {
		t.Skip("set POSTERN_WRITE_FUZZ_SEEDS=1 to rewrite the seed corpora")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzDecodeJSON")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, s := range decodeSeeds {
		for r := range decodeRoutes {
			name := filepath.Join(dir, fmt.Sprintf("seed-%02d-route-%d", i, r))
			if err := os.WriteFile(name, fmt.Appendf(nil, "go test fuzz v1\nbyte(%q)\n[]byte(%q)\n", byte(r), s), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// emptyResolver finds no TXT records.
type emptyResolver struct{}

func (emptyResolver) LookupTXT(context.Context, string) ([]string, error) { return nil, nil }
