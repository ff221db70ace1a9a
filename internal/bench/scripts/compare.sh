#!/usr/bin/env bash
# make bench-compare: the scenarios of bench.sh through Postern and then
# through Debian's Postfix on loopback, driven by the same `postern bench`
# into the same `postern sink`, and the Postern/Postfix ratios of this run.
#
# Postfix is installed if missing (apt-get, preseeded "No configuration",
# so no system instance is set up) and run as a private instance: its own
# configuration directory, queue and data directories in a temporary
# directory, smtpd on two high loopback ports, no AUTH (Postfix's SASL
# needs Dovecot or Cyrus), mynetworks = 127.0.0.0/8, and
#   - the "relay" port: relayhost = [127.0.0.1]:<sink port>, no TLS
#     (smtp_tls_security_level = none): the end-to-end scenario;
#   - the "accept" port: content_filter = discard, so each message is
#     queued (fsync before the 250) and then discarded by the queue
#     manager: Postfix's counterpart of a Sandbox server, for the accept
#     only scenarios.
# Postern authenticates every session (AUTH PLAIN); Postfix is sent to
# without AUTH. Postern's end-to-end messages are DKIM-signed; Postfix's
# are not (it has no signer of its own).
#
# Needs root (apt-get, and Postfix's master runs as root). Settings are
# bench.sh's (BENCH_MESSAGES, ...), plus BENCH_COMPARE_OUT (default
# bench-compare.json).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

OUT=${BENCH_COMPARE_OUT:-bench-compare.json}
bench_sizes
FROM=bench@bench.postern.test
TO=bench@sink.postern.test # any domain: everything goes to the relayhost

[[ $(id -u) == 0 ]] || bench_die "bench-compare needs root (to install and run Postfix)"

# Postfix first, so that a failed install stops before any measurement.
if ! command -v postfix >/dev/null 2>&1 || [[ ! -x /usr/lib/postfix/sbin/master ]]; then
	echo "installing postfix (apt-get)" >&2
	export DEBIAN_FRONTEND=noninteractive
	echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
	echo "postfix postfix/mailname string postfix.bench" | debconf-set-selections
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends postfix >&2
fi
PF_VERSION=$(postconf -d -h mail_version)

bench_setup
bench_start_sink

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Postern, the same scenarios, the same sink.
BENCH_SINK=$SINK BENCH_SINK_STATS=$SINK_STATS POSTERN_BIN=$POSTERN \
	BENCH_OUT=$BENCH_WORK/postern.json BENCH_COMMAND="make bench-compare (Postern)" \
	bash "$(dirname "$0")/bench.sh" || bench_die "bench.sh failed"

# The private Postfix instance.
PF=$BENCH_WORK/postfix
PFQ=$BENCH_WORK/postfix-queue
PFD=$BENCH_WORK/postfix-data
mkdir -p "$PF" "$PFQ" "$PFD"
chmod 755 "$BENCH_WORK" "$PF" "$PFQ" # the queue's owner checks walk up to it
chown postfix "$PFD"
RELAY_PORT=$(free_port)
ACCEPT_PORT=$(free_port)
cp /etc/postfix/master.cf "$PF/master.cf"
cat >"$PF/main.cf" <<EOF
compatibility_level = $(cut -d. -f1,2 <<<"$PF_VERSION")
queue_directory = $PFQ
data_directory = $PFD
command_directory = $(postconf -d -h command_directory)
daemon_directory = $(postconf -d -h daemon_directory)
meta_directory = $(postconf -d -h meta_directory)
shlib_directory = $(postconf -d -h shlib_directory)
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.bench
mydomain = bench.invalid
myorigin = \$myhostname
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:$(bench_port "$SINK")
smtp_tls_security_level = none
smtpd_tls_security_level = none
smtpd_sasl_auth_enable = no
smtp_dns_support_level = disabled
smtp_host_lookup = native
biff = no
maillog_file = $PFD/maillog
maillog_file_prefixes = $PFD
EOF
# No smtpd on port 25; one on each bench port; nothing chrooted (the queue
# directory holds no copy of /etc).
postconf -c "$PF" -M# smtp/inet
postconf -c "$PF" -M "127.0.0.1:$RELAY_PORT/inet = 127.0.0.1:$RELAY_PORT inet n - n - - smtpd"
postconf -c "$PF" -M "127.0.0.1:$ACCEPT_PORT/inet = 127.0.0.1:$ACCEPT_PORT inet n - n - - smtpd -o content_filter=discard:bench"
postconf -c "$PF" -F '*/*/chroot = n'
postconf -c "$PF" -M postlog/unix-dgram >/dev/null 2>&1 ||
	postconf -c "$PF" -M "postlog/unix-dgram = postlog unix-dgram n - n - 1 postlogd"

postfix -c "$PF" check >&2 || bench_die "postfix check failed"
PF_STARTED=
bench_cleanup_extra() {
	[[ -n $PF_STARTED ]] || return 0
	local pid
	pid=$(tr -d ' ' <"$PFQ/pid/master.pid" 2>/dev/null) || true
	postfix -c "$PF" stop >&2 2>/dev/null || true
	if [[ -n $pid ]]; then
		bench_stop "$pid"
	fi
}
postfix -c "$PF" start >&2 || bench_die "postfix did not start"
PF_STARTED=1
for ((i = 0; i < 100; i++)); do
	python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()' "$ACCEPT_PORT" 2>/dev/null && break
	sleep 0.1
done
echo "postfix $PF_VERSION: relay port $RELAY_PORT, accept (discard) port $ACCEPT_PORT, master pid $(tr -d ' ' <"$PFQ/pid/master.pid")" >&2

# pf_idle: until the queue is empty (at most 10 minutes).
pf_idle() {
	local i n
	for ((i = 0; i < 3000; i++)); do
		n=$(find "$PFQ/maildrop" "$PFQ/incoming" "$PFQ/active" "$PFQ/deferred" "$PFQ/hold" -type f 2>/dev/null | wc -l)
		((n == 0)) && return 0
		sleep 0.2
	done
	bench_die "the Postfix queue did not empty ($n files; see $PFD/maillog)"
}

# shellcheck disable=SC2034 # accept and relay go to bench_scenarios by name
accept=(-addr "127.0.0.1:$ACCEPT_PORT" -from "$FROM" -to "$TO")
# shellcheck disable=SC2034
relay=(-addr "127.0.0.1:$RELAY_PORT" -from "$FROM" -to "$TO")
bench_scenarios postfix pf_idle accept relay "Postfix: no DKIM" "connect, EHLO each; no AUTH" "Postfix's"

deferred=$(grep -c 'status=deferred' "$PFD/maillog" || true)
((deferred == 0)) || echo "bench: Postfix deferred $deferred deliveries; see the maillog" >&2

python3 "$(dirname "$0")/report.py" -compare -out "$OUT" -command "make bench-compare" \
	-go "$(${GO:-go} version "$POSTERN" 2>/dev/null | awk '{print $NF}')" -version "$("$POSTERN" version); postfix $PF_VERSION" \
	-note "Postern: AUTH PLAIN on every session, Sandbox server for accept only, DKIM (Ed25519 + RSA-2048) end to end. Postfix $PF_VERSION: no AUTH, content_filter=discard for accept only, no DKIM. latency-half-load: each at half its own accept-2k maximum." \
	"$BENCH_WORK/postern.json" "${BENCH_RESULTS[@]}"
