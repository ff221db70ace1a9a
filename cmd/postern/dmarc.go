package main

// postern dmarc sources|digest: who sends as a domain, from its DMARC
// reports, over the HTTP API with an account token.

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/postern/postern/api"
	"github.com/postern/postern/api/client"
	"github.com/postern/postern/dmarc"
	"github.com/postern/postern/internal/domainname"
)

const dmarcUsage = `Usage: postern dmarc sources -domain DOMAIN [-from YYYY-MM-DD] [-to YYYY-MM-DD] [-token TOKEN] [-url URL] [-json]
       postern dmarc digest -domain DOMAIN [-token TOKEN] [-url URL]

sources lists who sent as DOMAIN according to the DMARC reports Postern
received (the last 30 days by default): address, name, messages, how
many passed DMARC, whether it is Postern or marked known.
digest prints the week's digest: messages, the share that passed, the
unknown sources first, the top sources and the policy advice.

Flags:
  -domain DOMAIN  a domain of the account (required)
  -from, -to      the period of sources, YYYY-MM-DD (UTC)
  -token TOKEN    an account token (POSTERN_TOKEN)
  -url URL        the API's base URL (POSTERN_URL, default http://127.0.0.1:8080)
  -json           print the API's answer, for scripts (sources)
`

func dmarcCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "sources" && args[0] != "digest") {
		fmt.Fprint(stderr, dmarcUsage)
		if len(args) > 0 && (args[0] == "-h" || args[0] == "help" || args[0] == "-help" || args[0] == "--help") {
			return flag.ErrHelp
		}
		return errors.New("dmarc: a command is needed: sources or digest")
	}
	sub := args[0]
	fs := flag.NewFlagSet("dmarc "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, dmarcUsage) }
	var f cliFlags
	f.bind(fs, "an account token")
	name := fs.String("domain", "", "a domain of the account")
	from := fs.String("from", "", "the first day, YYYY-MM-DD")
	to := fs.String("to", "", "the last day, YYYY-MM-DD")
	pos, err := parseArgs(fs, args[1:])
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("dmarc %s: unexpected argument %q", sub, pos[0])
	}
	if *name == "" {
		return fmt.Errorf("dmarc %s: -domain is required", sub)
	}
	c, err := f.client("dmarc "+sub, client.AccountToken)
	if err != nil {
		return err
	}
	domains, err := c.Domains()
	if err != nil {
		return c.wrap(err)
	}
	want := domainname.Normalize(*name)
	var id int64
	for _, d := range domains {
		if d.Name == want {
			id = d.ID
		}
	}
	if id == 0 {
		return fmt.Errorf("dmarc %s: the account has no domain %s", sub, want)
	}
	now := time.Now().UTC()
	if sub == "digest" {
		*from, *to = now.Add(-7*24*time.Hour).Format(time.DateOnly), now.Format(time.DateOnly)
	}
	q := url.Values{}
	if *from != "" {
		q.Set("fromdate", *from)
	}
	if *to != "" {
		q.Set("todate", *to)
	}
	var sources api.DMARCSources
	data, err := c.do(http.MethodGet, fmt.Sprintf("/domains/%d/dmarc/sources?%s", id, q.Encode()), nil, &sources)
	if err != nil {
		return err
	}
	if sub == "sources" {
		return f.printAnswerTable(stdout, data, func(tw io.Writer) {
			fmt.Fprintln(tw, "IP\tNAME\tMESSAGES\tPASSED\tPOSTERN\tKNOWN\tLAST SEEN")
			for _, s := range sources.Sources {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\t%s\n", s.IP, clip(s.Hostname, 40), s.Messages, s.DmarcPass, yesNo(s.ViaPostern), yesNo(s.Known), s.LastSeen.UTC().Format(time.DateOnly))
			}
			fmt.Fprintf(tw, "%d messages, %d passed DMARC\n", sources.TotalMessages, sources.DmarcPass)
		})
	}
	var rec api.DMARCRecord
	if _, err := c.do(http.MethodGet, fmt.Sprintf("/domains/%d/dmarc", id), nil, &rec); err != nil {
		return err
	}
	fromDay, _ := time.Parse(time.DateOnly, *from)
	toDay, _ := time.Parse(time.DateOnly, *to)
	fmt.Fprint(stdout, dmarc.Digest(want, fromDay, toDay, sources.TotalMessages, sources.DmarcPass, sources.Sources, rec.Advice))
	return nil
}
