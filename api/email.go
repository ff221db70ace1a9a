package api

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/mail"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/postern/postern/internal/domainname"
	"github.com/postern/postern/internal/message"
	"github.com/postern/postern/internal/privateaddr"
	"github.com/postern/postern/internal/unsubscribe"
	"github.com/postern/postern/store"
)

// Postmark's ErrorCodes of the sending endpoints.
const (
	codeInvalidEmail      = 300
	codeSenderNotDefined  = 400
	codeSenderUnconfirmed = 401
	codeInactiveRecipient = 406
	codeRateLimited       = 429
	codeStreamNotFound    = 1235
)

// MaxBatch is how many messages POST /email/batch takes, and
// maxBatchBody how large its request may be (Postmark's limits).
const (
	MaxBatch     = 500
	maxBatchBody = 50 << 20
)

// Results of postern_api_emails_total.
var EmailResults = []string{"accepted", "refused", "failed"}

func (a *API) registerEmail() {
	a.mux.HandleFunc("POST /email", a.server(a.sendEmail))
	a.mux.HandleFunc("POST /email/batch", a.server(a.sendBatch))
}

// EmailRequest is Postmark's message, as POST /email takes it.
type EmailRequest struct {
	From          string
	To            string
	Cc            string
	Bcc           string
	Subject       string
	Tag           string
	HtmlBody      string
	TextBody      string
	ReplyTo       string
	Headers       []NameValue
	Metadata      map[string]string
	MessageStream string
	// TrackOpens and TrackLinks are accepted, and do nothing: Postern
	// tracks no opens or clicks (docs/api.md).
	TrackOpens  bool
	TrackLinks  string
	Attachments []EmailAttachment
}

// NameValue is one header of a request.
type NameValue struct{ Name, Value string }

// EmailAttachment is a file of a request; Content is base64.
type EmailAttachment struct {
	Name        string
	Content     string
	ContentType string
	ContentID   string
}

// EmailResponse is Postmark's answer to one message.
type EmailResponse struct {
	To          string    `json:",omitempty"`
	SubmittedAt time.Time `json:",omitzero"`
	MessageID   string    `json:",omitempty"`
	ErrorCode   int
	Message     string
}

