// Package client calls Postern's HTTP API with one token, in the API's
// own request and response types: the CLI's client, and the tests'.
package client

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/postern/postern/api"
)

// The headers a token goes in.
const (
	AccountToken = "X-Postmark-Account-Token"
	ServerToken  = "X-Postmark-Server-Token"
)

// DefaultURL is where postern serve's API listens by default.
const DefaultURL = "http://127.0.0.1:8080"

// Timeout bounds one request (verifyDkim looks records up in DNS).
const Timeout = time.Minute

// maxAnswer bounds the answer read.
const maxAnswer = 64 << 20

// Client calls the API at one base URL with one token.
type Client struct {
	base, header, token string
	http                *http.Client
}

// New returns a client of the API at base (an http:// or https:// URL)
// that sends token in header (AccountToken or ServerToken).
func New(base, header, token string) (*Client, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("the API URL %q is not an http:// or https:// URL", base)
	}
	return &Client{base: strings.TrimSuffix(base, "/"), header: header, token: token, http: &http.Client{Timeout: Timeout}}, nil
}

// Base is the API's base URL.
func (c *Client) Base() string { return c.base }

// Error is an answer other than 200.
type Error struct {
	Method, Path string
	Status       int
	// API is the API's error body, when it sent one.
	API  api.Error
	Body []byte
}

func (e *Error) Error() string {
	if e.API.Message != "" {
		return fmt.Sprintf("%s (HTTP %d, ErrorCode %d)", e.API.Message, e.Status, e.API.ErrorCode)
	}
	return fmt.Sprintf("%s %s: HTTP %d: %.200s", e.Method, e.Path, e.Status, e.Body)
}

// Call sends a request, with body as JSON unless nil, and returns the
// body of a 200 answer; any other answer is an *Error.
func (c *Client) Call(method, path string, body any) ([]byte, error) {
	var r io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		r = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, c.base+path, r)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set(c.header, c.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return nil, fmt.Errorf("reading the answer of %s %s: %w", method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		e := &Error{Method: method, Path: path, Status: resp.StatusCode, Body: data}
		_ = json.Unmarshal(data, &e.API)
		return nil, e
	}
	return data, nil
}

// Do is Call that decodes the answer into out, and returns it as well.
func (c *Client) Do(method, path string, body, out any) ([]byte, error) {
	data, err := c.Call(method, path, body)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, out); err != nil {
		return nil, fmt.Errorf("the answer of %s %s is not what was expected: %w", method, path, err)
	}
	return data, nil
}

// Domains returns every domain of the account, page after page.
func (c *Client) Domains() ([]api.DomainSummary, error) {
	const page = 500
	var all []api.DomainSummary
	for offset := 0; ; offset += page {
		var list api.DomainList
		if _, err := c.Do(http.MethodGet, fmt.Sprintf("/domains?count=%d&offset=%d", page, offset), nil, &list); err != nil {
			return nil, err
		}
		all = append(all, list.Domains...)
		if len(list.Domains) < page || len(all) >= list.TotalCount {
			return all, nil
		}
	}
}

// Servers returns every server of the account whose name contains name
// (every server when name is ""), page after page.
func (c *Client) Servers(name string) ([]api.Server, error) {
	const page = 500
	var all []api.Server
	for offset := 0; ; offset += page {
		path := fmt.Sprintf("/servers?count=%d&offset=%d", page, offset)
		if name != "" {
			path += "&name=" + url.QueryEscape(name)
		}
		var list api.ServerList
		if _, err := c.Do(http.MethodGet, path, nil, &list); err != nil {
			return nil, err
		}
		all = append(all, list.Servers...)
		if len(list.Servers) < page || len(all) >= list.TotalCount {
			return all, nil
		}
	}
}

// TransferServer moves server id to the account accountID, with its
// data (POST /servers/{id}/transfer, the operator account's owner tokens
// only), copying the domains it sent as if copyDomains; it returns the
// answer decoded and as received.
func (c *Client) TransferServer(id, accountID int64, copyDomains bool) (api.TransferAnswer, []byte, error) {
	var out api.TransferAnswer
	data, err := c.Do(http.MethodPost, fmt.Sprintf("/servers/%d/transfer", id), api.TransferRequest{AccountID: accountID, CopyDomains: copyDomains}, &out)
	return out, data, err
}

// OutboundMessages returns the server's count newest messages.
func (c *Client) OutboundMessages(count int) (api.OutboundMessageList, []byte, error) {
	var list api.OutboundMessageList
	data, err := c.Do(http.MethodGet, fmt.Sprintf("/messages/outbound?count=%d&offset=0", count), nil, &list)
	return list, data, err
}

// Backup streams GET /backup (the operator account's owner tokens only)
// into w and returns how many bytes it wrote. The exchange has no
// timeout, since a copy takes as long as it takes; only the wait for it
// to start is bounded, by headerTimeout. An answer that ends early is an
// error.
func (c *Client) Backup(w io.Writer, headerTimeout time.Duration) (int64, error) {
	req, err := http.NewRequest(http.MethodGet, c.base+"/backup", nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set(c.header, c.token)
	hc := &http.Client{Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, ResponseHeaderTimeout: headerTimeout}}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		e := &Error{Method: http.MethodGet, Path: "/backup", Status: resp.StatusCode, Body: data}
		_ = json.Unmarshal(data, &e.API)
		return 0, e
	}
	want, err := strconv.ParseInt(resp.Header.Get("Content-Length"), 10, 64)
	if err != nil || want < 0 {
		return 0, fmt.Errorf("the answer has no Content-Length (%q): is %s a Postern?", resp.Header.Get("Content-Length"), c.base)
	}
	n, err := io.Copy(w, resp.Body)
	if err == nil && n != want {
		err = fmt.Errorf("the answer ended after %d of %d bytes", n, want)
	}
	if err != nil {
		return n, fmt.Errorf("receiving the copy: %w", err)
	}
	return n, nil
}
