#!/usr/bin/env bash
# make bench-compare: the scenarios of bench.sh through Postern and then
# through Debian's Postfix on loopback, driven by the same `postern bench`
# into the same `postern sink`, and the Postern/Postfix ratios of this run.
#
# Postfix is installed if missing (apt-get, preseeded "No configuration",
# so no system instance is set up) and run as a private instance: its own
# configuration directory, queue and data directories in a temporary
# directory, smtpd on three high loopback ports, no AUTH (Postfix's SASL
# needs Dovecot or Cyrus), mynetworks = 127.0.0.0/8, and
#   - the "relay" port: relayhost = [127.0.0.1]:<sink port>, no TLS
#     (smtp_tls_security_level = none): end to end, unsigned;
#   - the "dkim" port: the same with smtpd_milters = Debian's OpenDKIM
#     (installed if missing), run with an opendkim.conf of its own in a
#     temporary directory under /run (Mode s, an RSA-2048 key made there with
#     opendkim-genkey for the From domain, a loopback inet socket) and
#     milter_default_action = tempfail: "Postfix + OpenDKIM", the
#     counterpart of Postern's e2e-dkim-2k (Ed25519 and RSA-2048);
#   - the "accept" port: content_filter = discard, so each message is
#     queued (fsync before the 250) and then discarded by the queue
#     manager: Postfix's counterpart of a Sandbox server, for the accept
#     only scenarios.
# Postern authenticates every session (AUTH PLAIN); Postfix is sent to
# without AUTH. The sink counts the messages that arrive with a
# DKIM-Signature: a signed scenario fails unless every message it
# delivered was signed, an unsigned one unless none was.
#
# Besides bench.sh's scenarios, both run e2e-unsigned-2k (Postern: a Live
# server sending From a domain that is not its account's, so that it goes
# unsigned; hence serve runs with sender-policy any here; Postfix: the
# relay port) and latency-half-load-live: relayed mail (Postern: a Live
# server, signed; Postfix: the relay port) offered at half Postern's
# maximum of accept-2k, the same rate for both. Memory: the peak RSS of
# postern serve (VmHWM), against the peak over the Postfix run of the PSS
# summed over every process of the private instance (master and all its
# descendants) and opendkim, sampled every 0.25 s from
# /proc/PID/smaps_rollup.
#
# Prints a summary (Postern | Postfix | ratio), the full table, and each
# scenario's latency from the end of DATA to the reply.
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

# Postfix and OpenDKIM first, so that a failed install stops before any
# measurement.
if ! command -v postfix >/dev/null 2>&1 || [[ ! -x /usr/lib/postfix/sbin/master ]]; then
	echo "installing postfix (apt-get)" >&2
	export DEBIAN_FRONTEND=noninteractive
	echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
	echo "postfix postfix/mailname string postfix.bench" | debconf-set-selections
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends postfix >&2
fi
PF_VERSION=$(postconf -d -h mail_version)
if ! command -v opendkim >/dev/null 2>&1 || ! command -v opendkim-genkey >/dev/null 2>&1; then
	echo "installing opendkim (apt-get)" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends opendkim opendkim-tools >&2
fi
DKIM_VERSION=$(opendkim -V 2>&1 | awk 'NR == 1 {print $NF}')

