package main

// postern tlsrpt preview: the SMTP TLS report (RFC 8460) a running
// Postern would send to a recipient domain, over its HTTP API (GET
// /tlsrpt), with the operator account's owner token.

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"

	"github.com/postern/postern/api/client"
)

const tlsrptUsage = `Usage: postern tlsrpt preview -domain DOMAIN [-day YYYY-MM-DD] [-token TOKEN] [-url URL] [-json]

Prints the SMTP TLS report (RFC 8460) that Postern would send to DOMAIN
for a day (UTC; today so far if -day is left out): how many sessions to
its mail servers met its MTA-STS or DANE policy, and how the others
failed. Reports of complete days go out once a day to domains that
publish an _smtp._tls record.

Flags:
  -domain DOMAIN  the recipient domain (required)
  -day DATE       the day, YYYY-MM-DD (default: today, UTC)
  -token TOKEN    an owner token of the operator account (POSTERN_TOKEN)
  -url URL        the API's base URL (POSTERN_URL, default http://127.0.0.1:8080)
  -json           print the report as the API sent it, on one line
`

func tlsrptCmd(args []string, stdout, stderr io.Writer) error {
	switch {
	case len(args) == 0:
		fmt.Fprint(stderr, tlsrptUsage)
		return errors.New("tlsrpt: a command is needed: preview")
	case args[0] == "help" || args[0] == "-h" || args[0] == "-help" || args[0] == "--help":
		fmt.Fprint(stdout, tlsrptUsage)
		return nil
	case args[0] != "preview":
		fmt.Fprint(stderr, tlsrptUsage)
		return fmt.Errorf("tlsrpt: unknown command %q", args[0])
	}
	fs := flag.NewFlagSet("tlsrpt preview", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, tlsrptUsage) }
	var f cliFlags
	f.bind(fs, "an owner token of the operator account")
	domain := fs.String("domain", "", "the recipient domain")
	day := fs.String("day", "", "the day, YYYY-MM-DD (default: today, UTC)")
	pos, err := parseArgs(fs, args[1:])
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("tlsrpt preview: unexpected argument %q", pos[0])
	}
	if *domain == "" {
		return fmt.Errorf("tlsrpt preview: -domain is required")
	}
	c, err := f.client("tlsrpt preview", client.AccountToken)
	if err != nil {
		return err
	}
	q := url.Values{"domain": {*domain}}
	if *day != "" {
		q.Set("day", *day)
	}
	data, err := c.Call("GET", "/tlsrpt?"+q.Encode(), nil)
	if err != nil {
		return c.wrap(err)
	}
	return f.printAnswer(stdout, data, func() {
		var out bytes.Buffer
		if json.Indent(&out, data, "", "  ") != nil {
			out.Reset()
			out.Write(data)
		}
		fmt.Fprintln(stdout, out.String())
	})
}
