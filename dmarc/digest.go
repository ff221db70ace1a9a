package dmarc

import (
	"fmt"
	"strings"
	"time"
)

// Digest is the week's summary of who sent as a domain, for people: the
// messages and the share that passed DMARC, the unknown sources first,
// then the top sources, and the policy advice.
func Digest(domain string, from, to time.Time, total, pass int64, sources []Source, advice Advice) string {
	var b strings.Builder
	fmt.Fprintf(&b, "DMARC digest for %s, %s to %s (UTC)\n\n", domain, from.UTC().Format(time.DateOnly), to.UTC().Format(time.DateOnly))
	if total == 0 {
		b.WriteString("No report arrived for this period.\n\n")
	} else {
		fmt.Fprintf(&b, "%d messages claimed to be from %s; %d (%.1f%%) passed DMARC.\n\n", total, domain, pass, 100*float64(pass)/float64(total))
	}
	var unknown, rest []Source
	for _, s := range sources {
		if !s.ViaPostern && !s.Known {
			unknown = append(unknown, s)
		} else {
			rest = append(rest, s)
		}
	}
	table := func(title string, list []Source, max int) {
		if len(list) == 0 {
			return
		}
		fmt.Fprintf(&b, "%s:\n", title)
		for i, s := range list {
			if i == max {
				fmt.Fprintf(&b, "  … and %d more\n", len(list)-max)
				break
			}
			name := s.Hostname
			if name == "" {
				name = "(no name)"
			}
			fmt.Fprintf(&b, "  %-39s %-40s %8d messages, %d passed\n", s.IP, name, s.Messages, s.DmarcPass)
		}
		b.WriteString("\n")
	}
	table("Unknown sources: neither Postern nor marked known", unknown, 20)
	table("Top sources", rest, 10)
	if advice.Next != "" {
		fmt.Fprintf(&b, "Advice: move to p=%s. %s\n", advice.Next, advice.Reason)
	} else {
		fmt.Fprintf(&b, "Advice: %s\n", advice.Reason)
	}
	return b.String()
}
