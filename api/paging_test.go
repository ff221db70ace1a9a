package api_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// pagedRoutes are the requests that take Postmark's count and offset.
// Account routes use the operator's account token, server routes the
// server's.
var pagedRoutes = []struct {
	path   string
	server bool
}{
	{"/servers", false},
	{"/domains", false},
	{"/messages/outbound", true},
	{"/bounces", true},
}

// An offset near the integer limit used to overflow count+offset and
// panic while slicing the page; every paged route answers 422 with a
// Postmark error naming the parameter instead.
func TestPagingOutOfRange(t *testing.T) {
	e := newEnv(t, envOptions{})
	for _, rt := range pagedRoutes {
		for _, q := range []struct{ count, offset, names string }{
			{"1", "9223372036854775807", "offset"},
			{"500", "9223372036854775300", "offset"},
			{"9223372036854775807", "0", "count"},
			{"1", "-9223372036854775808", "offset"},
			{"1", "99999999999999999999", "offset"},
		} {
			path := rt.path + "?count=" + q.count + "&offset=" + q.offset
			var status int
			var body []byte
			if rt.server {
				status, body = e.server("GET", path, e.Inst.ServerToken, nil)
			} else {
				status, body = e.account("GET", path, e.Inst.AccountToken, nil)
			}
			if status != http.StatusUnprocessableEntity {
				t.Errorf("GET %s: status %d, want 422: %s", path, status, body)
				continue
			}
			var got struct {
				ErrorCode int
				Message   string
			}
			decodeInto(t, http.StatusOK, body, &got)
			if got.ErrorCode == 0 || !strings.Contains(got.Message, q.names) {
				t.Errorf("GET %s: %s, want an ErrorCode and a Message naming %s", path, body, q.names)
			}
		}
	}
}

// FuzzPaging sends count and offset through every paged route's real
// handler: the answer is a page or a Postmark error, never a panic or a
// 500.
func FuzzPaging(f *testing.F) {
	for i, s := range [][2]string{
		{"1", "0"}, {"500", "9500"}, {"1", "9223372036854775807"}, {"-1", "0"},
		{"0", "0"}, {"1", "-1"}, {"", ""}, {"1e3", "0x10"}, {"+5", " 1"},
		{"9223372036854775807", "9223372036854775807"}, {"501", "0"}, {"1", "2147483648"},
	} {
		f.Add(uint8(i), s[0], s[1])
	}
	fa := newFuzzAPI(f)
	f.Fuzz(func(t *testing.T, route uint8, count, offset string) {
		rt := pagedRoutes[int(route)%len(pagedRoutes)]
		path := rt.path + "?" + url.Values{"count": {count}, "offset": {offset}}.Encode()
		rec := fa.do("GET", path, "", nil, rt.server)
		checkAnswer(t, fmt.Sprintf("GET %s", path), rec)
	})
}
