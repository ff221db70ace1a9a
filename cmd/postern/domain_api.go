package main

// postern domain over the HTTP API of a running Postern: the same commands
// as on the store, for the account whose token is given.

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/postern/postern/api"
	"github.com/postern/postern/api/client"
)

// apiFlags are the flags that choose the API mode.
type apiFlags struct {
	token, url string
	account    int64 // the direct mode's -account; 0 when not given
}

func (f *apiFlags) bind(fs *flag.FlagSet, accountHelp string) {
	fs.StringVar(&f.token, "token", "", "an account token: call the API of a running postern serve (POSTERN_TOKEN)")
	fs.StringVar(&f.url, "url", "", "the API's base URL (POSTERN_URL, default "+client.DefaultURL+")")
	if accountHelp != "" {
		fs.Int64Var(&f.account, "account", 0, accountHelp+" (direct mode; default 1)")
	}
}

// client returns the API client the flags and environment ask for, or
// nil for the direct mode.
func (f *apiFlags) client(cmd string) (*cliClient, error) {
	token, base := f.token, f.url
	if token == "" {
		token = os.Getenv("POSTERN_TOKEN")
	}
	if base == "" {
		base = os.Getenv("POSTERN_URL")
	}
	if token == "" {
		if base != "" && f.url != "" {
			return nil, fmt.Errorf("%s: -url needs an account token (-token or POSTERN_TOKEN)", cmd)
		}
		return nil, nil
	}
	if f.account != 0 {
		return nil, fmt.Errorf("%s: -account is for the direct mode: over the API the token chooses the account", cmd)
	}
	if base == "" {
		base = client.DefaultURL
	}
	return newCLIClient(cmd, base, client.AccountToken, token)
}

// byName finds the account's domain called name.
func (c *cliClient) byName(name string) (api.DomainSummary, error) {
	all, err := c.Domains()
	if err != nil {
		return api.DomainSummary{}, c.wrap(err)
	}
	for _, d := range all {
		if d.Name == name {
			return d, nil
		}
	}
	return api.DomainSummary{}, fmt.Errorf("%s: the account has no domain %s; add it with: postern domain add %s", c.cmd, name, name)
}

func apiDomainAdd(c *cliClient, name, returnPath string, asJSON bool, stdout io.Writer) error {
	req := map[string]string{"Name": name}
	if returnPath != "" {
		req["ReturnPathDomain"] = returnPath
	}
	var d api.DomainDetails
	if _, err := c.do(http.MethodPost, "/domains", req, &d); err != nil {
		return err
	}
	if asJSON {
		return json.NewEncoder(stdout).Encode(d)
	}
	fmt.Fprintf(stdout, "Domain %s added (ID %d).\n\n", d.Name, d.ID)
	printDNSRecords(stdout, apiRecords(d.DKIMRecords))
	fmt.Fprintf(stdout, "\nOnce they are published, run: postern domain verify %s (with the same -token and -url)\n", d.Name)
	return nil
}

func apiRecords(rs []api.DKIMRecord) []dkimRecord {
	out := make([]dkimRecord, 0, len(rs))
	for _, r := range rs {
		out = append(out, dkimRecord(r))
	}
	return out
}

func apiDomainList(c *cliClient, asJSON bool, stdout io.Writer) error {
	all, err := c.Domains()
	if err != nil {
		return c.wrap(err)
	}
	details := make([]api.DomainDetails, 0, len(all))
	for _, s := range all {
		var d api.DomainDetails
		if _, err := c.do(http.MethodGet, fmt.Sprintf("/domains/%d", s.ID), nil, &d); err != nil {
			return err
		}
		details = append(details, d)
	}
	if asJSON {
		return json.NewEncoder(stdout).Encode(details)
	}
	if len(details) == 0 {
		fmt.Fprintln(stdout, "The account has no domains; add one with: postern domain add NAME")
		return nil
	}
	err = writeTable(stdout, func(tw io.Writer) {
		fmt.Fprintln(tw, "ID\tNAME\tVERIFIED\tDKIM\tREVOKED")
		for _, d := range details {
			verified, revoked := "no", "-"
			if d.DKIMVerified {
				verified = "yes"
			}
			if d.DKIMRevokedHost != "" {
				revoked = "keep in DNS"
				if d.SafeToRemoveRevokedKeyFromDNS {
					revoked = "safe to remove"
				}
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", d.ID, d.Name, verified, d.DKIMUpdateStatus, revoked)
		}
	})
	if err != nil {
		return err
	}
	for _, d := range details {
		fmt.Fprintf(stdout, "\n%s:\n", d.Name)
		for _, r := range d.DKIMRecords {
			state := "active"
			if d.DKIMUpdateStatus == "Pending" && (d.DKIMHost == "" || sameStamp(r.Host, d.DKIMPendingHost)) {
				state = "pending"
			}
			fmt.Fprintf(stdout, "  %-8s %-8s %s TXT %s\n", algorithmName(r.Algorithm), state, r.Host, r.TextValue)
		}
		if d.DKIMRevokedHost != "" {
			fmt.Fprintf(stdout, "  RSA      revoked  %s (and its Ed25519 twin)\n", d.DKIMRevokedHost)
		}
	}
	return nil
}

// sameStamp reports whether two records' selectors were made together:
// pstrn-ed-YYYYMMDD-xxxx and pstrn-rsa-YYYYMMDD-xxxx share their stamp.
func sameStamp(hostA, hostB string) bool {
	stamp := func(h string) string {
		sel, _, _ := strings.Cut(h, ".")
		i := strings.Index(sel, "-")
		j := strings.Index(sel[i+1:], "-")
		if i < 0 || j < 0 {
			return sel
		}
		return sel[i+1+j+1:]
	}
	return stamp(hostA) == stamp(hostB)
}

func apiDomainVerify(c *cliClient, name string, asJSON bool, stdout io.Writer) error {
	s, err := c.byName(name)
	if err != nil {
		return err
	}
	var d api.DomainDetails
	if _, err := c.do(http.MethodPut, fmt.Sprintf("/domains/%d/verifyDkim", s.ID), nil, &d); err != nil {
		return err
	}
	if asJSON {
		if err := json.NewEncoder(stdout).Encode(d); err != nil {
			return err
		}
	}
	switch {
	case d.DKIMUpdateStatus == "Pending" && d.DKIMHost != "":
		if !asJSON {
			fmt.Fprintf(stdout, "The DKIM rotation of %s waits for its new records:\n", d.Name)
			printDNSRecords(stdout, apiRecords(d.DKIMRecords))
		}
		return errors.New(c.cmd + ": " + d.Name + ": the pending records are not all published yet")
	case d.DKIMVerified:
		if !asJSON {
			fmt.Fprintf(stdout, "Domain %s is verified.\n", d.Name)
		}
		return nil
	default:
		if !asJSON {
			printDNSRecords(stdout, apiRecords(d.DKIMRecords))
		}
		return errors.New(c.cmd + ": " + d.Name + " is not verified: its DKIM records are not all published as above")
	}
}

// directAccount is the direct mode's account: -account, or 1.
func (f *apiFlags) directAccount() int64 {
	if f.account == 0 {
		return 1
	}
	return f.account
}
