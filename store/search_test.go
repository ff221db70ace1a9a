package store_test

import (
	"testing"

	"github.com/postern/postern/store"
)

func TestParseBody(t *testing.T) {
	raw := "Subject: x\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\nSGVsbG8g\r\nd29ybGQ=\r\n" +
		"--b\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n<p>a=3Db</p>\r\n" +
		"--b\r\nContent-Type: image/png\r\nContent-Disposition: inline\r\n\r\nPNG\r\n" +
		"--b\r\nContent-Type: text/plain; name=\"=?utf-8?q?r=C3=A9sum=C3=A9.txt?=\"\r\n\r\nnotes\r\n" +
		"--b--\r\n"
	b := store.ParseBody([]byte(raw))
	if b.Text != "Hello world" || b.HTML != "<p>a=b</p>" || len(b.Attachments) != 2 || b.Attachments[0] != "attachment" || b.Attachments[1] != "résumé.txt" {
		t.Fatalf("%+v", b)
	}
	if names := store.AttachmentNames([]byte(raw)); len(names) != 2 {
		t.Fatalf("names %v", names)
	}
	if b := store.ParseBody([]byte("not a message")); b.Text != "" || b.Attachments != nil {
		t.Fatalf("garbage: %+v", b)
	}
	if b := store.ParseBody([]byte("Subject: x\r\n\r\nplain")); b.Text != "plain" {
		t.Fatalf("plain: %+v", b)
	}
}
