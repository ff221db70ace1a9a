package tagrecord

import (
	"errors"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	fields, err := Parse(" v=STSv1 ;id = 2026 ; x=a=b;", "STSv1")
	if err != nil || len(fields) != 2 || fields[0] != (Field{"id", "2026"}) || fields[1] != (Field{"x", "a=b"}) {
		t.Errorf("Parse = %v, %v", fields, err)
	}
	for _, in := range []string{"", ";", "v=STSv2; id=1", "id=1; v=STSv1", "v=STSv1;; id=1", "v=STSv1; junk", "v=STSv1; =x"} {
		if f, err := Parse(in, "STSv1"); err == nil {
			t.Errorf("Parse(%q) = %v, want an error", in, f)
		}
	}
}

func TestFind(t *testing.T) {
	if got, err := Find([]string{"v=spf1 -all", "v=TLSRPTv1; rua=mailto:a@b"}, "TLSRPTv1"); err != nil || !strings.HasPrefix(got, "v=TLSRPTv1") {
		t.Errorf("Find = %q, %v", got, err)
	}
	for _, txts := range [][]string{nil, {"v=spf1 -all"}, {"v=TLSRPTv1; a=1", "v=TLSRPTv1; a=2"}} {
		if _, err := Find(txts, "TLSRPTv1"); !errors.Is(err, ErrNone) {
			t.Errorf("Find(%q) = %v, want ErrNone", txts, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add("v=STSv1; id=20160831085700Z;")
	f.Add("v=STSv1;id=a;;")
	f.Fuzz(func(t *testing.T, txt string) {
		fields, err := Parse(txt, "STSv1")
		if err != nil {
			return
		}
		for _, fl := range fields {
			if fl.Key == "" || strings.ContainsAny(fl.Key, ";") || strings.ContainsAny(fl.Value, ";") {
				t.Fatalf("%q: field %+v", txt, fl)
			}
		}
	})
}
