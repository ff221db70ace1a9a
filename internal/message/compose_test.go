package message

import (
	"bytes"
	"io"
	"net/mail"
	"strings"
	"testing"
	"time"

	gomessage "github.com/emersion/go-message"
	gomail "github.com/emersion/go-message/mail"
)

type part struct {
	contentType, disposition, filename, cid, encoding, body string
}

// parts reads raw with go-message and lists its leaf parts, decoded.
func parts(t *testing.T, raw []byte) (gomail.Header, []part, []string) {
	t.Helper()
	e, err := gomessage.Read(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	var out []part
	var tree []string
	err = e.Walk(func(path []int, p *gomessage.Entity, err error) error {
		if err != nil {
			return err
		}
		mt, _, _ := p.Header.ContentType()
		tree = append(tree, strings.Repeat(" ", len(path))+mt)
		if strings.HasPrefix(mt, "multipart/") {
			return nil
		}
		disp, params, _ := p.Header.ContentDisposition()
		body, _ := io.ReadAll(p.Body)
		out = append(out, part{mt, disp, params["filename"], p.Header.Get("Content-Id"), p.Header.Get("Content-Transfer-Encoding"), string(body)})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return gomail.Header{Header: e.Header}, out, tree
}

func TestCompose(t *testing.T) {
	long := strings.Repeat("a long line of HTML ", 80)
	raw, err := Compose(Email{
		From:    &mail.Address{Name: "Café App", Address: "app@example.com"},
		To:      []*mail.Address{{Address: "a@example.net"}, {Name: "Bé", Address: "b@example.net"}},
		Cc:      []*mail.Address{{Address: "c@example.net"}},
		ReplyTo: []*mail.Address{{Address: "help@example.com"}},
		Subject: "Grüße", TextBody: "Hello\nthere é", HTML: "<p>Hi <img src=\"cid:logo\"></p>" + long,
		Headers: []HeaderField{{"X-Custom", "ünï"}},
		Attachments: []Attachment{
			{Name: "report.pdf", Content: []byte("%PDF-1.4\n"), ContentType: "application/pdf"},
			{Name: "logo.png", Content: []byte{0x89, 'P', 'N', 'G', 0}, ContentType: "image/png", ContentID: "cid:logo"},
		},
		MessageID: "<id@postern.test>", Date: time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC), Received: "Received: from api by postern.test",
	})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(raw, []byte("Received: from api by postern.test\r\n")) {
		t.Errorf("no Received on top:\n%.200s", raw)
	}
	for _, line := range strings.Split(string(raw), "\r\n") {
		if len(line) > 998 {
			t.Fatalf("a line of %d characters", len(line))
		}
	}
	if bytes.Count(raw, []byte("\n")) != bytes.Count(raw, []byte("\r\n")) {
		t.Error("bare line feeds")
	}
	h, got, tree := parts(t, raw)
	if want := "multipart/mixed| multipart/related|  multipart/alternative|   text/plain|   text/html|  image/png| application/pdf"; strings.Join(tree, "|") != want {
		t.Errorf("tree %q, want %q", strings.Join(tree, "|"), want)
	}
	if s, _ := h.Subject(); s != "Grüße" {
		t.Errorf("Subject %q", s)
	}
	if from, _ := h.AddressList("From"); len(from) != 1 || from[0].Name != "Café App" {
		t.Errorf("From %v", from)
	}
	if to, _ := h.AddressList("To"); len(to) != 2 || to[1].Name != "Bé" {
		t.Errorf("To %v", to)
	}
	if h.Get("Bcc") != "" || h.Get("Reply-To") != "<help@example.com>" || h.Get("Message-Id") != "<id@postern.test>" {
		t.Errorf("header %v", h)
	}
	if v, _ := h.Text("X-Custom"); v != "ünï" {
		t.Errorf("X-Custom %q", v)
	}
	want := []part{
		{"text/plain", "", "", "", "quoted-printable", "Hello\r\nthere é"},
		{"text/html", "", "", "", "quoted-printable", "<p>Hi <img src=\"cid:logo\"></p>" + long},
		{"image/png", "inline", "logo.png", "<logo>", "base64", "\x89PNG\x00"},
		{"application/pdf", "attachment", "report.pdf", "", "base64", "%PDF-1.4\n"},
	}
	if len(got) != len(want) {
		t.Fatalf("parts %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("part %d: %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestComposeSingleParts(t *testing.T) {
	for _, c := range []struct {
		text, html, want, enc string
	}{
		{"plain ascii", "", "text/plain", "7bit"},
		{"", "<b>only html</b>", "text/html", "7bit"},
	} {
		raw, err := Compose(Email{From: &mail.Address{Address: "a@example.com"}, To: []*mail.Address{{Address: "b@example.net"}}, TextBody: c.text, HTML: c.html, Date: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		_, got, tree := parts(t, raw)
		if len(tree) != 1 || tree[0] != c.want || got[0].encoding != c.enc {
			t.Errorf("%q/%q: tree %v, encoding %q", c.text, c.html, tree, got[0].encoding)
		}
	}
}

func TestCheckHeader(t *testing.T) {
	for _, h := range []HeaderField{{"X-Ok", "value"}, {"List-Id", "<list.example.com>"}} {
		if err := CheckHeader(h); err != nil {
			t.Errorf("%v: %v", h, err)
		}
	}
	for _, h := range []HeaderField{{"", "x"}, {"X Bad", "x"}, {"X-Inject", "a\r\nBcc: evil@example.org"}, {"Content-Type", "text/html"},
		{"bcc", "x@example.org"}, {"From", "x@example.org"}, {"X-Ünï", "x"}} {
		if err := CheckHeader(h); err == nil {
			t.Errorf("%v accepted", h)
		}
	}
}
