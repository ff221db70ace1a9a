#!/usr/bin/env python3
"""Tables and the JSON file of make bench and make bench-compare.

Each input file is one scenario as bench.sh's bench_run writes it:
{"Name", "Description", "Target", "Args", "Result": <postern bench -json>}.

Without -compare: prints one table and writes {"Machine", "Command",
"Date", "Scenarios": [...]} to -out. With -compare: the inputs are of two
targets (postern, postfix); prints both side by side with Postern/Postfix
ratios, and writes them with the ratios to -out; first, the summary of
the comparison (accept, end to end unsigned and signed, latency of relayed
mail at half Postern's peak, peak memory), and after the full table each
scenario's latency from the end of DATA to the reply.
"""

import argparse
import datetime
import json
import os
import platform
import subprocess


def machine(go):
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        cores = int(subprocess.run(["nproc"], capture_output=True, text=True, check=True).stdout)
    except (OSError, ValueError, subprocess.CalledProcessError):
        cores = os.cpu_count()
    load = {"AtStart": os.environ.get("BENCH_LOAD_START", ""), "AtEnd": ""}
    try:
        load["AtEnd"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        pass
    return {"Cores": cores, "CPU": cpu, "GoVersion": go, "OS": platform.platform(), "LoadAverage": load}


def num(v, digits=0):
    if v is None:
        return "-"
    if isinstance(v, (int, float)):
        if digits == 0:
            return f"{round(v):,}"
        return f"{v:,.{digits}f}"
    return str(v)


def size(b):
    if not b:
        return "-"
    if b % 1024 == 0:
        return f"{b // 1024} KB"
    return f"{b} B"


def table(headers, rows):
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows)]
    lines = ["| " + " | ".join(str(h).ljust(w) for h, w in zip(headers, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(str(c).rjust(w) if i else str(c).ljust(w)
                                       for i, (c, w) in enumerate(zip(r, widths))) + " |")
    return "\n".join(lines)


def refused(r):
    ref = r.get("Refused") or {}
    n = sum(ref.values()) if isinstance(ref, dict) else (ref or 0)
    return n + (r.get("Errors") or 0)


def lat(r, k):
    return (r.get("LatencyMs") or {}).get(k)


def dlat(r, k):
    """Latency from the end of DATA to its reply: the open loop's
    EndOfDataMs, the closed loop's LatencyMs."""
    return (r.get("EndOfDataMs") or r.get("LatencyMs") or {}).get(k)


def e2e(r):
    return (r.get("EndToEnd") or {}).get("MessagesPerSecond")


def sizes(r):
    s = r.get("Size")
    if isinstance(s, list):
        return ",".join(size(x) for x in s)
    return size(s)


def row(s):
    r = s["Result"]
    return [s["Name"], num(r.get("Sessions")), sizes(r), num(r.get("Rate")) if r.get("Rate") else "max",
            num(r.get("Sent")), num(r.get("Accepted")), num(refused(r)),
            num(r.get("MessagesPerSecond")), num(e2e(r)), num((r.get("EndToEnd") or {}).get("ArrivalP99Ms"), 1),
            num(lat(r, "P50"), 1), num(lat(r, "P90"), 1), num(lat(r, "P99"), 1), num(lat(r, "Max"), 1)]


HEADERS = ["scenario", "sessions", "size", "offered/s", "sent", "accepted", "refused+errors",
           "msgs/s", "end-to-end msgs/s", "arrival p99 ms", "p50 ms", "p90 ms", "p99 ms", "max ms"]


def ratio(a, b):
    if a is None or b is None or not b:
        return None
    return a / b


def mb(kb):
    return "-" if not kb else f"{kb / 1024:,.0f} MB"


# The summary's rows: label, scenario, what is compared, unit.
SUMMARY = [
    ("accept, no signing", "accept-2k", "msgs/s"),
    ("end to end, unsigned", "e2e-unsigned-2k", "e2e/s"),
    ("end to end, Ed25519 + RSA-2048 / OpenDKIM RSA-2048", "e2e-dkim-2k", "e2e/s"),
    ("p99 from end of DATA to 250, at half of Postern's peak, Live server", "latency-half-load-live", "p99"),
    ("the same, from the scheduled send (the client's wait included)", "latency-half-load-live", "p99-scheduled"),
]


def summarize(by, postern_rss, postfix_pss):
    out = []
    for label, name, what in SUMMARY:
        pn, pf = by.get(name, {}).get("postern"), by.get(name, {}).get("postfix")
        if what == "msgs/s":
            get, fmt = (lambda r: r.get("MessagesPerSecond")), (lambda v: num(v) + "/s" if v is not None else "-")
        elif what == "e2e/s":
            get, fmt = e2e, (lambda v: num(v) + "/s" if v is not None else "-")
        elif what == "p99":
            get, fmt = (lambda r: dlat(r, "P99")), (lambda v: num(v, 1) + " ms" if v is not None else "-")
        else:
            get, fmt = (lambda r: lat(r, "P99")), (lambda v: num(v, 1) + " ms" if v is not None else "-")
        vn = get(pn["Result"]) if pn else None
        vf = get(pf["Result"]) if pf else None
        out.append({"Row": label, "Scenario": name, "Postern": vn, "Postfix": vf, "Ratio": ratio(vn, vf),
                    "PosternText": fmt(vn), "PostfixText": fmt(vf)})
    out.append({"Row": "peak RSS", "Scenario": "",
                "Postern": postern_rss, "Postfix": postfix_pss, "Ratio": ratio(postern_rss, postfix_pss),
                "PosternText": mb(postern_rss), "PostfixText": mb(postfix_pss)})
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("-out", required=True)
    p.add_argument("-command", default="make bench")
    p.add_argument("-go", default="")
    p.add_argument("-version", default="")
    p.add_argument("-compare", action="store_true")
    p.add_argument("-note", default="")
    p.add_argument("-peak-rss-kb", type=int, default=0, help="peak RSS of postern serve (VmHWM)")
    p.add_argument("-postfix-pss-kb", type=int, default=0,
                   help="peak of the PSS summed over the private Postfix's processes and opendkim")
    p.add_argument("files", nargs="+")
    a = p.parse_args()

    scenarios = []
    postern_rss = a.peak_rss_kb or None
    for f in a.files:
        with open(f) as fh:
            d = json.load(fh)
        # A scenario, or a whole earlier output (bench.sh's BENCH_OUT).
        scenarios.extend(d["Scenarios"] if "Scenarios" in d else [d])
        if d.get("PeakRSSKB") and not a.peak_rss_kb:
            postern_rss = d["PeakRSSKB"]
    doc = {
        "Command": a.command,
        "Date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "Machine": machine(a.go),
        "Postern": a.version,
    }
    if postern_rss:
        doc["PeakRSSKB"] = postern_rss
    m = doc["Machine"]
    print()
    print(f"{a.command}: {doc['Date']}, {m['Cores']} cores ({m['CPU']}), {m['GoVersion']}, {a.version}")
    print(f"load average at start {m['LoadAverage']['AtStart'] or '?'}, at end {m['LoadAverage']['AtEnd'] or '?'}")
    print()
    if not a.compare:
        doc["Scenarios"] = scenarios
        print(table(HEADERS, [row(s) for s in scenarios]))
        if postern_rss:
            print()
            print(f"peak RSS of postern serve: {mb(postern_rss)}")
    else:
        by = {}
        order = []
        for s in scenarios:
            if s["Name"] not in by:
                order.append(s["Name"])
            by.setdefault(s["Name"], {})[s["Target"]] = s
        rows, comparisons = [], []
        for name in order:
            pn, pf = by[name].get("postern"), by[name].get("postfix")
            if not pn or not pf:
                continue
            rn, rf = pn["Result"], pf["Result"]
            c = {
                "Name": name,
                "Description": pf["Description"],
                "Postern": rn,
                "Postfix": rf,
                "MessagesPerSecondRatio": ratio(rn.get("MessagesPerSecond"), rf.get("MessagesPerSecond")),
                "EndToEndRatio": ratio(e2e(rn), e2e(rf)),
                "P99Ratio": ratio(lat(rn, "P99"), lat(rf, "P99")),
            }
            comparisons.append(c)

            def x(v):
                return "-" if v is None else f"{v:.2f}x"
            rows.append([name, num(rf.get("Sessions")), sizes(rf),
                         num(rn.get("MessagesPerSecond")), num(rf.get("MessagesPerSecond")), x(c["MessagesPerSecondRatio"]),
                         num(e2e(rn)), num(e2e(rf)), x(c["EndToEndRatio"]),
                         num(lat(rn, "P99"), 1), num(lat(rf, "P99"), 1)])
        doc["Comparisons"] = comparisons
        doc["Scenarios"] = scenarios
        summary = summarize(by, postern_rss, a.postfix_pss_kb or None)
        doc["Summary"] = summary
        if a.postfix_pss_kb:
            doc["PostfixPeakPSSKB"] = a.postfix_pss_kb
        print(table(["", "Postern", "Postfix", "ratio"],
                    [[r["Row"], r["PosternText"], r["PostfixText"], "-" if r["Ratio"] is None else f"{r['Ratio']:.2f}x"]
                     for r in summary]))
        print()
        print(table(["scenario", "sessions", "size", "Postern msgs/s", "Postfix msgs/s", "ratio",
                     "Postern e2e/s", "Postfix e2e/s", "e2e ratio", "Postern p99 ms", "Postfix p99 ms"], rows))
        print()
        print("From the end of DATA to the reply, ms:")
        print()
        lrows = []
        for name in order:
            pn, pf = by[name].get("postern"), by[name].get("postfix")
            if not pn or not pf:
                continue
            rn, rf = pn["Result"], pf["Result"]
            lrows.append([name] + [num(dlat(r, k), 1) for r in (rn, rf) for k in ("P50", "P99", "Max")])
        print(table(["scenario", "Postern p50", "Postern p99", "Postern max", "Postfix p50", "Postfix p99", "Postfix max"], lrows))
        if a.note:
            doc["Note"] = a.note
            print()
            print(a.note)
    print()
    with open(a.out, "w") as fh:
        json.dump(doc, fh, indent=2)
        fh.write("\n")
    print(f"written to {a.out}")


if __name__ == "__main__":
    main()
