package api_test

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

type bounceOut struct {
	ID            int64
	Type          string
	TypeCode      int
	Name          string
	Tag           string
	MessageID     string
	ServerID      int64
	MessageStream string
	Description   string
	Details       string
	Email         string
	From          string
	BouncedAt     time.Time
	DumpAvailable bool
	Inactive      bool
	CanActivate   bool
	Subject       string
	Content       *string
}

type bounceList struct {
	TotalCount int
	Bounces    []bounceOut
}

func (f *fixture) bounces(t *testing.T, token, query string) bounceList {
	t.Helper()
	var l bounceList
	status, body := f.server(http.MethodGet, "/bounces?"+query, token, nil)
	decodeInto(t, status, body, &l)
	return l
}

// rcpt tries RCPT TO on server token's SMTP session and returns its error.
func (e *env) rcpt(token, to string) error {
	e.T.Helper()
	c, err := smtp.Dial(e.SMTP)
	if err != nil {
		e.T.Fatal(err)
	}
	defer c.Close()
	if err := c.Auth(sasl.NewPlainClient("", token, token)); err != nil {
		e.T.Fatal(err)
	}
	if err := c.Mail("app@example.com", nil); err != nil {
		e.T.Fatal(err)
	}
	return c.Rcpt(to, nil)
}

