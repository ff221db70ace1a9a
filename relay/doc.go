// Package relay delivers queued messages: it signs them with DKIM, finds
// each destination's mail servers and hands the message over SMTP,
// classifying every reply.
package relay
