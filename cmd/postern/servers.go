package main

// postern server and postern messages: the operator's tools for servers
// and their recent mail. They call the HTTP API of a running postern
// serve, with an account token (server) or a server token (messages).

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/postern/postern/api"
	"github.com/postern/postern/api/client"
)

const serverUsage = `Usage: postern server <command> [flags]

Commands (over the HTTP API of a running postern serve, with an account token):
  list [-name PART]                     the account's servers, pinned ones first
  create NAME [-color C] [-sandbox] [-rate-limit N] [-daily-quota N] [-retention-days N]
                                        a new server; prints its token, once
  show ID                               one server with every setting
  edit ID [-name N] [-color C] [-pinned=true|false] [-smtp=true|false]
          [-rate-limit N] [-daily-quota N] [-retention-days N]
                                        change a server's settings
  delete ID                             delete a server, its mail and its tokens (owner token)
  tokens ID                             the server's tokens (prefixes only)
  token-add ID                          another token for the server; prints it, once
  token-revoke ID PREFIX                revoke the server's token starting with PREFIX
  transfer -server ID -to ACCOUNT [-copy-domains]
                                        move a server of any account, with its mail, tokens and
                                        settings, to another account (the operator's owner token);
                                        -copy-domains copies the domains it sent as, with their keys

Every command takes:
  -token TOKEN   an account token (POSTERN_TOKEN)
  -url URL       the API's base URL (POSTERN_URL, default http://127.0.0.1:8080)
  -json          print the API's JSON answer, for scripts
`

const messagesUsage = `Usage: postern messages [-count N] [-json] [-token TOKEN] [-url URL]

The most recent outbound messages of the server whose token is given
(-token or POSTERN_TOKEN: a server token), over the HTTP API of a running
postern serve (-url or POSTERN_URL, default http://127.0.0.1:8080).
`

// cliFlags are the flags every API command takes.
type cliFlags struct {
	token, url string
	json       bool
}

func (f *cliFlags) bind(fs *flag.FlagSet, tokenKind string) {
	fs.StringVar(&f.token, "token", "", tokenKind+" (default $POSTERN_TOKEN)")
	fs.StringVar(&f.url, "url", "", "the API's base URL (default $POSTERN_URL, else "+client.DefaultURL+")")
	fs.BoolVar(&f.json, "json", false, "print JSON, for scripts")
}

// parseArgs parses flags and positional arguments in any order.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return positional, nil
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// cliClient is the API client of one command, whose name starts its
// errors.
type cliClient struct {
	cmd string
	*client.Client
}

func (f *cliFlags) client(cmd, header string) (*cliClient, error) {
	token, base := f.token, f.url
	if token == "" {
		token = os.Getenv("POSTERN_TOKEN")
	}
	if base == "" {
		base = os.Getenv("POSTERN_URL")
	}
	if base == "" {
		base = client.DefaultURL
	}
	if token == "" {
		return nil, fmt.Errorf("%s: a token is needed: -token TOKEN or POSTERN_TOKEN", cmd)
	}
	return newCLIClient(cmd, base, header, token)
}

// newCLIClient returns a client of the API at base that sends token in
// header.
func newCLIClient(cmd, base, header, token string) (*cliClient, error) {
	c, err := client.New(base, header, token)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cmd, err)
	}
	return &cliClient{cmd: cmd, Client: c}, nil
}

// do calls the API and decodes the answer into out.
func (c *cliClient) do(method, path string, body, out any) ([]byte, error) {
	data, err := c.Do(method, path, body, out)
	return data, c.wrap(err)
}

// wrap names the command in err, and where the API was looked for when
// it could not be reached.
func (c *cliClient) wrap(err error) error {
	var unreachable *url.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &unreachable):
		return fmt.Errorf("%s: %w (is postern serve running with its API at %s?)", c.cmd, err, c.Base())
	}
	return fmt.Errorf("%s: %w", c.cmd, err)
}

// printAnswer prints an answer of the API: with -json its JSON as it was
// received, for scripts; otherwise what human writes, for people.
func (f *cliFlags) printAnswer(w io.Writer, data []byte, human func()) error {
	if f.json {
		_, err := w.Write(data)
		return err
	}
	human()
	return nil
}