bench_setup
bench_start_sink
# bench_cleanup_extra (called by bench_cleanup before it stops the
# processes it started) stops the private Postfix and removes OpenDKIM's
# directory.
DK= PF_STARTED=
bench_cleanup_extra() {
	[[ -z $DK ]] || rm -rf -- "$DK"
	[[ -n $PF_STARTED ]] || return 0
	local pid
	pid=$(tr -d ' ' <"$PFQ/pid/master.pid" 2>/dev/null) || true
	postfix -c "$PF" stop >&2 2>/dev/null || true
	if [[ -n $pid ]]; then
		bench_stop "$pid"
	fi
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() {
	local i
	for ((i = 0; i < 100; i++)); do
		python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()' "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

# Postern, the same scenarios and the two more, the same sink.
BENCH_SINK=$SINK BENCH_SINK_STATS=$SINK_STATS POSTERN_BIN=$POSTERN BENCH_COMPARE_EXTRA=1 \
	BENCH_OUT=$BENCH_WORK/postern.json BENCH_COMMAND="make bench-compare (Postern)" \
	bash "$(dirname "$0")/bench.sh" || bench_die "bench.sh failed"

# OpenDKIM: a key of its own for the From domain and a configuration of
# its own, in the foreground (stopped by bench_cleanup, after Postfix).
# Not under /tmp: opendkim refuses a configuration or key file with a
# directory writable by others (/tmp) on its path, so they are in a
# temporary directory of their own under /run, removed at the end.
DK=$(mktemp -d /run/postern-bench-opendkim.XXXXXX)
MILTER_PORT=$(free_port)
opendkim-genkey -b 2048 -h sha256 -d "${FROM#*@}" -s bench -D "$DK" || bench_die "opendkim-genkey failed"
cat >"$DK/opendkim.conf" <<EOF
Mode s
Domain ${FROM#*@}
Selector bench
KeyFile $DK/bench.private
Canonicalization relaxed/simple
SignatureAlgorithm rsa-sha256
Socket inet:$MILTER_PORT@127.0.0.1
InternalHosts 127.0.0.1
UserID opendkim:opendkim
Background no
Syslog no
EOF
chown -R opendkim:opendkim "$DK"
chmod 700 "$DK"
opendkim -x "$DK/opendkim.conf" -f >"$BENCH_WORK/opendkim.log" 2>&1 &
BENCH_PIDS+=($!)
DKIM_PID=$!
if ! wait_port "$MILTER_PORT" || ! kill -0 "$DKIM_PID" 2>/dev/null; then
	cat "$BENCH_WORK/opendkim.log" >&2
	bench_die "opendkim did not start"
fi

# The private Postfix instance.
PF=$BENCH_WORK/postfix
PFQ=$BENCH_WORK/postfix-queue
PFD=$BENCH_WORK/postfix-data
mkdir -p "$PF" "$PFQ" "$PFD"
chmod 755 "$BENCH_WORK" "$PF" "$PFQ" # the queue's owner checks walk up to it
chown postfix "$PFD"
RELAY_PORT=$(free_port)
DKIM_PORT=$(free_port)
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
postconf -c "$PF" -M "127.0.0.1:$DKIM_PORT/inet = 127.0.0.1:$DKIM_PORT inet n - n - - smtpd -o smtpd_milters=inet:127.0.0.1:$MILTER_PORT -o milter_default_action=tempfail"
postconf -c "$PF" -M "127.0.0.1:$ACCEPT_PORT/inet = 127.0.0.1:$ACCEPT_PORT inet n - n - - smtpd -o content_filter=discard:bench"
postconf -c "$PF" -F '*/*/chroot = n'
postconf -c "$PF" -M postlog/unix-dgram >/dev/null 2>&1 ||
	postconf -c "$PF" -M "postlog/unix-dgram = postlog unix-dgram n - n - 1 postlogd"

postfix -c "$PF" check >&2 || bench_die "postfix check failed"
postfix -c "$PF" start >&2 || bench_die "postfix did not start"
PF_STARTED=1
wait_port "$ACCEPT_PORT" || true
echo "postfix $PF_VERSION: relay port $RELAY_PORT, dkim port $DKIM_PORT (opendkim $DKIM_VERSION on $MILTER_PORT, pid $DKIM_PID), accept (discard) port $ACCEPT_PORT, master pid $(tr -d ' ' <"$PFQ/pid/master.pid")" >&2

# The PSS of the private Postfix (its master and every descendant) and of
# opendkim, summed every 0.25 s; the peak so far is in pss-peak (KB).
cat >"$BENCH_WORK/pss.py" <<'EOF'
import os, sys, time
pidfile, dkim, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
peak = 0
while True:
    roots = [dkim]
    try:
        with open(pidfile) as f:
            roots.append(int(f.read().strip()))
    except (OSError, ValueError):
        pass
    children = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    st = f.read()
                children.setdefault(int(st[st.rindex(")") + 2:].split()[1]), []).append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    seen, stack = set(), list(roots)
    while stack:
        p = stack.pop()
        if p not in seen:
            seen.add(p)
            stack.extend(children.get(p, []))
    total = 0
    for p in seen:
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    if total > peak:
        peak = total
        with open(out + ".tmp", "w") as f:
            f.write(f"{peak}\n")
        os.replace(out + ".tmp", out)
    time.sleep(0.25)
EOF
python3 "$BENCH_WORK/pss.py" "$PFQ/pid/master.pid" "$DKIM_PID" "$BENCH_WORK/pss-peak" &
BENCH_PIDS+=($!)
PSS_PID=$!

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

# shellcheck disable=SC2034 # accept, dkim and relay go to bench_scenarios by name
accept=(-addr "127.0.0.1:$ACCEPT_PORT" -from "$FROM" -to "$TO")
# shellcheck disable=SC2034
dkim=(-addr "127.0.0.1:$DKIM_PORT" -from "$FROM" -to "$TO")
# shellcheck disable=SC2034
relay=(-addr "127.0.0.1:$RELAY_PORT" -from "$FROM" -to "$TO")
bench_scenarios postfix pf_idle accept dkim "Postfix + OpenDKIM RSA-2048" "connect, EHLO each; no AUTH" "Postfix's"
RATE=$(python3 -c '
import json, sys
for s in json.load(open(sys.argv[1]))["Scenarios"]:
    if s["Name"] == "latency-half-load-live":
        print(s["Result"]["Rate"])
' "$BENCH_WORK/postern.json")
[[ -n $RATE ]] || bench_die "no latency-half-load-live in Postern's results"
bench_extra_scenarios postfix pf_idle relay relay "$RATE" "the relay port, unsigned"
bench_stop "$PSS_PID"
PSS_KB=$(cat "$BENCH_WORK/pss-peak" 2>/dev/null || echo 0)

deferred=$(grep -c 'status=deferred' "$PFD/maillog" || true)
((deferred == 0)) || echo "bench: Postfix deferred $deferred deliveries; see the maillog" >&2

python3 "$(dirname "$0")/report.py" -compare -out "$OUT" -command "make bench-compare" \
	-go "$(${GO:-go} version "$POSTERN" 2>/dev/null | awk '{print $NF}')" -version "$("$POSTERN" version); postfix $PF_VERSION; opendkim $DKIM_VERSION" \
	-postfix-pss-kb "$PSS_KB" \
	-note "Postern: AUTH PLAIN on every session, Sandbox server for accept only, Ed25519 + RSA-2048 in e2e-dkim-2k, sender-policy any. Postfix $PF_VERSION: no AUTH, content_filter=discard for accept only, OpenDKIM $DKIM_VERSION (milter, RSA-2048) in e2e-dkim-2k. latency-half-load: each at half its own accept-2k maximum; latency-half-load-live: both at half Postern's (Postern a Live server, Postfix the relay port). Latency: from the end of DATA to its reply; in the open-loop scenarios (latency-*), the scenario table's p99 is from each message's scheduled send, after every session has connected. Peak RSS: Postern's VmHWM; Postfix's PSS summed over its processes and opendkim's, sampled every 0.25 s." \
	"$BENCH_WORK/postern.json" "${BENCH_RESULTS[@]}"