// sendEmail serves POST /email.
func (a *API) sendEmail(w http.ResponseWriter, r *http.Request, srv store.Server) error {
	if a.cfg.Foreground != nil {
		defer a.cfg.Foreground()()
	}
	var req EmailRequest
	if err := a.decodeUpTo(r, &req, a.emailBodyLimit()); err != nil {
		return err
	}
	resp, err := a.submit(r, srv, req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// sendBatch serves POST /email/batch: one answer per message, in order.
// The messages are filed concurrently, so that the store commits them
// together (group commit), not one sync each.
func (a *API) sendBatch(w http.ResponseWriter, r *http.Request, srv store.Server) error {
	if a.cfg.Foreground != nil {
		defer a.cfg.Foreground()()
	}
	var reqs []EmailRequest
	if err := a.decodeUpTo(r, &reqs, max(maxBatchBody, a.emailBodyLimit())); err != nil {
		return err
	}
	if len(reqs) > MaxBatch {
		return unprocessable(codeInvalidEmail, "A batch may hold at most %d messages; this one has %d.", MaxBatch, len(reqs))
	}
	out := make([]EmailResponse, len(reqs))
	var wg sync.WaitGroup
	var failed error
	var mu sync.Mutex
	for i, req := range reqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := a.submit(r, srv, req)
			var ae *apiError
			switch {
			case errors.As(err, &ae):
				out[i] = EmailResponse{ErrorCode: ae.body.ErrorCode, Message: ae.body.Message}
			case err != nil:
				mu.Lock()
				failed = err
				mu.Unlock()
				out[i] = EmailResponse{ErrorCode: 0, Message: "Internal server error; the message was not sent."}
			default:
				out[i] = resp
			}
		}()
	}
	wg.Wait()
	if failed != nil {
		a.cfg.Logger.Error("api: batch: a message could not be filed", "server", srv.ID, "err", failed)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// emailBodyLimit bounds one message's request: its largest size, with
// base64's third more for attachments, and room for the rest.
func (a *API) emailBodyLimit() int64 {
	return int64(a.cfg.MaxMessageBytes)*4/3 + 1<<20
}

// submit checks one message by the rules SMTP applies, composes it and
// files it. The error is an *apiError with Postmark's code, or a failure
// of the store.
func (a *API) submit(r *http.Request, srv store.Server, req EmailRequest) (EmailResponse, error) {
	resp, err := a.submitChecked(r, srv, req)
	result := "accepted"
	var ae *apiError
	switch {
	case errors.As(err, &ae):
		result = "refused"
	case err != nil:
		result = "failed"
	}
	if a.emails != nil {
		a.emails.WithLabelValues(formatID(srv.ID), result).Inc()
	}
	return resp, err
}

func (a *API) submitChecked(r *http.Request, srv store.Server, req EmailRequest) (EmailResponse, error) {
	invalid := func(format string, args ...any) (EmailResponse, error) {
		return EmailResponse{}, unprocessable(codeInvalidEmail, format, args...)
	}
	from, err := mail.ParseAddress(req.From)
	if err != nil || !strings.Contains(from.Address, "@") {
		return invalid("Invalid 'From' address: %q.", req.From)
	}
	lists := map[string][]*mail.Address{}
	var recipients []string
	seen := map[string]bool{}
	for _, f := range []struct{ name, value string }{{"To", req.To}, {"Cc", req.Cc}, {"Bcc", req.Bcc}, {"ReplyTo", req.ReplyTo}} {
		if strings.TrimSpace(f.value) == "" {
			continue
		}
		list, err := mail.ParseAddressList(f.value)
		if err != nil {
			return invalid("Invalid '%s' address: %q (%v).", f.name, f.value, strings.TrimPrefix(err.Error(), "mail: "))
		}
		lists[f.name] = list
		if f.name == "ReplyTo" {
			continue
		}
		for _, addr := range list {
			key := strings.ToLower(addr.Address)
			if !seen[key] {
				seen[key] = true
				recipients = append(recipients, addr.Address)
			}
		}
	}
	switch {
	case len(recipients) == 0:
		return invalid("Invalid 'To' address: the message needs at least one recipient in To, Cc or Bcc.")
	case len(recipients) > a.cfg.MaxRecipients:
		return invalid("The message has %d recipients in To, Cc and Bcc; at most %d are allowed.", len(recipients), a.cfg.MaxRecipients)
	case req.TextBody == "" && req.HtmlBody == "":
		return invalid("Provide either email TextBody or HtmlBody or both.")
	case len(req.Tag) > 1000:
		return invalid("The Tag is longer than 1000 characters.")
	}
	streamID := req.MessageStream
	if streamID == "" {
		streamID = store.DefaultStreamID
	}
	stream, err := a.stream(srv, streamID)
	var ae *apiError
	switch {
	case errors.As(err, &ae):
		return EmailResponse{}, unprocessable(codeStreamNotFound, "The message stream %q was not found on this server.", streamID)
	case err != nil:
		return EmailResponse{}, err
	case !stream.ArchivedAt.IsZero():
		return EmailResponse{}, unprocessable(codeStreamNotFound, "The message stream %q is archived; unarchive it to send.", streamID)
	case stream.Type == store.StreamBroadcasts && len(recipients) != 1:
		return invalid("A message of the Broadcasts stream %q goes to one recipient, so that its unsubscribe link is theirs; this one has %d.", streamID, len(recipients))
	}
	for _, rcpt := range recipients {
		at := strings.LastIndexByte(rcpt, '@')
		if at < 0 {
			return invalid("Invalid recipient address %q.", rcpt)
		}
		if ip, ok := privateaddr.AddressLiteral(rcpt[at+1:]); ok && privateaddr.Is(ip) && !a.cfg.AllowPrivateDestinations {
			return invalid("The recipient %s is at %s, a loopback, private or link-local address, to which Postern does not deliver.", rcpt, ip)
		}
	}
	headers := make([]message.HeaderField, len(req.Headers))
	for i, h := range req.Headers {
		headers[i] = message.HeaderField{Name: h.Name, Value: h.Value}
		if err := message.CheckHeader(headers[i]); err != nil {
			return invalid("Headers: %v.", err)
		}
	}
	atts := make([]message.Attachment, len(req.Attachments))
	for i, att := range req.Attachments {
		content, err := base64.StdEncoding.DecodeString(att.Content)
		if err != nil {
			return invalid("Attachment %q: Content is not base64: %v.", att.Name, err)
		}
		if att.Name == "" || strings.ContainsAny(att.Name, "\r\n") {
			return invalid("Attachment %d: Name is required, on one line.", i+1)
		}
		atts[i] = message.Attachment{Name: att.Name, Content: content, ContentType: att.ContentType, ContentID: att.ContentID}
	}

	// The sender policy, as over SMTP.
	if a.cfg.SenderPolicy.Checks(srv) {
		domain := domainname.Normalize(from.Address[strings.LastIndexByte(from.Address, '@')+1:])
		d, lookupErr := a.cfg.Store.DomainByName(domain)
		switch err := a.cfg.SenderPolicy.CheckSenderDomain(srv, d, lookupErr); {
		case errors.Is(err, store.ErrSenderNotRegistered):
			return EmailResponse{}, unprocessable(codeSenderNotDefined,
				"The 'From' address you supplied (%s) is not a Sender Signature on your account: %s is not a domain of this account.", from.Address, domain)
		case errors.Is(err, store.ErrSenderNotVerified):
			return EmailResponse{}, unprocessable(codeSenderUnconfirmed,
				"The 'From' address you supplied (%s) has not been confirmed: the DKIM records of %s were not found in DNS yet.", from.Address, domain)
		case err != nil:
			return EmailResponse{}, err
		}
	}
	// Inactive recipients, as over SMTP: for the server (bounces), or
	// for the stream (unsubscribes, manual suppressions).
	var inactive []string
	for _, rcpt := range recipients {
		_, found, err := a.cfg.Store.Suppressed(srv.ID, rcpt)
		if err != nil {
			return EmailResponse{}, err
		}
		if !found {
			if _, found, err = a.cfg.Store.StreamSuppressed(srv.ID, stream.ID, rcpt); err != nil {
				return EmailResponse{}, err
			}
		}
		if found {
			inactive = append(inactive, rcpt)
		}
	}
	if len(inactive) > 0 {
		return EmailResponse{}, unprocessable(codeInactiveRecipient,
			"You tried to send to recipient(s) that have been marked as inactive. Found inactive addresses: %s. Inactive recipients are ones that have generated a hard bounce or a spam complaint.",
			strings.Join(inactive, ", "))
	}

	now := a.cfg.Now().UTC()
	id := store.NewMessageID()
	unsubscribeLink := ""
	if stream.UnsubscribeHandling == "Postmark" {
		key, err := a.cfg.Store.InstallationKey()
		if err != nil {
			return EmailResponse{}, err
		}
		unsubscribeLink = unsubscribe.Link(key, a.cfg.PublicURL, unsubscribe.Target{ServerID: srv.ID, Stream: stream.ID, Email: recipients[0], MessageID: id})
	}
	raw, err := message.Compose(message.Email{
		ListUnsubscribe: unsubscribeLink, OneClick: unsubscribeLink != "",
		From: from, To: lists["To"], Cc: lists["Cc"], ReplyTo: lists["ReplyTo"],
		Subject: req.Subject, TextBody: req.TextBody, HTML: req.HtmlBody,
		Headers: headers, Attachments: atts,
		MessageID: "<" + id + "@" + a.cfg.Hostname + ">",
		Date:      now,
		Received: fmt.Sprintf("Received: from [%s]\r\n\tby %s (Postern) with HTTP id %s;\r\n\t%s",
			clientIP(r), a.cfg.Hostname, id, now.Format(time.RFC1123Z)),
	})
	if err != nil {
		return invalid("%v", err)
	}
	if len(raw) > a.cfg.MaxMessageBytes {
		return invalid("The message is %d bytes; at most %d are allowed.", len(raw), a.cfg.MaxMessageBytes)
	}
	msg := store.Message{
		MessageID:     id,
		ServerID:      srv.ID,
		EnvelopeFrom:  from.Address,
		From:          formatAddress(from),
		To:            storeAddresses(lists["To"]),
		Cc:            storeAddresses(lists["Cc"]),
		Bcc:           storeAddresses(lists["Bcc"]),
		Recipients:    recipients,
		Subject:       req.Subject,
		Tag:           req.Tag,
		Metadata:      req.Metadata,
		MessageStream: stream.ID,
		ReceivedAt:    now,
		Size:          len(raw),
		Status:        store.StatusQueued,
	}
	if err := a.cfg.Store.Enqueue(store.Accept(srv, msg, raw)); err != nil {
		var limit *store.LimitError
		switch {
		case errors.As(err, &limit) && limit.PerDay:
			return EmailResponse{}, errorf(http.StatusTooManyRequests, codeRateLimited, "The server's daily quota of %d messages is reached; it resets at 00:00 UTC.", limit.Max)
		case errors.As(err, &limit):
			return EmailResponse{}, errorf(http.StatusTooManyRequests, codeRateLimited, "The server's rate limit of %d messages per minute is reached; try again in a minute.", limit.Max)
		case errors.Is(err, store.ErrServerMissing):
			return EmailResponse{}, serverNotFound()
		case errors.Is(err, syscall.ENOSPC):
			return EmailResponse{}, errorf(http.StatusServiceUnavailable, 0, "The store is full; the message was not sent. Try again later.")
		}
		return EmailResponse{}, err
	}
	if a.cfg.Accepted != nil {
		a.cfg.Accepted(srv.ID, id)
	}
	return EmailResponse{To: req.To, SubmittedAt: now, MessageID: id, ErrorCode: 0, Message: "OK"}, nil
}

func storeAddresses(list []*mail.Address) []store.Address {
	if len(list) == 0 {
		return nil
	}
	out := make([]store.Address, len(list))
	for i, a := range list {
		out[i] = store.Address{Email: a.Address, Name: a.Name}
	}
	return out
}

// formatAddress writes an address as a From field shows it, decoded.
func formatAddress(a *mail.Address) string {
	if a.Name == "" {
		return a.Address
	}
	return fmt.Sprintf("%s <%s>", a.Name, a.Address)
}

// clientIP is the request's remote address, for the Received field.
func clientIP(r *http.Request) string {
	host := r.RemoteAddr
	if i := strings.LastIndexByte(host, ':'); i >= 0 {
		host = host[:i]
	}
	return strings.Trim(host, "[]")
}
