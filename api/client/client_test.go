package client_test

import (
	"bytes"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/postern/postern/api/client"
	"github.com/postern/postern/internal/testutil/stack"
	"github.com/postern/postern/store/bolt"
)

func TestClientAgainstTheAPI(t *testing.T) {
	s := stack.New(t, stack.Options{})
	base := s.ServeAPI(nil)
	acct, err := client.New(base+"/", client.AccountToken, s.Inst.AccountToken)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"Alpha", "Beta"} {
		s.LiveServer(name)
	}
	servers, err := acct.Servers("")
	if err != nil || len(servers) != 3 {
		t.Fatalf("servers %+v, %v; want Default, Alpha and Beta", servers, err)
	}
	if only, err := acct.Servers("alp"); err != nil || len(only) != 1 || only[0].Name != "Alpha" {
		t.Fatalf("servers named alp: %+v, %v", only, err)
	}
	if domains, err := acct.Domains(); err != nil || len(domains) != 0 {
		t.Fatalf("domains %+v, %v", domains, err)
	}

	// An answer other than 200 is an *Error with the API's body.
	bad, _ := client.New(base, client.AccountToken, "not-a-token")
	_, err = bad.Servers("")
	var apiErr *client.Error
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusUnauthorized || apiErr.API.ErrorCode != 10 || !strings.Contains(err.Error(), "ErrorCode 10") {
		t.Fatalf("bad token: %v", err)
	}

	srv, _ := client.New(base, client.ServerToken, s.Inst.ServerToken)
	id := s.Send(s.Inst.ServerToken, "app@example.com", []string{"bob@example.net"}, "Subject: listed\n\nHi.\n")
	list, _, err := srv.OutboundMessages(10)
	if err != nil || list.TotalCount != 1 || list.Messages[0].MessageID != id || list.Messages[0].Subject != "listed" {
		t.Fatalf("outbound %+v, %v", list, err)
	}

	// The backup streams a store that opens and checks.
	var copyBuf bytes.Buffer
	n, err := acct.Backup(&copyBuf, 0)
	if err != nil || n != int64(copyBuf.Len()) || n == 0 {
		t.Fatalf("backup: %d bytes (%d received), %v", n, copyBuf.Len(), err)
	}
	path := filepath.Join(t.TempDir(), bolt.FileName)
	if err := os.WriteFile(path, copyBuf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Check(); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Backup(&bytes.Buffer{}, 0); !errors.As(err, &apiErr) || apiErr.Status != http.StatusNotFound {
		t.Fatalf("backup with a server token: %v, want 404", err)
	}

	if _, err := client.New("ftp://x", client.AccountToken, "t"); err == nil {
		t.Fatal("an ftp:// base was taken")
	}
}
