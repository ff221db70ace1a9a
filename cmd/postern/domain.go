package main

// postern domain: the operator's tools for sending domains and their DKIM
// keys. Given an account token (-token or POSTERN_TOKEN), they call a
// running Postern's HTTP API; without one, they open the store directly,
// so they work while postern serve is stopped (and only then: the store
// has one process at a time).

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/postern/postern/internal/app"
	"github.com/postern/postern/internal/domainname"

	"github.com/postern/postern/internal/dkim"

	"github.com/postern/postern/config"
	"github.com/postern/postern/relay"
	"github.com/postern/postern/store"
)

const domainUsage = `Usage: postern domain <command> [flags]

Commands:
  add NAME [-json]       register a sending domain, generate its DKIM keys (Ed25519 and
                         RSA-2048) and print the TXT records to publish
  list [-json]           list the account's domains and their records
  verify NAME [-json]    look the domain's TXT records up and mark it verified when every
                         record is published (over the API: complete a pending rotation)

Over the HTTP API of a running postern serve, with an account token:
  -token TOKEN           the account token (POSTERN_TOKEN); it chooses this mode
  -url URL               the API's base URL (POSTERN_URL, default http://127.0.0.1:8080)
  add -return-path NAME  Postmark's ReturnPathDomain, a subdomain of the domain
The domains are the token's account's; lookups use the server's dns setting.

Without a token, directly on the store (run them while postern serve is stopped):
  -account ID            the account (default 1, the operator's, the one postern init creates)
  every setting (-data, -config, -dns...), with its environment variable.
`

// domainLockTimeout bounds the wait for the store's lock: a running serve
// holds it for as long as it runs, so waiting longer would not help.
const domainLockTimeout = 2 * time.Second

// dnsTimeout bounds each lookup of verify.
const dnsTimeout = 10 * time.Second

func domainCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, domainUsage)
		return errors.New("domain: a command is needed: add, list or verify")
	}
	switch sub, rest := args[0], args[1:]; sub {
	case "add":
		return domainAdd(rest, stdout, stderr)
	case "list":
		return domainList(rest, stdout, stderr)
	case "verify":
		return domainVerify(rest, stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, domainUsage)
		return nil
	default:
		fmt.Fprint(stderr, domainUsage)
		return fmt.Errorf("domain: unknown command %q", sub)
	}
}

// loadConfigArgs is loadConfig for a command with positional arguments,
// which may come before, between or after the flags.
func loadConfigArgs(name string, args []string, stderr io.Writer, extra func(*flag.FlagSet)) (*config.Config, []string, error) {
	var cfg config.Config
	fs := config.FlagSet(name, &cfg)
	fs.SetOutput(stderr)
	if extra != nil {
		extra(fs)
	}
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, nil, err
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if err := config.Load(fs, &cfg, os.LookupEnv); err != nil {
		return nil, nil, err
	}
	return &cfg, positional, nil
}

// oneName returns the one positional argument of cmd, a domain name.
func oneName(cmd string, args []string) (string, error) {
	switch len(args) {
	case 0:
		return "", fmt.Errorf("%s: the domain name is missing: postern %s NAME", cmd, cmd)
	case 1:
		return domainname.Normalize(args[0]), nil
	default:
		return "", fmt.Errorf("%s: unexpected argument %q", cmd, args[1])
	}
}

// dkimRecord is one TXT record to publish, in the design's DKIMRecords
// shape.
type dkimRecord struct {
	Algorithm string
	Host      string
	TextValue string
}

// domainJSON is a domain as the -json flag prints it: Postmark's field
// names, DKIMHost and DKIMTextValue being the RSA record as Postmark has
// it, and DKIMRecords every record.
type domainJSON struct {
	ID            int64
	Name          string
	AccountID     int64
	DKIMVerified  bool
	VerifiedAt    *time.Time `json:",omitempty"`
	CreatedAt     time.Time
	DKIMHost      string
	DKIMTextValue string
	DKIMRecords   []dkimRecord
}

func toJSON(d store.Domain) domainJSON {
	out := domainJSON{ID: d.ID, Name: d.Name, AccountID: d.AccountID, DKIMVerified: d.DKIMVerified, CreatedAt: d.CreatedAt, DKIMRecords: []dkimRecord{}}
	if !d.VerifiedAt.IsZero() {
		at := d.VerifiedAt
		out.VerifiedAt = &at
	}
	for _, k := range d.Keys {
		out.DKIMRecords = append(out.DKIMRecords, dkimRecord{Algorithm: k.Algorithm, Host: k.Host, TextValue: k.TextValue})
		if k.Algorithm == "rsa" {
			out.DKIMHost, out.DKIMTextValue = k.Host, k.TextValue
		}
	}
	return out
}

