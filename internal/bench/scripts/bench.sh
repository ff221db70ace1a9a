#!/usr/bin/env bash
# make bench: Postern's standard scenarios, against a freshly started
# `postern serve` with a temporary store, relaying to a `postern sink`.
#
#   1  accept only, 2 KB, 1 and BENCH_SESSIONS sessions, many messages per connection
#   2  the same with 50 KB
#   3  end to end with DKIM signing: a Live server, a sending domain, to the sink
#   4  BENCH_SESSIONS sessions, one message per connection (connection setup and AUTH)
#   5  latency at a fixed offered load of half the maximum measured in 1
#
# The scenarios themselves are bench_scenarios in lib.sh, which compare.sh
# runs through Postfix too.
#
# "Accept only" sends with the token of a Sandbox server, whose messages are
# stored (fsync before the 250) and recorded as delivered, never sent. The
# end-to-end scenario sends from a domain of the account, so each message
# is signed (Ed25519 and RSA-2048), and delivered to bench@[127.0.0.1] at
# the sink's port (mx-port): an address literal, so no DNS is involved.
# With no DNS the domain cannot be verified, so serve runs with
# sender-policy registered; the sink is on loopback, hence
# allow-private-destinations; every session comes from 127.0.0.1, hence
# a high max-sessions-per-ip.
# Between scenarios the script waits for the relay queue to be empty.
#
# Prints one table and writes the results as JSON to BENCH_OUT (default
# bench-results.json), with the machine's core count, Go version and date.
#
# Settings (environment):
#   BENCH_OUT            the JSON file (default bench-results.json)
#   BENCH_SESSIONS       concurrent sessions of the many-session scenarios (32)
#   BENCH_MESSAGES       messages of the 2 KB many-session scenario (20000); the
#                        others scale from it unless set:
#   BENCH_MESSAGES_1     single-session scenarios (BENCH_MESSAGES/10)
#   BENCH_MESSAGES_50K   50 KB many-session scenario (BENCH_MESSAGES/4)
#   BENCH_MESSAGES_E2E   end to end (BENCH_MESSAGES/2)
#   BENCH_MESSAGES_ONE   one message per connection (BENCH_MESSAGES/4)
#   BENCH_RATE_SECONDS   length of the fixed-load scenario (10; at most BENCH_MESSAGES messages)
#   BENCH_PER_CONN       messages per connection when "many" (100)
#   BENCH_SINK, BENCH_SINK_STATS  use this sink (host:port, /stats URL) instead of starting one
#   BENCH_SERVE_ARGS     more flags for postern serve
#   BENCH_STORE          a PostgreSQL DSN: serve on that database, in a schema of its
#                        own (created with psql, dropped at the end) instead of bbolt
#   POSTERN_BIN          use this binary instead of building one
#   BENCH_KEEP=1         keep the work directory (logs, data) at the end
#   BENCH_COMPARE_EXTRA=1  what compare.sh sets: serve with sender-policy any (so
#                        that a Live server can send unsigned, From a domain that is
#                        not the account's), and two more scenarios, e2e-unsigned-2k
#                        and latency-half-load-live (bench_extra_scenarios in lib.sh)
set -euo pipefail
. "$(dirname "$0")/lib.sh"

BENCH_OUT=${BENCH_OUT:-bench-results.json}
bench_sizes
DOMAIN=bench.postern.test
FROM=bench@$DOMAIN

bench_setup
bench_start_sink
TO="bench@[127.0.0.1]"

# A fresh data directory: the account and its Sandbox server from init,
# a sending domain (its DKIM keys) added on the store before serve starts.
# With BENCH_STORE, the store is a new schema of that database.
DATA=$BENCH_WORK/data
if [[ -n "${BENCH_STORE:-}" ]]; then
	bench_pg_schema "$BENCH_STORE"
