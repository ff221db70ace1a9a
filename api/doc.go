// Package api serves Postern's HTTP API in Postmark's dialect (servers,
// messages, stats, bounces, domains) and its web pages.
package api