// printAnswerTable is printAnswer for an answer that people read as a
// table: rows writes its lines of tab-separated cells.
func (f *cliFlags) printAnswerTable(w io.Writer, data []byte, rows func(tw io.Writer)) error {
	if f.json {
		_, err := w.Write(data)
		return err
	}
	return writeTable(w, rows)
}

// writeTable writes what rows writes, lines of tab-separated cells, in
// aligned columns.
func writeTable(w io.Writer, rows func(tw io.Writer)) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	rows(tw)
	return tw.Flush()
}

func serverCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, serverUsage)
		return errors.New("server: a command is needed: list, create, show, edit, delete, tokens, token-add, token-revoke or transfer")
	}
	sub, rest := args[0], args[1:]
	if sub == "help" || sub == "-h" || sub == "-help" || sub == "--help" {
		fmt.Fprint(stdout, serverUsage)
		return nil
	}
	cmd := "server " + sub
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f cliFlags
	f.bind(fs, "an account token")
	var (
		name, color     string
		sandbox         bool
		pinned, smtpAPI boolFlag
		// The limits and retention, sent only when given.
		rateLimit, dailyQuota, retentionDays int
		// transfer's.
		serverID, toAccount int64
		copyDomains         bool
	)
	limitFlags := func() {
		fs.IntVar(&rateLimit, "rate-limit", 0, "most messages per minute (0: no limit)")
		fs.IntVar(&dailyQuota, "daily-quota", 0, "most messages per UTC day (0: no quota)")
		fs.IntVar(&retentionDays, "retention-days", 45, "days messages are kept, 1 to 365")
	}
	// setLimits adds the limit flags given on the command line to body.
	setLimits := func(body map[string]any) {
		fs.Visit(func(fl *flag.Flag) {
			switch fl.Name {
			case "rate-limit":
				body["RateLimitPerMinute"] = rateLimit
			case "daily-quota":
				body["DailyQuota"] = dailyQuota
			case "retention-days":
				body["RetentionDays"] = retentionDays
			}
		})
	}
	switch sub {
	case "list":
		fs.StringVar(&name, "name", "", "only servers whose name contains PART")
	case "create":
		fs.StringVar(&color, "color", "", "Purple, Blue, Turquoise, Green, Red, Yellow, Grey or Orange (default Purple)")
		fs.BoolVar(&sandbox, "sandbox", false, "a Sandbox server: mail is recorded as delivered and never sent")
		limitFlags()
	case "edit":
		fs.StringVar(&name, "name", "", "the new name")
		fs.StringVar(&color, "color", "", "the new color")
		fs.Var(&pinned, "pinned", "pin the server first in listings (true or false)")
		fs.Var(&smtpAPI, "smtp", "allow SMTP for the server (true or false)")
		limitFlags()
	case "transfer":
		fs.Int64Var(&serverID, "server", 0, "the ID of the server to move")
		fs.Int64Var(&toAccount, "to", 0, "the ID of the account to move it to (GET /accounts lists them)")
		fs.BoolVar(&copyDomains, "copy-domains", false, "copy the domains the server sent as, with their DKIM keys, into the account")
	case "show", "delete", "tokens", "token-add", "token-revoke":
	default:
		fmt.Fprint(stderr, serverUsage)
		return fmt.Errorf("server: unknown command %q", sub)
	}
	pos, err := parseArgs(fs, rest)
	if err != nil {
		return err
	}
	want := map[string]int{"list": 0, "create": 1, "show": 1, "edit": 1, "delete": 1, "tokens": 1, "token-add": 1, "token-revoke": 2}[sub]
	if len(pos) != want {
		return fmt.Errorf("%s: %d argument(s) expected, got %d (see postern server help)", cmd, want, len(pos))
	}
	var id int64
	if sub == "transfer" {
		if serverID < 1 || toAccount < 1 {
			return fmt.Errorf("%s: -server ID and -to ACCOUNT are needed", cmd)
		}
		id = serverID
	} else if sub != "list" && sub != "create" {
		if id, err = strconv.ParseInt(pos[0], 10, 64); err != nil || id < 1 {
			return fmt.Errorf("%s: %q is not a server ID (postern server list shows them)", cmd, pos[0])
		}
	}
	c, err := f.client(cmd, client.AccountToken)
	if err != nil {
		return err
	}
	path := fmt.Sprintf("/servers/%d", id)
	switch sub {
	case "list":
		return serverList(c, name, f.json, stdout)
	case "create":
		body := map[string]any{"Name": pos[0]}
		if color != "" {
			body["Color"] = color
		}
		if sandbox {
			body["DeliveryType"] = "Sandbox"
		}
		setLimits(body)
		var srv api.Server
		data, err := c.do(http.MethodPost, "/servers", body, &srv)
		if err != nil {
			return err
		}
		return f.printAnswer(stdout, data, func() {
			fmt.Fprintf(stdout, "Server %q created (ID %d, %s).\n\n  Server token: %s\n\n", srv.Name, srv.ID, srv.DeliveryType, strings.Join(srv.ApiTokens, ", "))
			fmt.Fprintln(stdout, "The token is shown only now; Postern keeps only its hash. It is the server's")
			fmt.Fprintln(stdout, "SMTP username and password, and its X-Postmark-Server-Token.")
		})
	case "show":
		var srv api.Server
		data, err := c.do(http.MethodGet, path, nil, &srv)
		if err != nil {
			return err
		}
		return f.printAnswerTable(stdout, data, func(tw io.Writer) { writeServerRows(tw, srv) })
	case "edit":
		body := map[string]any{}
		fs.Visit(func(fl *flag.Flag) {
			switch fl.Name {
			case "name":
				body["Name"] = name
			case "color":
				body["Color"] = color
			case "pinned":
				body["Pinned"] = pinned.v
			case "smtp":
				body["SmtpApiActivated"] = smtpAPI.v
			}
		})
		setLimits(body)
		if len(body) == 0 {
			return fmt.Errorf("%s: nothing to change: give -name, -color, -pinned, -smtp, -rate-limit, -daily-quota or -retention-days", cmd)
		}
		var srv api.Server
		data, err := c.do(http.MethodPut, path, body, &srv)
		if err != nil {
			return err
		}
		return f.printAnswerTable(stdout, data, func(tw io.Writer) { writeServerRows(tw, srv) })
	case "delete":
		var res api.Error
		data, err := c.do(http.MethodDelete, path, nil, &res)
		if err != nil {
			return err
		}
		return f.printAnswer(stdout, data, func() { fmt.Fprintln(stdout, res.Message) })
	case "tokens":
		var list api.TokenList
		data, err := c.do(http.MethodGet, path+"/tokens", nil, &list)
		if err != nil {
			return err
		}
		return f.printAnswerTable(stdout, data, func(tw io.Writer) {
			fmt.Fprintln(tw, "PREFIX\tCREATED")
			for _, t := range list.Tokens {
				fmt.Fprintf(tw, "%s\t%s\n", t.Prefix, t.CreatedAt.UTC().Format(time.RFC3339))
			}
		})
	case "token-add":
		var tok api.NewTokenInfo
		data, err := c.do(http.MethodPost, path+"/tokens", nil, &tok)
		if err != nil {
			return err
		}
		return f.printAnswer(stdout, data, func() {
			fmt.Fprintf(stdout, "New token for server %d: %s\n(shown only now; revoke it with: postern server token-revoke %d %s)\n", id, tok.Token, id, tok.Prefix)
		})
	case "transfer":
		res, data, err := c.TransferServer(id, toAccount, copyDomains)
		if err != nil {
			return c.wrap(err)
		}
		return f.printAnswer(stdout, data, func() {
			fmt.Fprintf(stdout, "Server %q (ID %d) moved to account %d.\n", res.Server.Name, res.Server.ID, toAccount)
			if len(res.CopiedDomains) > 0 {
				fmt.Fprintf(stdout, "Domains copied with their DKIM keys: %s\n", strings.Join(res.CopiedDomains, ", "))
			}
			if len(res.MissingDomains) > 0 {
				fmt.Fprintf(stdout, "Domains it sent as that account %d lacks: %s\n", toAccount, strings.Join(res.MissingDomains, ", "))
			}
			if res.RemovedGrants > 0 {
				fmt.Fprintf(stdout, "Grants of Members to it removed: %d\n", res.RemovedGrants)
			}
		})
	case "token-revoke":
		var res api.Error
		data, err := c.do(http.MethodDelete, path+"/tokens/"+url.PathEscape(pos[1]), nil, &res)
		if err != nil {
			return err
		}
		return f.printAnswer(stdout, data, func() { fmt.Fprintln(stdout, res.Message) })
	}
	return nil
}

