package message_test

import (
	"reflect"
	"slices"
	"testing"

	"github.com/postern/postern/internal/message"
)

func TestSplit(t *testing.T) {
	tests := []struct {
		name             string
		raw              string
		fields           []string // raw bytes of each field
		names            []string
		body             string
		missingSeparator bool
	}{
		{
			name:   "CRLF",
			raw:    "From: a@example.com\r\nSubject: hi\r\n\r\nbody\r\n",
			fields: []string{"From: a@example.com\r\n", "Subject: hi\r\n"},
			names:  []string{"From", "Subject"},
			body:   "body\r\n",
		},
		{
			name:   "bare LF",
			raw:    "From: a@example.com\nSubject: hi\n\nbody\n",
			fields: []string{"From: a@example.com\n", "Subject: hi\n"},
			names:  []string{"From", "Subject"},
			body:   "body\n",
		},
		{
			name:   "folded, CRLF and LF",
			raw:    "Subject: one\r\n two\r\n\tthree\r\nTo: a@example.com,\n b@example.com\n\r\nbody",
			fields: []string{"Subject: one\r\n two\r\n\tthree\r\n", "To: a@example.com,\n b@example.com\n"},
			names:  []string{"Subject", "To"},
			body:   "body",
		},
		{
			name:             "no blank line",
			raw:              "From: a@example.com\nSubject: hi\nThis is the body.\n",
			fields:           []string{"From: a@example.com\n", "Subject: hi\n"},
			names:            []string{"From", "Subject"},
			body:             "This is the body.\n",
			missingSeparator: true,
		},
		{
			name:   "only headers, no final newline",
			raw:    "From: a@example.com\r\nSubject: hi",
			fields: []string{"From: a@example.com\r\n", "Subject: hi"},
			names:  []string{"From", "Subject"},
		},
		{
			name:             "non-header line in the header section",
			raw:              "From: a@example.com\r\nthis is not a header\r\nSubject: hi\r\n\r\nbody\r\n",
			fields:           []string{"From: a@example.com\r\n"},
			names:            []string{"From"},
			body:             "this is not a header\r\nSubject: hi\r\n\r\nbody\r\n",
			missingSeparator: true,
		},
		{
			name:             "space before the colon",
			raw:              "From: a@example.com\r\nBcc : b@example.com\r\n\r\nbody",
			fields:           []string{"From: a@example.com\r\n"},
			names:            []string{"From"},
			body:             "Bcc : b@example.com\r\n\r\nbody",
			missingSeparator: true,
		},
		{
			name:             "continuation first",
			raw:              " folded: x\r\nFrom: a@example.com\r\n\r\n",
			body:             " folded: x\r\nFrom: a@example.com\r\n\r\n",
			missingSeparator: true,
		},
		{
			name:   "empty value",
			raw:    "X-Empty:\r\n\r\n",
			fields: []string{"X-Empty:\r\n"},
			names:  []string{"X-Empty"},
		},
		{
			name: "empty",
			raw:  "",
		},
		{
			name: "only a line ending",
			raw:  "\r\n",
		},
		{
			name: "blank line first",
			raw:  "\r\nFrom: a@example.com\r\n",
			body: "From: a@example.com\r\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := message.Split([]byte(tc.raw))
			var fields, names []string
			for _, f := range p.Fields {
				fields = append(fields, string(f.Raw))
				names = append(names, f.Name)
			}
			if !slices.Equal(fields, tc.fields) {
				t.Errorf("fields = %q, want %q", fields, tc.fields)
			}
			if !slices.Equal(names, tc.names) {
				t.Errorf("names = %q, want %q", names, tc.names)
			}
			if string(p.Body) != tc.body {
				t.Errorf("body = %q, want %q", p.Body, tc.body)
			}
			if p.MissingSeparator != tc.missingSeparator {
				t.Errorf("missingSeparator = %v, want %v", p.MissingSeparator, tc.missingSeparator)
			}
		})
	}
}

func TestHeaderFieldValue(t *testing.T) {
	for raw, want := range map[string]string{
		"Subject: hello\r\n":                  "hello",
		"Subject:hello":                       "hello",
		"Subject:   spaced   \r\n":            "spaced",
		"Subject: one\r\n two\r\n\tthree\r\n": "one two\tthree",
		"Subject: one\n two\n":                "one two",
		"Subject:\r\n":                        "",
		"Subject: \r\n \r\n":                  "",
	} {
		p := message.Split([]byte(raw))
		if len(p.Fields) != 1 {
			t.Fatalf("%q: %d fields", raw, len(p.Fields))
		}
		if got := p.Fields[0].Value(); got != want {
			t.Errorf("value of %q = %q, want %q", raw, got, want)
		}
	}
}

func TestParseAddressList(t *testing.T) {
	for v, want := range map[string][]message.Address{
		"":                                      nil,
		"   ":                                   nil,
		"a@example.com":                         {{Email: "a@example.com", Name: ""}},
		`"Doe, Jane" <jane@example.com>, b@x.y`: {{Email: "jane@example.com", Name: "Doe, Jane"}, {Email: "b@x.y", Name: ""}},
		"undisclosed-recipients:;":              nil,
		"junk, ,more junk":                      {{Email: "junk", Name: ""}, {Email: "more junk", Name: ""}},
	} {
		got := message.ParseAddressList(v)
		if !reflect.DeepEqual(got, want) && !(len(got) == 0 && len(want) == 0) {
			t.Errorf("message.ParseAddressList(%q) = %q, want %q", v, got, want)
		}
	}
}
