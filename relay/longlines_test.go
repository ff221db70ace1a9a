package relay

import (
	"bytes"
	"io"
	"mime/quotedprintable"
	"strings"
	"testing"
)

// FuzzFitLines: fitLines never fails on what intake stored; a message
// without long lines comes back as it is; one long-lined single-part
// body comes back within the limit and decodes to the same bytes.
func FuzzFitLines(f *testing.F) {
	long := strings.Repeat("x", 1200)
	for _, s := range []string{
		"Subject: a\r\n\r\nshort\r\n",
		"Subject: a\r\n\r\n" + long + "\r\n",
		"Subject: a\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" + long + "=\r\n",
		"Content-Type: multipart/mixed; boundary=x\r\n\r\npre\r\n--x\r\n\r\n" + long + "\r\n--x\r\nContent-Type: text/plain\r\n\r\nok\r\n--x--\r\nepi\r\n",
		"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n\r\n" + long,
		"Content-Type: multipart/mixed; boundary=\"\"\r\n\r\n" + long,
		"Content-Transfer-Encoding: base64\r\n\r\n" + strings.Repeat("QUJD", 300) + "\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		out := fitLines(raw)
		if !hasLongLine(raw) && !bytes.Equal(out, raw) {
			t.Fatalf("a message without long lines changed:\n%q\n%q", raw, out)
		}
		header, body, ok := bytes.Cut(raw, []byte("\r\n\r\n"))
		if !ok || hasLongLine(header) || bytes.Contains(bytes.ToLower(header), []byte("content-")) || !hasLongLine(body) {
			return
		}
		if hasLongLine(out) {
			t.Fatalf("a plain body is still over the limit:\n%q", out)
		}
		_, got, _ := bytes.Cut(out, []byte("\r\n\r\n"))
		decoded, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(got)))
		if err != nil {
			t.Fatal(err)
		}
		want := bytes.ReplaceAll(bytes.ReplaceAll(body, []byte("\r\n"), []byte("\n")), []byte("\n"), []byte("\r\n"))
		if !bytes.Equal(bytes.TrimRight(decoded, " \t\r\n"), bytes.TrimRight(want, " \t\r\n")) {
			t.Fatalf("decoded body differs:\n%q\n%q", decoded, body)
		}
	})
}