// boolFlag is a bool flag whose presence is seen by fs.Visit.
type boolFlag struct{ v bool }

func (b *boolFlag) String() string   { return strconv.FormatBool(b.v) }
func (b *boolFlag) IsBoolFlag() bool { return true }
func (b *boolFlag) Set(s string) error {
	v, err := strconv.ParseBool(s)
	b.v = v
	return err
}

func serverList(c *cliClient, name string, asJSON bool, stdout io.Writer) error {
	all, err := c.Servers(name)
	if err != nil {
		return c.wrap(err)
	}
	if asJSON {
		return json.NewEncoder(stdout).Encode(api.ServerList{TotalCount: len(all), Servers: append([]api.Server{}, all...)})
	}
	return writeTable(stdout, func(tw io.Writer) {
		fmt.Fprintln(tw, "ID\tNAME\tDELIVERY\tCOLOR\tSMTP\tPINNED\tTOKENS")
		for _, s := range all {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%d\n", s.ID, s.Name, s.DeliveryType, s.Color, onOff(s.SmtpApiActivated), yesNo(s.Pinned), len(s.ApiTokens))
		}
	})
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// writeServerRows writes every setting of a server, one a row.
func writeServerRows(tw io.Writer, s api.Server) {
	for _, row := range [][2]string{
		{"ID", strconv.FormatInt(s.ID, 10)},
		{"Name", s.Name},
		{"DeliveryType", s.DeliveryType},
		{"Color", s.Color},
		{"SmtpApiActivated", strconv.FormatBool(s.SmtpApiActivated)},
		{"Pinned", strconv.FormatBool(s.Pinned)},
		{"ApiTokens", strings.Join(s.ApiTokens, ", ")},
		{"ServerLink", s.ServerLink},
		{"TrackOpens", strconv.FormatBool(s.TrackOpens)},
		{"TrackLinks", s.TrackLinks},
		{"BounceHookUrl", s.BounceHookUrl},
		{"DeliveryHookUrl", s.DeliveryHookUrl},
		{"InboundAddress", s.InboundAddress},
		{"RateLimitPerMinute", limitText(s.RateLimitPerMinute, "no limit")},
		{"DailyQuota", limitText(s.DailyQuota, "no quota")},
		{"RetentionDays", strconv.Itoa(s.RetentionDays)},
	} {
		fmt.Fprintf(tw, "%s:\t%s\n", row[0], row[1])
	}
}

// limitText shows a limit, 0 as none.
func limitText(n int, none string) string {
	if n == 0 {
		return "0 (" + none + ")"
	}
	return strconv.Itoa(n)
}

func messagesCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("messages", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, messagesUsage) }
	var f cliFlags
	f.bind(fs, "a server token")
	count := fs.Int("count", 20, "how many messages, most recent first (1 to 500)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("messages: unexpected argument %q", pos[0])
	}
	if *count < 1 || *count > 500 {
		return fmt.Errorf("messages: -count must be from 1 to 500, got %d", *count)
	}
	c, err := f.client("messages", client.ServerToken)
	if err != nil {
		return err
	}
	list, data, err := c.OutboundMessages(*count)
	if err != nil {
		return c.wrap(err)
	}
	return f.printAnswerTable(stdout, data, func(tw io.Writer) {
		fmt.Fprintln(tw, "RECEIVED\tMESSAGE ID\tSTATUS\tFROM\tTO\tSUBJECT")
		for _, m := range list.Messages {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", m.ReceivedAt.UTC().Format(time.RFC3339), m.MessageID, m.Status, clip(m.From, 40), clip(strings.Join(m.Recipients, ", "), 40), clip(m.Subject, 50))
		}
		// One cell alone on its line is in no column: printed as it is.
		fmt.Fprintf(tw, "%d of %d messages\n", len(list.Messages), list.TotalCount)
	})
}

// clip shortens s to n characters for a table cell, on one line.
func clip(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}
