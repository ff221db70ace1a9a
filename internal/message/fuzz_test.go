package message_test

import (
	"bytes"
	"slices"
	"testing"

	"github.com/postern/postern/internal/message"
)

var fuzzSeeds = []string{
	"From: a@example.com\r\nSubject: hi\r\n\r\nbody\r\n",
	"From: a@example.com\nSubject: folded\n  on two lines\n\nbody\n",
	"Subject: x\r\nnot a field\r\nrest\r\n",
	"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\r\nCaf\xe9\r\n--b\r\nContent-Disposition: attachment; filename=a.pdf\r\n\r\nx\r\n--b--\r\n",
	"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n",
	"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\nSGVs bG8=\r\n",
	"",
	":\r\n\r\n",
}

// FuzzSplit: the fields and the body are raw's own bytes, in order, and
// every field reads.
func FuzzSplit(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		h := message.Split(raw)
		var joined []byte
		for _, fl := range h.Fields {
			if !bytes.HasPrefix(fl.Raw, []byte(fl.Name+":")) {
				t.Fatalf("field %q does not start with its name %q", fl.Raw, fl.Name)
			}
			_ = fl.Value()
			joined = append(joined, fl.Raw...)
		}
		if !bytes.HasPrefix(raw, joined) || !bytes.HasSuffix(raw, h.Body) {
			t.Fatalf("fields %q and body %q are not raw's %q", joined, h.Body, raw)
		}
		if len(joined)+len(h.Body) > len(raw) {
			t.Fatalf("fields and body overlap in %q", raw)
		}
	})
}

// FuzzParseBody: any message reads without a panic, and the attachments
// listed at intake are those the API shows.
func FuzzParseBody(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		b := message.ParseBody(raw)
		if names := message.AttachmentNames(raw); !slices.Equal(names, b.Attachments) {
			t.Fatalf("AttachmentNames %q, ParseBody %q", names, b.Attachments)
		}
		for _, a := range message.ParseAddressList(string(raw)) {
			_ = a
		}
		_ = message.DecodeText(string(raw))
	})
}