func domainAdd(args []string, stdout, stderr io.Writer) error {
	var (
		af         apiFlags
		asJSON     bool
		returnPath string
	)
	cfg, rest, err := loadConfigArgs("domain add", args, stderr, func(fs *flag.FlagSet) {
		af.bind(fs, "the account the domain is for")
		fs.BoolVar(&asJSON, "json", false, "print the domain and its records as one JSON object")
		fs.StringVar(&returnPath, "return-path", "", "the ReturnPathDomain, a subdomain of the domain (API mode)")
	})
	if err != nil {
		return err
	}
	name, err := oneName("domain add", rest)
	if err != nil {
		return err
	}
	if !domainname.ValidMail(name) {
		return fmt.Errorf("domain add: %q is not a domain name (write internationalised names in their xn-- form)", name)
	}
	c, err := af.client("domain add")
	if err != nil {
		return err
	}
	if c != nil {
		return apiDomainAdd(c, name, returnPath, asJSON, stdout)
	}
	if returnPath != "" {
		return errors.New("domain add: -return-path is for the API mode (-token)")
	}
	account := af.directAccount()
	st, err := app.OpenStore(cfg, app.StoreOptions{Existing: true, LockTimeout: domainLockTimeout})
	if err != nil {
		return err
	}
	defer st.Close()
	if _, err := st.Account(account); errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("domain add: account %d does not exist", account)
	} else if err != nil {
		return err
	}
	// A name another account holds but has not proven in DNS can be
	// claimed (the store decides, in its transaction).
	if d, err := st.DomainByName(name); err == nil && (d.AccountID == account || d.DKIMVerified) {
		return fmt.Errorf("domain add: %s is already registered (account %d); nothing was changed", name, d.AccountID)
	} else if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	keys, err := dkim.Generate(name)
	if err != nil {
		return err
	}
	d, err := st.CreateDomain(store.Domain{AccountID: account, Name: name, Keys: keys}, time.Now())
	if errors.Is(err, store.ErrDuplicate) {
		return fmt.Errorf("domain add: %s is already registered; nothing was changed", name)
	}
	if err != nil {
		return err
	}
	if err := st.Close(); err != nil {
		return err
	}
	if asJSON {
		return json.NewEncoder(stdout).Encode(toJSON(d))
	}
	fmt.Fprintf(stdout, "Domain %s added to account %d (ID %d).\n\n", d.Name, d.AccountID, d.ID)
	printRecords(stdout, d)
	fmt.Fprintf(stdout, "\nOnce they are published, run: postern domain verify %s\n", d.Name)
	return nil
}

// printRecords shows the TXT records to publish, as a DNS provider's form
// asks for them and as zone-file lines, where a value over 255 bytes must
// be split into several strings of one record.
func printRecords(w io.Writer, d store.Domain) {
	records := make([]dkimRecord, 0, len(d.Keys))
	for _, k := range d.Keys {
		records = append(records, dkimRecord{Algorithm: k.Algorithm, Host: k.Host, TextValue: k.TextValue})
	}
	printDNSRecords(w, records)
}

func printDNSRecords(w io.Writer, records []dkimRecord) {
	fmt.Fprintln(w, "Publish these DNS TXT records (one record each):")
	for _, r := range records {
		fmt.Fprintf(w, "\n  %s key\n  host:  %s\n  value: %s\n", algorithmName(r.Algorithm), r.Host, r.TextValue)
	}
	fmt.Fprintln(w, "\nIn a zone file:")
	for _, r := range records {
		fmt.Fprintf(w, "  %s. IN TXT %s\n", r.Host, zoneStrings(r.TextValue))
	}
}

func algorithmName(a string) string {
	switch a {
	case "ed25519":
		return "Ed25519"
	case "rsa":
		return "RSA"
	}
	return a
}

// zoneStrings writes a TXT value as quoted character-strings of at most
// 255 bytes (RFC 1035 §3.3.14; RFC 6376 §3.6.2.2 for DKIM keys).
func zoneStrings(v string) string {
	var parts []string
	for len(v) > 255 {
		parts = append(parts, `"`+v[:255]+`"`)
		v = v[255:]
	}
	return strings.Join(append(parts, `"`+v+`"`), " ")
}

func domainList(args []string, stdout, stderr io.Writer) error {
	var (
		af     apiFlags
		asJSON bool
	)
	cfg, rest, err := loadConfigArgs("domain list", args, stderr, func(fs *flag.FlagSet) {
		af.bind(fs, "the account whose domains to list")
		fs.BoolVar(&asJSON, "json", false, "print a JSON array")
	})
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return fmt.Errorf("domain list: unexpected argument %q", rest[0])
	}
	c, err := af.client("domain list")
	if err != nil {
		return err
	}
	if c != nil {
		return apiDomainList(c, asJSON, stdout)
	}
	account := af.directAccount()
	st, err := app.OpenStore(cfg, app.StoreOptions{Existing: true, LockTimeout: domainLockTimeout})
	if err != nil {
		return err
	}
	defer st.Close()
	if _, err := st.Account(account); errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("domain list: account %d does not exist", account)
	} else if err != nil {
		return err
	}
	domains, err := st.Domains(account)
	if err != nil {
		return err
	}
	if asJSON {
		out := make([]domainJSON, 0, len(domains))
		for _, d := range domains {
			out = append(out, toJSON(d))
		}
		return json.NewEncoder(stdout).Encode(out)
	}
	if len(domains) == 0 {
		fmt.Fprintf(stdout, "Account %d has no domains; add one with: postern domain add NAME\n", account)
		return nil
	}
	return writeTable(stdout, func(tw io.Writer) {
		fmt.Fprintln(tw, "ID\tNAME\tVERIFIED\tCREATED\tSELECTORS")
		for _, d := range domains {
			verified := "no"
			if d.DKIMVerified {
				verified = "yes (" + d.VerifiedAt.UTC().Format("2006-01-02") + ")"
			}
			var selectors []string
			for _, k := range d.Keys {
				selectors = append(selectors, k.Selector)
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", d.ID, d.Name, verified, d.CreatedAt.UTC().Format("2006-01-02"), strings.Join(selectors, " "))
		}
	})
}