func TestBounces(t *testing.T) {
	f := newFixture(t)
	l := f.bounces(t, f.tokA, "count=10&offset=0")
	if l.TotalCount != 2 || len(l.Bounces) != 2 {
		t.Fatalf("bounces %+v", l)
	}
	// Both bounces came from one attempt; newest first is the order they
	// were filed in, reversed.
	byEmail := map[string]bounceOut{}
	for _, b := range l.Bounces {
		byEmail[b.Email] = b
	}
	hard, soft := byEmail["nobody@example.net"], byEmail["full@example.org"]
	bl := f.bounces(t, f.tokB, "count=10&offset=0")
	if bl.TotalCount != 1 {
		t.Fatalf("B's bounces %+v", bl)
	}
	lost := bl.Bounces[0]

	t.Run("list", func(t *testing.T) {
		status, body := f.server(http.MethodGet, "/bounces?count=10&offset=0&type=HardBounce", f.tokA, nil)
		golden(t, "bounces_list", body)
		_ = status
		if hard.ID <= 0 || hard.ID >= 1<<53 || hard.Type != "HardBounce" || hard.TypeCode != 1 || hard.Name != "Hard bounce" ||
			hard.Tag != "welcome" || hard.MessageID != f.again || hard.ServerID != f.A.ID || hard.MessageStream != "outbound" ||
			hard.Description == "" || !strings.Contains(hard.Details, "550 5.1.1") || hard.From != "app@example.com" ||
			hard.BouncedAt.IsZero() || !hard.DumpAvailable || !hard.Inactive || !hard.CanActivate ||
			hard.Subject != "Welcome again" || hard.Content != nil {
			t.Errorf("hard bounce %+v", hard)
		}
		if soft.Type != "SoftBounce" || soft.TypeCode != 4096 || soft.Name != "Soft bounce" || soft.Inactive || soft.CanActivate ||
			!strings.Contains(soft.Details, "552 5.2.2") {
			t.Errorf("soft bounce %+v", soft)
		}
		if l.Bounces[0].ID == l.Bounces[1].ID || lost.ID == hard.ID || lost.ID == soft.ID {
			t.Errorf("IDs collide: %d %d %d", hard.ID, soft.ID, lost.ID)
		}
	})

	t.Run("filters", func(t *testing.T) {
		today := time.Now().UTC().Format("2006-01-02")
		tomorrow := time.Now().UTC().Add(24 * time.Hour).Format("2006-01-02")
		for q, want := range map[string][]int64{
			"type=HardBounce":                 {hard.ID},
			"type=softbounce":                 {soft.ID},
			"type=Transient":                  nil,
			"inactive=true":                   {hard.ID},
			"inactive=false":                  {soft.ID},
			"emailFilter=nobody":              {hard.ID},
			"emailFilter=EXAMPLE.ORG":         {soft.ID},
			"emailFilter=example":             {hard.ID, soft.ID},
			"tag=welcome":                     {hard.ID, soft.ID},
			"tag=invoice":                     nil,
			"messageID=" + f.again:            {hard.ID, soft.ID},
			"messageID=" + f.welcome:          nil,
			"messageID=" + f.lost:             nil, // B's
			"fromdate=" + today:               {hard.ID, soft.ID},
			"todate=" + today:                 {hard.ID, soft.ID},
			"fromdate=" + tomorrow:            nil,
			"type=HardBounce&inactive=false":  nil,
			"emailFilter=nobody2@example.org": nil, // B's
		} {
			got := f.bounces(t, f.tokA, "count=10&offset=0&"+q)
			if got.TotalCount != len(want) || len(got.Bounces) != len(want) {
				t.Errorf("%s: %+v, want %v", q, got, want)
				continue
			}
			gotIDs := map[int64]bool{}
			for _, b := range got.Bounces {
				gotIDs[b.ID] = true
			}
			for _, id := range want {
				if !gotIDs[id] {
					t.Errorf("%s: %d missing", q, id)
				}
			}
		}
	})

	t.Run("paging", func(t *testing.T) {
		p := f.bounces(t, f.tokA, "count=1&offset=1")
		if p.TotalCount != 2 || len(p.Bounces) != 1 || p.Bounces[0].ID != l.Bounces[1].ID {
			t.Errorf("count=1&offset=1: %+v", p)
		}
		p = f.bounces(t, f.tokA, "count=500&offset=9500")
		if p.TotalCount != 2 || len(p.Bounces) != 0 || p.Bounces == nil {
			t.Errorf("past the end: %+v", p)
		}
		for _, q := range []string{"", "count=1", "offset=0", "count=0&offset=0", "count=501&offset=0", "count=10&offset=-1",
			"count=500&offset=9501", "count=10&offset=0&type=Bogus", "count=10&offset=0&inactive=maybe",
			"count=10&offset=0&fromdate=today", "count=10&offset=0&fromdate=2024-02-02&todate=2024-02-01"} {
			status, body := f.server(http.MethodGet, "/bounces?"+q, f.tokA, nil)
			wantError(t, status, body, http.StatusUnprocessableEntity, 1000)
		}
	})

	t.Run("one", func(t *testing.T) {
		status, body := f.server(http.MethodGet, fmt.Sprint("/bounces/", hard.ID), f.tokA, nil)
		golden(t, "bounce", body)
		var b bounceOut
		decodeInto(t, status, body, &b)
		if b.Content == nil || !strings.Contains(*b.Content, "550 5.1.1") {
			t.Errorf("Content %v", b.Content)
		}
		b.Content = nil
		if b != hard {
			t.Errorf("GET /bounces/%d: %+v, listed %+v", hard.ID, b, hard)
		}
		status, body = f.server(http.MethodGet, fmt.Sprint("/bounces/", hard.ID, "/dump"), f.tokA, nil)
		var d struct{ Body string }
		decodeInto(t, status, body, &d)
		raw, err := f.Store.RawMessage(f.A.ID, f.again)
		if err != nil {
			t.Fatal(err)
		}
		if d.Body != string(raw) {
			t.Errorf("dump %q", d.Body)
		}
	})

	t.Run("deliverystats", func(t *testing.T) {
		status, body := f.server(http.MethodGet, "/deliverystats", f.tokA, nil)
		golden(t, "deliverystats", body)
		var s struct {
			InactiveMails int
			Bounces       []struct {
				Type  *string
				Name  string
				Count int
			}
		}
		decodeInto(t, status, body, &s)
		got := []string{}
		for _, b := range s.Bounces {
			typ := "-"
			if b.Type != nil {
				typ = *b.Type
			}
			got = append(got, fmt.Sprintf("%s/%s/%d", typ, b.Name, b.Count))
		}
		if s.InactiveMails != 1 || strings.Join(got, " ") != "-/All/2 HardBounce/Hard bounce/1 SoftBounce/Soft bounce/1" {
			t.Errorf("%d %v", s.InactiveMails, got)
		}
	})

	t.Run("not found", func(t *testing.T) {
		for _, id := range []string{"999", "0", "-1", "abc", "9007199254740993"} {
			for _, req := range [][2]string{{http.MethodGet, "/bounces/" + id}, {http.MethodGet, "/bounces/" + id + "/dump"}, {http.MethodPut, "/bounces/" + id + "/activate"}} {
				status, body := f.server(req[0], req[1], f.tokA, nil)
				wantError(t, status, body, http.StatusNotFound, 1001)
			}
		}
	})

	t.Run("isolation", func(t *testing.T) {
		missing := int64(1)
		for missing == hard.ID || missing == soft.ID || missing == lost.ID {
			missing++
		}
		for _, req := range [][2]string{{http.MethodGet, "/bounces/%d"}, {http.MethodGet, "/bounces/%d/dump"}, {http.MethodPut, "/bounces/%d/activate"}} {
			ms, mb := f.server(req[0], fmt.Sprintf(req[1], missing), f.tokB, nil)
			wantError(t, ms, mb, http.StatusNotFound, 1001)
			for _, id := range []int64{hard.ID, soft.ID} {
				status, body := f.server(req[0], fmt.Sprintf(req[1], id), f.tokB, nil)
				if status != ms || string(body) != string(mb) {
					t.Errorf("B %s %d: %d %s; missing: %d %s", req[1], id, status, body, ms, mb)
				}
			}
			status, body := f.server(req[0], fmt.Sprintf(req[1], lost.ID), f.tokA, nil)
			wantError(t, status, body, http.StatusNotFound, 1001)
			status, body = f.server(req[0], fmt.Sprintf(req[1], hard.ID), f.Inst.ServerToken, nil)
			wantError(t, status, body, http.StatusNotFound, 1001)
		}
		// B's activate did nothing to A's recipient.
		if _, found, _ := f.Store.Suppressed(f.A.ID, "nobody@example.net"); !found {
			t.Error("B's activate reactivated A's recipient")
		}
		var s struct{ InactiveMails int }
		status, body := f.server(http.MethodGet, "/deliverystats", f.tokB, nil)
		decodeInto(t, status, body, &s)
		if s.InactiveMails != 1 {
			t.Errorf("B's InactiveMails %d", s.InactiveMails)
		}
	})

	t.Run("activate", func(t *testing.T) {
		// Inactive: RCPT is refused on A, but the address is fine on B.
		err := f.rcpt(f.tokA, "nobody@example.net")
		var se *smtp.SMTPError
		if !errors.As(err, &se) || se.Code != 550 || se.EnhancedCode != (smtp.EnhancedCode{5, 1, 1}) {
			t.Fatalf("RCPT of an inactive recipient: %v", err)
		}
		if err := f.rcpt(f.tokB, "nobody@example.net"); err != nil {
			t.Fatalf("B's RCPT: %v", err)
		}

		status, body := f.server(http.MethodPut, fmt.Sprint("/bounces/", hard.ID, "/activate"), f.tokA, nil)
		golden(t, "bounce_activate", body)
		var a struct {
			Message string
			Bounce  bounceOut
		}
		decodeInto(t, status, body, &a)
		want := hard
		want.Inactive, want.CanActivate = false, false
		a.Bounce.Content = nil
		if a.Message != "OK" || a.Bounce != want {
			t.Errorf("activate: %+v\nwant %+v", a, want)
		}
		if err := f.rcpt(f.tokA, "nobody@example.net"); err != nil {
			t.Fatalf("RCPT after activation: %v", err)
		}
		if got := f.bounces(t, f.tokA, "count=10&offset=0&inactive=true"); got.TotalCount != 0 {
			t.Errorf("still inactive: %+v", got)
		}
		var s struct{ InactiveMails int }
		status, body = f.server(http.MethodGet, "/deliverystats", f.tokA, nil)
		decodeInto(t, status, body, &s)
		if s.InactiveMails != 0 {
			t.Errorf("InactiveMails %d", s.InactiveMails)
		}
		// Activating again is harmless.
		status, body = f.server(http.MethodPut, fmt.Sprint("/bounces/", hard.ID, "/activate"), f.tokA, nil)
		decodeInto(t, status, body, &a)
	})

	t.Run("tokens", func(t *testing.T) {
		for _, req := range [][2]string{{http.MethodGet, "/deliverystats"}, {http.MethodGet, "/bounces?count=1&offset=0"},
			{http.MethodGet, fmt.Sprint("/bounces/", hard.ID)}, {http.MethodGet, fmt.Sprint("/bounces/", hard.ID, "/dump")},
			{http.MethodPut, fmt.Sprint("/bounces/", hard.ID, "/activate")}} {
			status, body := f.server(req[0], req[1], "", nil)
			wantError(t, status, body, http.StatusUnauthorized, 10)
			status, body = f.account(req[0], req[1], f.Inst.AccountToken, nil)
			wantError(t, status, body, http.StatusUnauthorized, 10)
		}
	})
}
