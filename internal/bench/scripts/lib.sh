# shellcheck shell=bash
# Shared by bench.sh and compare.sh (sourced, not run): building postern,
# starting and stopping what a benchmark needs, by PID, and running one
# scenario with `postern bench -json`.

# Every process started here, stopped in reverse order by bench_cleanup.
BENCH_PIDS=()
# The result files of bench_run, in the order run.
BENCH_RESULTS=()

bench_log() { printf '%s\n' "$*" >&2; }
bench_die() {
	bench_log "bench: $*"
	exit 1
}

# bench_setup makes the work directory (BENCH_WORK) and the postern binary
# (POSTERN, built there unless POSTERN_BIN names one), and sets the trap
# that stops everything on exit.
bench_setup() {
	BENCH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
	BENCH_WORK=$(mktemp -d "${TMPDIR:-/tmp}/postern-bench.XXXXXX")
	# Other load on the machine skews everything: the table shows it.
	BENCH_LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || true)
	export BENCH_LOAD_START
	trap bench_cleanup EXIT
	trap 'exit 130' INT TERM
	command -v python3 >/dev/null || bench_die "python3 is needed (for JSON and the table)"
	command -v curl >/dev/null || bench_die "curl is needed"
	if [[ -n "${POSTERN_BIN:-}" ]]; then
		POSTERN=$(cd "$(dirname "$POSTERN_BIN")" && pwd)/$(basename "$POSTERN_BIN")
	else
		POSTERN=$BENCH_WORK/postern
		bench_log "building postern"
		(cd "$BENCH_ROOT" && ${GO:-go} build -o "$POSTERN" ./cmd/postern) || bench_die "build failed"
	fi
	local usage
	usage=$("$POSTERN" help)
	if ! grep -q '^  bench ' <<<"$usage" || ! grep -q '^  sink ' <<<"$usage"; then
		bench_die "this postern has no bench or sink command"
	fi
}

# bench_stop PID: SIGTERM, then SIGKILL after 15 s.
bench_stop() {
	local pid=$1 i
	kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < 150; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		bench_log "bench: $pid did not stop; killing it"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
}

# bench_pg_schema creates a schema of its own in the PostgreSQL database
# of the DSN $1 and exports POSTERN_STORE to use it; bench_cleanup drops it.
bench_pg_schema() {
	command -v psql >/dev/null || bench_die "BENCH_STORE needs psql"
	BENCH_PG_DSN=$1
	BENCH_PG_SCHEMA=bench_$$_$RANDOM
	psql -q -v ON_ERROR_STOP=1 "$BENCH_PG_DSN" -c "CREATE SCHEMA $BENCH_PG_SCHEMA" || bench_die "cannot create a schema in BENCH_STORE"
	local sep='?'
	[[ $BENCH_PG_DSN == *\?* ]] && sep='&'
	export POSTERN_STORE="$BENCH_PG_DSN${sep}search_path=$BENCH_PG_SCHEMA"
}