fi
"$POSTERN" init -data "$DATA" -json >"$BENCH_WORK/init.json"
ACCOUNT_TOKEN=$(bench_json "$BENCH_WORK/init.json" 'j["AccountToken"]')
SANDBOX_TOKEN=$(bench_json "$BENCH_WORK/init.json" 'j["ServerToken"]')
"$POSTERN" domain add "$DOMAIN" -data "$DATA" -json >"$BENCH_WORK/domain.json"

POLICY=registered
[[ -z "${BENCH_COMPARE_EXTRA:-}" ]] || POLICY=any
# shellcheck disable=SC2086 # BENCH_SERVE_ARGS is a list of flags
"$POSTERN" serve -data "$DATA" -smtp-addr 127.0.0.1:0 -api-addr 127.0.0.1:0 -console-addr off \
	-metrics-addr 127.0.0.1:0 -mx-port "$(bench_port "$SINK")" -allow-private-destinations -max-sessions-per-ip 10000 -sender-policy "$POLICY" -hostname postern.bench \
	${BENCH_SERVE_ARGS:-} >"$BENCH_WORK/serve.out" 2>"$BENCH_WORK/serve.log" &
BENCH_PIDS+=($!)
SERVE_PID=$!
addr_of() {
	local line
	line=$(bench_wait_line "$BENCH_WORK/serve.log" "msg=listening listener=$1 " "$SERVE_PID") || bench_die "postern serve did not start"
	line=${line##*addr=}
	printf '%s\n' "${line%% *}"
}
SMTP=$(addr_of smtp)
API=$(addr_of api)
METRICS=$(addr_of metrics)
bench_log "postern serve: smtp $SMTP, api $API, metrics $METRICS (pid $SERVE_PID)"

"$POSTERN" server create -token "$ACCOUNT_TOKEN" -url "http://$API" -json "Bench Live" >"$BENCH_WORK/live.json"
LIVE_TOKEN=$(bench_json "$BENCH_WORK/live.json" 'j["ApiTokens"][0]')

# wait_idle: until the relay queue is empty (at most 10 minutes).
wait_idle() {
	local i depth
	for ((i = 0; i < 3000; i++)); do
		depth=$(curl -fsS "http://$METRICS/metrics" | awk '$1 ~ /^postern_queue_depth/ {s += $2} END {print s + 0}') || depth=unknown
		[[ $depth == 0 ]] && return 0
		sleep 0.2
	done
	bench_die "the relay queue did not empty (depth $depth)"
}

# shellcheck disable=SC2034 # sandbox and live go to bench_scenarios by name
sandbox=(-addr "$SMTP" -from "$FROM" -to "$TO" -token "$SANDBOX_TOKEN")
# shellcheck disable=SC2034
live=(-addr "$SMTP" -from "$FROM" -to "$TO" -token "$LIVE_TOKEN")
bench_scenarios postern wait_idle sandbox live "DKIM-signed" "connect, EHLO, AUTH each" "the"
if [[ -n "${BENCH_COMPARE_EXTRA:-}" ]]; then
	# shellcheck disable=SC2034
	unsigned=(-addr "$SMTP" -from "bench@unsigned.postern.test" -to "$TO" -token "$LIVE_TOKEN")
	RATE=$(bench_json "$BENCH_WORK/results/postern-accept-2k.json" 'max(1, int(j["Result"]["MessagesPerSecond"] / 2))')
	bench_extra_scenarios postern wait_idle unsigned live "$RATE" "a Live server, DKIM-signed"
fi
# The peak resident set of postern serve over every scenario.
PEAK_RSS_KB=$(awk '$1 == "VmHWM:" {print $2}' "/proc/$SERVE_PID/status" 2>/dev/null || true)

python3 "$(dirname "$0")/report.py" -out "$BENCH_OUT" -command "${BENCH_COMMAND:-make bench}" \
	-go "$(${GO:-go} version "$POSTERN" 2>/dev/null | awk '{print $NF}')" -version "$("$POSTERN" version)" \
	-peak-rss-kb "${PEAK_RSS_KB:-0}" "${BENCH_RESULTS[@]}"
