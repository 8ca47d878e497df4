"""`halotune bench [--force] [--json] [--profile NAME] [--label L] [--no-record] -- CMD...`."""

from __future__ import annotations

import argparse
import json
import os
import sys

from halotune.cli import exitcodes


def add_parser(sub, common) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "bench", help="run a benchmark command with preflight, telemetry and history",
        description="Run CMD (typically llama-bench ...) as the invoking user after a "
                    "preflight check, with the daemon's rules on hold and telemetry sampled "
                    "throughout; store its results, the machine's fingerprint and the "
                    "telemetry summary in the history database. llama-bench gets -o jsonl "
                    "when no output format is given.",
        epilog="Example: halotune bench -- llama-bench -m model.gguf -p 512 -n 128. "
               "Exit codes: 0 ok, 2 preflight failed (without --force) or the command failed, "
               "64 usage error.")
    common(p)
    p.add_argument("--force", action="store_true", help="run even when the preflight fails")
    p.add_argument("--json", action="store_true",
                   help='print the outcome as JSON ("halotune.bench/1"); progress goes to stderr')
    p.add_argument("--profile", metavar="NAME", default=None,
                   help="the profile the machine is expected to run (checked by the preflight)")
    p.add_argument("--label", metavar="L", default=None, help="a label stored with the run")
    p.add_argument("--no-record", action="store_true", help="do not store the run in history")
    p.add_argument("--socket", metavar="PATH", default=None,
                   help="daemon API socket (env HALOTUNE_SOCKET)")
    p.add_argument("--db", metavar="FILE", default=None,
                   help="store the run in this history database instead of the usual one")
    p.add_argument("bench_command", nargs=argparse.REMAINDER, metavar="-- CMD ...",
                   help="the benchmark command and its arguments")
    return p


def _num(v, fmt=".2f") -> str:
    return "-" if v is None else format(v, fmt)


def render(doc: dict) -> str:
    out = []
    rc = doc["returncode"]
    head = f"bench: {' '.join(doc['command'])}"
    if rc is not None:
        head += f"   (exit {rc}, {doc['duration_s']:.1f} s)"
    out.append(head)
    if doc["added_args"]:
        out.append(f"  added: {' '.join(doc['added_args'])}")
    pf = doc["preflight"]
    if pf is not None:
        bad = [c for c in pf["checks"] if c.get("status") in ("fail", "warn")]
        out.append(f"preflight: {'ready' if pf['ready'] else 'NOT READY'} "
                   f"({len(pf['checks'])} checks)")
        for c in bad:
            value = str(c.get("value"))
            value = value if len(value) <= 100 else value[:99] + "…"
            fix = f" -> {c['fix']}" if c.get("fix") else ""
            out.append(f"  {c['status']:4}  {c.get('title') or c.get('id')}: {value}{fix}")
    elif doc["preflight_note"]:
        out.append(f"preflight: {doc['preflight_note']}")
    if doc["status"] == "aborted":
        out.append("not run: the preflight failed (use --force to run anyway)")
        return "\n".join(out)
    tests = doc["tests"]
    if tests:
        rows = [["TEST", "t/s", "±", "CV %", "W", "J/token"]]
        rows += [[t["name"], _num(t["tokens_per_s"]), _num(t["stddev"]), _num(t["cv_percent"], ".1f"),
                  _num(t["avg_power_w"], ".1f"), _num(t["joules_per_token"], ".3f")] for t in tests]
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        out.append("")
        for r in rows:
            out.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                 for i, (c, w) in enumerate(zip(r, widths))))
        fc = doc.get("forecast") or {}
        rng = fc.get("tg_tokens_per_s")
        if isinstance(rng, list) and len(rng) == 2:
            line = f"forecast tg: {rng[0]:.1f}-{rng[1]:.1f} t/s"
            if doc["forecast_error_percent"] is not None:
                line += f"; measured {doc['forecast_error_percent']:+.1f} % from its mid-point"
            out.append(line)
    elif doc["llama_bench"]:
        out.append("no llama-bench results in the output")
    tel = doc["telemetry"]
    if tel:
        src = tel.get("power_source") or "none"
        out.append(f"telemetry: {tel['samples']} samples over {tel['duration_s']:.1f} s; "
                   f"avg socket power {_num(tel.get('avg_socket_power_w'), '.1f')} W ({src}), "
                   f"max temp {_num(tel.get('max_temp_c'), '.0f')} °C")
    if doc["energy_note"]:
        out.append(f"energy: {doc['energy_note']}")
    if doc["recorded"]:
        r = doc["recorded"]
        out.append(f"stored: run {r['ref']} in {r['db'] or 'the daemon database'} (via {r['via']})")
    for a in doc["regressions"]:
        out.append(f"REGRESSION {a['message']}")
    for w in doc["warnings"]:
        out.append(f"warning: {w}")
    return "\n".join(out)


def run(args) -> int:
    from halotune.bench.runner import BenchOptions, run_bench
    from halotune.machine.usercmd import UserCommandError

    argv = list(args.bench_command or [])
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        print("halotune bench: no command given: halotune bench -- llama-bench -m MODEL ...",
              file=sys.stderr)
        return exitcodes.USAGE
    opts = BenchOptions(argv=argv, root=args.root, force=args.force, profile=args.profile,
                        label=args.label, record=not args.no_record,
                        socket=args.socket or os.environ.get("HALOTUNE_SOCKET"),
                        db_path=args.db)

    def progress(text: str) -> None:
        print(f"  {text}", file=sys.stderr, flush=True)

    try:
        doc = run_bench(opts, progress=progress)
    except UserCommandError as e:
        print(f"halotune bench: {e}", file=sys.stderr)
        return exitcodes.NOT_READY
    if args.json:
        json.dump(doc, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        print(render(doc))
    return exitcodes.OK if doc["status"] == "ok" else exitcodes.NOT_READY
