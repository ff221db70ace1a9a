package main

// postern user list|add|edit|remove: the account's people, over the HTTP
// API with an account token.

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"

	"github.com/postern/postern/api"
	"github.com/postern/postern/api/client"
)

const userUsage = `Usage: postern user list [-json]
       postern user add -email EMAIL -role Owner|Admin|Member [-server ID:Admin|Viewer ...] [-password-stdin] [-json]
       postern user edit ID -role Owner|Admin|Member [-server ID:Admin|Viewer ...] [-json]
       postern user remove ID

The people of the account whose token is given (-token or POSTERN_TOKEN;
-url or POSTERN_URL): Owners and Admins have the whole account, Members
the servers granted, as Admin (everything on the server) or Viewer
(activity and stats). Without a password, add prints a one-time link,
valid 24 hours, where the person sets one in the console. The same email
in another account is the same person. Only an owner token manages
Owners; the last Owner stays.
`

// grantList is the repeatable -server flag.
type grantList []api.ServerAccess

func (g *grantList) String() string { return fmt.Sprint(*g) }

func (g *grantList) Set(v string) error {
	id, access, ok := strings.Cut(v, ":")
	n, err := strconv.ParseInt(id, 10, 64)
	if !ok || err != nil {
		return fmt.Errorf("%q is not ID:Admin or ID:Viewer", v)
	}
	*g = append(*g, api.ServerAccess{ServerID: n, Access: access})
	return nil
}

func userCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, userUsage)
		return errors.New("user: a command is needed: list, add, edit or remove")
	}
	sub := args[0]
	switch sub {
	case "list", "add", "edit", "remove":
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, userUsage)
		return nil
	default:
		fmt.Fprint(stderr, userUsage)
		return fmt.Errorf("user: unknown command %q", sub)
	}
	fs := flag.NewFlagSet("user "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, userUsage) }
	var f cliFlags
	f.bind(fs, "an account token")
	email := fs.String("email", "", "the person's email")
	role := fs.String("role", "", "Owner, Admin or Member")
	fromStdin := fs.Bool("password-stdin", false, "read the password from the first line of standard input (at least 12 characters)")
	var grants grantList
	fs.Var(&grants, "server", "a Member's server, ID:Admin or ID:Viewer (repeatable)")
	pos, err := parseArgs(fs, args[1:])
	if err != nil {
		return err
	}
	c, err := f.client("user "+sub, client.AccountToken)
	if err != nil {
		return err
	}
	var id string
	if sub == "edit" || sub == "remove" {
		if len(pos) != 1 {
			return fmt.Errorf("user %s: one user ID is needed", sub)
		}
		id, pos = pos[0], nil
	}
	if len(pos) > 0 {
		return fmt.Errorf("user %s: unexpected argument %q", sub, pos[0])
	}
	body := map[string]any{"Role": *role, "Servers": []api.ServerAccess(grants)}
	if grants == nil {
		body["Servers"] = []api.ServerAccess{}
	}
	switch sub {
	case "list":
		var list api.UserList
		data, err := c.do(http.MethodGet, "/users", nil, &list)
		if err != nil {
			return err
		}
		return f.printAnswerTable(stdout, data, func(tw io.Writer) {
			fmt.Fprintln(tw, "ID\tEMAIL\tROLE\tSERVERS\tTWO-FACTOR")
			for _, u := range list.Users {
				var servers []string
				for _, s := range u.Servers {
					servers = append(servers, fmt.Sprintf("%d:%s", s.ServerID, s.Access))
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", u.ID, u.Email, u.Role, strings.Join(servers, ","), yesNo(u.TwoFactor))
			}
			fmt.Fprintf(tw, "%d people\n", list.TotalCount)
		})
	case "add":
		body["Email"] = *email
		if *fromStdin {
			line, err := bufio.NewReader(os.Stdin).ReadString('\n')
			if err != nil && line == "" {
				return fmt.Errorf("user add: reading the password: %v", err)
			}
			body["Password"] = strings.TrimRight(line, "\r\n")
		}
		var u api.UserView
		data, err := c.do(http.MethodPost, "/users", body, &u)
		if err != nil {
			return err
		}
		return f.printAnswer(stdout, data, func() {
			fmt.Fprintf(stdout, "%s is user %d, %s of this account.\n", u.Email, u.ID, u.Role)
			if u.SignInURL != "" {
				fmt.Fprintf(stdout, "One-time link to set a password, valid 24 hours, shown only now:\n%s\n", u.SignInURL)
			}
		})
	case "edit":
		var u api.UserView
		data, err := c.do(http.MethodPut, "/users/"+id, body, &u)
		if err != nil {
			return err
		}
		return f.printAnswer(stdout, data, func() { fmt.Fprintf(stdout, "%s is now %s.\n", u.Email, u.Role) })
	}
	var res api.Error
	data, err := c.do(http.MethodDelete, "/users/"+id, nil, &res)
	if err != nil {
		return err
	}
	return f.printAnswer(stdout, data, func() { fmt.Fprintln(stdout, res.Message) })
}