bench_cleanup() {
	local status=$? i
	trap - EXIT
	if declare -F bench_cleanup_extra >/dev/null; then
		bench_cleanup_extra || true
	fi
	for ((i = ${#BENCH_PIDS[@]} - 1; i >= 0; i--)); do
		bench_stop "${BENCH_PIDS[i]}"
	done
	if [[ -n "${BENCH_PG_SCHEMA:-}" ]]; then
		psql -q "$BENCH_PG_DSN" -c "SET client_min_messages = warning; DROP SCHEMA $BENCH_PG_SCHEMA CASCADE" || true
	fi
	if [[ -n "${BENCH_WORK:-}" && -d "$BENCH_WORK" ]]; then
		if [[ $status -ne 0 && $status -ne 3 ]]; then
			bench_log "bench: failed (status $status); logs kept in $BENCH_WORK"
		elif [[ -n "${BENCH_KEEP:-}" ]]; then
			bench_log "bench: work directory kept: $BENCH_WORK"
		else
			rm -rf -- "$BENCH_WORK"
		fi
	fi
	exit "$status"
}

# bench_wait_line FILE PATTERN PID: waits up to 30 s for a line of FILE
# matching the extended regexp PATTERN, and prints it.
bench_wait_line() {
	local file=$1 pattern=$2 pid=$3 i line
	for ((i = 0; i < 300; i++)); do
		line=$(grep -E -m1 -- "$pattern" "$file" 2>/dev/null || true)
		if [[ -n "$line" ]]; then
			printf '%s\n' "$line"
			return 0
		fi
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	bench_log "bench: no line matching /$pattern/ in $file:"
	tail -n 20 "$file" >&2
	return 1
}

# bench_start_sink sets SINK (host:port) and SINK_STATS (the /stats URL),
# using BENCH_SINK and BENCH_SINK_STATS when both are given.
bench_start_sink() {
	if [[ -n "${BENCH_SINK:-}" && -n "${BENCH_SINK_STATS:-}" ]]; then
		SINK=$BENCH_SINK SINK_STATS=$BENCH_SINK_STATS
		return
	fi
	"$POSTERN" sink -addr 127.0.0.1:0 -stats-addr 127.0.0.1:0 >"$BENCH_WORK/sink.log" 2>&1 &
	BENCH_PIDS+=($!)
	local pid=$! line
	line=$(bench_wait_line "$BENCH_WORK/sink.log" 'sink listening on ' "$pid") || bench_die "the sink did not start"
	SINK=${line##*sink listening on }
	SINK=${SINK%% *}
	line=$(bench_wait_line "$BENCH_WORK/sink.log" 'sink stats on ' "$pid") || bench_die "the sink's stats did not start"
	line=${line##*sink stats on }
	line=${line%% *}
	line=${line#http://}
	SINK_STATS=http://${line%/stats}/stats
	bench_log "sink on $SINK, stats at $SINK_STATS"
}

# bench_port ADDR prints the port of host:port.
bench_port() { printf '%s\n' "${1##*:}"; }

# bench_json FILE EXPR prints the Python expression EXPR over the JSON
# object in FILE, called j.
bench_json() {
	python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"
}

# bench_run NAME DESCRIPTION TARGET ARGS...: runs `postern bench -json
# -quiet` with ARGS, saving its JSON object as $BENCH_WORK/results/NAME.json
# with the scenario's name, description and target (postern, postfix).
bench_run() {
	local name=$1 desc=$2 target=$3
	shift 3
	mkdir -p "$BENCH_WORK/results"
	bench_log "$target: $name: $desc"
	local out=$BENCH_WORK/results/$target-$name.json
	if ! "$POSTERN" bench -json -quiet "$@" >"$out.raw" 2>"$out.err"; then
		bench_log "bench: postern bench $* failed:"
		cat "$out.err" >&2
		return 1
	fi
	python3 - "$out.raw" "$out" "$name" "$desc" "$target" "$*" <<'EOF' >&2
import json, sys
raw, out, name, desc, target, args = sys.argv[1:]
with open(raw) as f:
    r = json.load(f)
with open(out, "w") as f:
    json.dump({"Name": name, "Description": desc, "Target": target, "Args": args, "Result": r}, f)
e2e = r.get("EndToEnd") or {}
line = "  %s/s, %s of %s accepted, p99 %s ms" % (round(r.get("MessagesPerSecond") or 0), r.get("Accepted"), r.get("Sent"), (r.get("LatencyMs") or {}).get("P99"))
if e2e:
    line += "; end to end %s/s, %s arrived" % (round(e2e.get("MessagesPerSecond") or 0), e2e.get("Delivered"))
print(line)
# Not a failure (a refusal is a result too), but worth seeing.
if r.get("Accepted") != r.get("Sent") or e2e.get("TimedOut"):
    print("  warning: %s of %s accepted%s; first error: %s" % (r.get("Accepted"), r.get("Sent"),
          ", the sink did not get them all in time" if e2e.get("TimedOut") else "", r.get("FirstError")))
EOF
	BENCH_RESULTS+=("$out")
}

# bench_sizes sets the scenarios' sizes from the BENCH_* settings (see
# bench.sh), the same for Postern and for Postfix.
bench_sizes() {
	atleast1() { if (($1 < 1)); then echo 1; else echo "$1"; fi; }
	SESSIONS=${BENCH_SESSIONS:-32}
	MESSAGES=${BENCH_MESSAGES:-20000}
	M1=${BENCH_MESSAGES_1:-$(atleast1 $((MESSAGES / 10)))}
	M50=${BENCH_MESSAGES_50K:-$(atleast1 $((MESSAGES / 4)))}
	M50_1=$(atleast1 $((M50 / 10)))
	ME2E=${BENCH_MESSAGES_E2E:-$(atleast1 $((MESSAGES / 2)))}
	MONE=${BENCH_MESSAGES_ONE:-$(atleast1 $((MESSAGES / 4)))}
	RATE_SECONDS=${BENCH_RATE_SECONDS:-10}
	PER_CONN=${BENCH_PER_CONN:-100}
}

# bench_sink_signed prints how many messages the sink has seen arrive
# with a DKIM-Signature field.
bench_sink_signed() {
	curl -fsS "$SINK_STATS" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Signed"])' ||
		bench_die "cannot read the sink's signed count at $SINK_STATS"
}

# bench_check_signed TARGET NAME BEFORE all|none: after the end-to-end
# scenario NAME, checks that every message it delivered to the sink (or
# none) carried a DKIM-Signature, BEFORE being the sink's signed count
# before it; a signer that did not sign fails the benchmark rather than
# giving figures of unsigned mail.
bench_check_signed() {
	local target=$1 name=$2 before=$3 want=$4 after delivered
	after=$(bench_sink_signed)
	delivered=$(bench_json "$BENCH_WORK/results/$target-$name.json" '(j["Result"].get("EndToEnd") or {}).get("Delivered", 0)')
	if [[ $want == all ]]; then
		((after - before == delivered)) || bench_die "$target: $name: $((after - before)) of the $delivered messages delivered to the sink carried a DKIM-Signature"
	else
		((after == before)) || bench_die "$target: $name: $((after - before)) messages arrived signed, want none"
	fi
	bench_log "  $((after - before)) of $delivered arrived with a DKIM-Signature"
}

# bench_extra_scenarios TARGET IDLE UNSIGNED LIVE RATE WHAT: the scenarios
# of make bench-compare only: end to end unsigned (UNSIGNED names the
# array of `postern bench` flags), and the latency of relayed mail (LIVE)
# at the offered RATE, half of Postern's maximum of accept-2k; WHAT says
# what the relayed path does.
bench_extra_scenarios() {
	local target=$1 idle=$2 rate=$5 what=$6 signed messages
	local -n unsigned_args=$3 live_args=$4
	signed=$(bench_sink_signed)
	bench_run e2e-unsigned-2k "end to end, unsigned, 2 KB, $SESSIONS sessions, into the sink" "$target" \
		"${unsigned_args[@]}" -sessions "$SESSIONS" -messages "$ME2E" -size 2048 -per-conn "$PER_CONN" \
		-sink-stats "$SINK_STATS" -wait 10m
	$idle
	bench_check_signed "$target" e2e-unsigned-2k "$signed" none
	messages=$((rate * RATE_SECONDS))
	((messages <= MESSAGES)) || messages=$MESSAGES
	bench_run latency-half-load-live "2 KB, $SESSIONS sessions, relayed ($what), offered $rate/s (half Postern's maximum of accept-2k)" "$target" \
		"${live_args[@]}" -sessions "$SESSIONS" -messages "$messages" -size 2048 -per-conn "$PER_CONN" -rate "$rate"
	$idle
}

# bench_scenarios TARGET IDLE ACCEPT E2E E2E_WHAT CONN_WHAT MAX_WHAT: the
# standard scenarios, in order, the same for Postern and for Postfix.
# TARGET is postern or postfix; IDLE the command that waits until its
# queue is empty after each; ACCEPT and E2E name arrays of `postern bench`
# flags (address, token, ...) for the accept-only scenarios and for end to
# end; the last three words say, in the descriptions, what the end-to-end
# path does, what each new connection costs, and whose maximum the fixed
# load is half of.
bench_scenarios() {
	local target=$1 idle=$2 e2e_what=$5 conn_what=$6 max_what=$7
	local -n accept_args=$3 e2e_args=$4
	bench_run accept-2k-1 "accept only, 2 KB, 1 session, $PER_CONN per connection" "$target" \
		"${accept_args[@]}" -sessions 1 -messages "$M1" -size 2048 -per-conn "$PER_CONN"
	$idle
	bench_run accept-2k "accept only, 2 KB, $SESSIONS sessions, $PER_CONN per connection" "$target" \
		"${accept_args[@]}" -sessions "$SESSIONS" -messages "$MESSAGES" -size 2048 -per-conn "$PER_CONN"
	$idle
	bench_run accept-50k-1 "accept only, 50 KB, 1 session, $PER_CONN per connection" "$target" \
		"${accept_args[@]}" -sessions 1 -messages "$M50_1" -size 51200 -per-conn "$PER_CONN"
	$idle
	bench_run accept-50k "accept only, 50 KB, $SESSIONS sessions, $PER_CONN per connection" "$target" \
		"${accept_args[@]}" -sessions "$SESSIONS" -messages "$M50" -size 51200 -per-conn "$PER_CONN"
	$idle
	local signed
	signed=$(bench_sink_signed)
	bench_run e2e-dkim-2k "end to end ($e2e_what), 2 KB, $SESSIONS sessions, into the sink" "$target" \
		"${e2e_args[@]}" -sessions "$SESSIONS" -messages "$ME2E" -size 2048 -per-conn "$PER_CONN" \
		-sink-stats "$SINK_STATS" -wait 10m
	$idle
	bench_check_signed "$target" e2e-dkim-2k "$signed" all
	bench_run one-per-conn-2k "accept only, 2 KB, $SESSIONS sessions, 1 per connection ($conn_what)" "$target" \
		"${accept_args[@]}" -sessions "$SESSIONS" -messages "$MONE" -size 2048 -per-conn 1
	$idle
	local max rate messages
	max=$(bench_json "$BENCH_WORK/results/$target-accept-2k.json" 'j["Result"]["MessagesPerSecond"]')
	rate=$(python3 -c 'import sys; print(max(1, int(float(sys.argv[1]) / 2)))' "$max")
	messages=$((rate * RATE_SECONDS))
	((messages <= MESSAGES)) || messages=$MESSAGES
	bench_run latency-half-load "2 KB, $SESSIONS sessions, offered $rate/s (half $max_what maximum of accept-2k)" "$target" \
		"${accept_args[@]}" -sessions "$SESSIONS" -messages "$messages" -size 2048 -per-conn "$PER_CONN" -rate "$rate"
	$idle
}