// accountDomain finds the account's domain of that name: the one it
// holds, or its claim on a name another account holds.
func accountDomain(st store.Domains, account int64, name string) (store.Domain, error) {
	domains, err := st.Domains(account)
	if err != nil {
		return store.Domain{}, err
	}
	for _, d := range domains {
		if d.Name == domainname.Normalize(name) {
			return d, nil
		}
	}
	return store.Domain{}, store.ErrNotFound
}

func domainVerify(args []string, stdout, stderr io.Writer) error {
	var (
		af     apiFlags
		asJSON bool
	)
	cfg, rest, err := loadConfigArgs("domain verify", args, stderr, func(fs *flag.FlagSet) {
		af.bind(fs, "the account whose domain (or claim) to verify; default: the account that holds the name")
		fs.BoolVar(&asJSON, "json", false, "print the result as one JSON object")
	})
	if err != nil {
		return err
	}
	name, err := oneName("domain verify", rest)
	if err != nil {
		return err
	}
	c, err := af.client("domain verify")
	if err != nil {
		return err
	}
	if c != nil {
		return apiDomainVerify(c, name, asJSON, stdout)
	}
	st, err := app.OpenStore(cfg, app.StoreOptions{Existing: true, LockTimeout: domainLockTimeout})
	if err != nil {
		return err
	}
	defer st.Close()
	d, err := st.DomainByName(name)
	if af.account != 0 {
		d, err = accountDomain(st, af.account, name)
	}
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("domain verify: no domain %s; add it with: postern domain add %s", name, name)
	}
	if err != nil {
		return err
	}
	if len(d.Keys) == 0 {
		return fmt.Errorf("domain verify: %s has no DKIM keys", name)
	}

	resolver := relay.NewResolver(cfg.DNS)
	checks := make([]dkim.Check, len(d.Keys))
	published, definite := 0, true
	for i, k := range d.Keys {
		checks[i] = checkRecord(resolver, k)
		switch checks[i].Status {
		case dkim.Published:
			published++
		case dkim.DNSError:
			definite = false
		}
	}
	verified := published == len(d.Keys)
	if d.Claim && verified {
		// Proven: the name is this account's now, unless its holder
		// proved it first.
		won, err := st.TakeDomain(d.ID, time.Now())
		if errors.Is(err, store.ErrDomainProven) {
			return fmt.Errorf("domain verify: %s is verified by the account that registered it first; it stays with that account while its DKIM records are published", name)
		}
		if err != nil {
			return err
		}
		d = won
	}
	// Record what DNS said; a failure to get an answer changes nothing.
	if !d.Claim && (verified || definite) {
		wasVerified := d.DKIMVerified
		d.DKIMVerified = verified
		if verified {
			d.VerifiedAt = time.Now().UTC()
		}
		if verified != wasVerified || verified {
			if err := st.UpdateDomain(d); err != nil {
				return err
			}
		}
	}
	if err := st.Close(); err != nil {
		return err
	}

	if asJSON {
		if err := json.NewEncoder(stdout).Encode(struct {
			Name         string
			DKIMVerified bool
			Records      []dkim.Check
		}{d.Name, d.DKIMVerified, checks}); err != nil {
			return err
		}
	} else {
		for _, c := range checks {
			fmt.Fprintf(stdout, "%-8s %s: %s", algorithmName(c.Algorithm), c.Host, c.Status)
			if c.Error != "" {
				fmt.Fprintf(stdout, " (%s)", c.Error)
			}
			fmt.Fprintln(stdout)
			for _, f := range c.Found {
				fmt.Fprintf(stdout, "         found instead: %s\n", f)
			}
		}
	}
	switch {
	case verified:
		if !asJSON {
			fmt.Fprintf(stdout, "Domain %s is verified.\n", d.Name)
		}
		return nil
	case !definite:
		return fmt.Errorf("domain verify: %s: DNS did not answer for every record (setting dns is %q); nothing was changed, try again", d.Name, cfg.DNS)
	default:
		return fmt.Errorf("domain verify: %s is not verified: %d of %d DKIM records are published as \"postern domain add\" printed them", d.Name, published, len(d.Keys))
	}
}

// checkRecord looks one key's TXT record up, within dnsTimeout.
func checkRecord(r dkim.TXTResolver, k store.DKIMKey) dkim.Check {
	ctx, cancel := context.WithTimeout(context.Background(), dnsTimeout)
	defer cancel()
	return dkim.CheckRecord(ctx, r, k)
}
