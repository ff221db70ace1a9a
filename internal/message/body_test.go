package message_test

import (
	"testing"

	"github.com/postern/postern/internal/message"
)

func TestParseBody(t *testing.T) {
	raw := "Subject: x\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\nSGVsbG8g\r\nd29ybGQ=\r\n" +
		"--b\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n<p>a=3Db</p>\r\n" +
		"--b\r\nContent-Type: image/png\r\nContent-Disposition: inline\r\n\r\nPNG\r\n" +
		"--b\r\nContent-Type: text/plain; name=\"=?utf-8?q?r=C3=A9sum=C3=A9.txt?=\"\r\n\r\nnotes\r\n" +
		"--b--\r\n"
	b := message.ParseBody([]byte(raw))
	if b.Text != "Hello world" || b.HTML != "<p>a=b</p>" || len(b.Attachments) != 2 || b.Attachments[0] != "attachment" || b.Attachments[1] != "résumé.txt" {
		t.Fatalf("%+v", b)
	}
	if names := message.AttachmentNames([]byte(raw)); len(names) != 2 {
		t.Fatalf("names %v", names)
	}
	if b := message.ParseBody([]byte("not a message")); b.Text != "" || b.Attachments != nil {
		t.Fatalf("garbage: %+v", b)
	}
	if b := message.ParseBody([]byte("Subject: x\r\n\r\nplain")); b.Text != "plain" {
		t.Fatalf("plain: %+v", b)
	}
}

// A text part in Latin-1 comes back as UTF-8, as do encoded words in it.
func TestParseBodyDecodesCharsets(t *testing.T) {
	raw := "Subject: x\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain; charset=ISO-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\nCaf\xe9 cr\xe8me\r\n" +
		"--b\r\nContent-Type: text/html; charset=windows-1252\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n<p>=80 5</p>\r\n" +
		"--b\r\nContent-Type: application/pdf; name=\"=?iso-8859-1?q?r=E9sum=E9.pdf?=\"\r\n\r\n%PDF\r\n" +
		"--b--\r\n"
	b := message.ParseBody([]byte(raw))
	if b.Text != "Café crème" || b.HTML != "<p>€ 5</p>" || len(b.Attachments) != 1 || b.Attachments[0] != "résumé.pdf" {
		t.Fatalf("%q %q %q", b.Text, b.HTML, b.Attachments)
	}
	// A charset nobody knows is kept as sent rather than dropped.
	b = message.ParseBody([]byte("Content-Type: text/plain; charset=x-unheard-of\r\n\r\nsame bytes"))
	if b.Text != "same bytes" {
		t.Fatalf("unknown charset: %q", b.Text)
	}
	if got := message.DecodeText("=?ISO-8859-1?Q?Caf=E9?= ok"); got != "Café ok" {
		t.Fatalf("DecodeText: %q", got)
	}
}
