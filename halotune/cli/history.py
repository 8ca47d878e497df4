"""`halotune history [list|show|compare|import|check]`: the stored results.

    halotune history [--json] [--limit N] [--kind K]     the latest runs, oldest first
    halotune history show REF [--json]                   one run, everything stored
    halotune history compare A B [--json]                side by side, what changed
    halotune history import FILE... [--label L]          llama-bench -o json / -o jsonl output,
                                                         or another machine's history export
    halotune history export [--out FILE] [--machine N]   every run as JSON lines (fleets)
    halotune history check [REF] [--threshold P]         the regression alarm (exit 2: flagged)
                           [--textfile FILE]             ... also as metrics for node_exporter

REF: a run id (12; u3 for the user database), @latest or @previous. Reading merges the state
database and the user's, read-only; --db FILE reads (and imports into) one file instead.
"""

from __future__ import annotations

import argparse
import json
import sys

from halotune.cli import exitcodes

# Copies of halotune.history's constants (a test keeps them equal): main.py builds this parser
# for every command, so nothing heavier than argparse is imported here.
HISTORY_SCHEMA = "halotune.history/1"
KINDS = ("probe", "validate", "bench", "import", "sweep")


def _nonneg_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text}: must be 0 or more")
    return value


def _percent(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < 100:
        raise argparse.ArgumentTypeError(f"{text}: must be between 0 and 100 (percent)")
    return value


def add_parser(sub, common) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "history", help="stored probe, validation, bench and imported results",
        description="List, show, compare, import and check stored results. Reads the state "
                    "database (/var/lib/halotune/history.db) and your own "
                    "($XDG_STATE_HOME/halotune/history.db), merged, read-only.",
        epilog="REF is a run id (12, or u3 for a run in your own database), @latest or "
               "@previous. Exit codes: 0 ok, 2 a regression flagged (check) or an unusable "
               "database, 64 usage error.")
    common(p)
    _shared(p, None)
    p.add_argument("--limit", type=_nonneg_int, default=50, metavar="N",
                   help="show the latest N runs (50)")
    p.add_argument("--kind", choices=KINDS, default=None, help="only runs of this kind")
    hs = p.add_subparsers(dest="history_command", metavar="show|compare|import|export|check")
    show = hs.add_parser("show", help="one run with everything stored")
    show.add_argument("ref", metavar="REF")
    cmp_ = hs.add_parser("compare", help="two runs side by side: fingerprint changes, deltas")
    cmp_.add_argument("a", metavar="A")
    cmp_.add_argument("b", metavar="B")
    imp = hs.add_parser("import", help="store llama-bench -o json / -o jsonl output files, or "
                                       "merge another machine's `history export`")
    imp.add_argument("files", metavar="FILE", nargs="+")
    imp.add_argument("--label", default=None, metavar="L",
                     help="label for imported llama-bench runs (default: the file name); "
                          "history exports keep their own labels")
    imp.add_argument("--socket", default=None, metavar="PATH",
                     help="daemon API socket (env HALOTUNE_SOCKET)")
    exp = hs.add_parser("export", help="every stored run as JSON lines with its fingerprint and "
                                       "machine, for `history import` on another machine")
    exp.add_argument("--out", default=None, metavar="FILE",
                     help="write FILE (atomically, mode 0640) instead of standard output")
    exp.add_argument("--machine", default=None, metavar="NAME",
                     help="name this machine in the export (default: its host name)")
    exp.add_argument("--kind", choices=KINDS, default=None, help="only runs of this kind")
    chk = hs.add_parser("check", help="regression alarm for a run (default @latest)")
    chk.add_argument("ref", metavar="REF", nargs="?", default="@latest")
    chk.add_argument("--threshold", type=_percent, default=5.0, metavar="P",
                     help="flag results more than P %% below the median of earlier ones (5)")
    chk.add_argument("--textfile", default=None, metavar="FILE",
                     help="also write the result as Prometheus metrics to FILE (a *.prom file in "
                          "node_exporter's textfile collector directory)")
    for sp in (show, cmp_, imp, exp, chk):
        common(sp)
        _shared(sp, argparse.SUPPRESS)
    return p


def _shared(p, default) -> None:
    kw = {} if default is None else {"default": default}
    p.add_argument("--json", action="store_true", help=f'machine-readable output ("{HISTORY_SCHEMA}")',
                   **kw)
    p.add_argument("--db", metavar="FILE", help="use this history database only",
                   **({"default": None} if default is None else kw))


# --- output helpers ---------------------------------------------------------------------------------

def _dump(doc: dict) -> None:
    json.dump({"schema": HISTORY_SCHEMA, **doc}, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def _print_compare(text: str) -> None:
    """The compare text; on a terminal the changed fingerprint lines (leading '*') in bold."""
    if not sys.stdout.isatty():
        print(text)
        return
    try:
        from rich.console import Console
        from rich.text import Text
    except ImportError:
        print(text)
        return
    console = Console(highlight=False, soft_wrap=True)
    for line in text.split("\n"):
        console.print(Text(line, style="bold yellow") if line.startswith("* ") else Text(line))


def _num(v, fmt=".1f") -> str:
    return "-" if v is None else format(v, fmt)


def _when(t: str | None) -> str:
    return "-" if not t else t[:19].replace("T", " ")


def _run_watts(run: dict) -> float | None:
    """The run's average power: its telemetry summary, else its tests' (validate and probe
    runs keep power per test, over the timed work)."""
    w = (run.get("telemetry") or {}).get("avg_socket_power_w")
    if w is None:
        ws = [t["avg_power_w"] for t in run.get("tests") or [] if t.get("avg_power_w") is not None]
        w = sum(ws) / len(ws) if ws else None
    return w


def render_list(runs: list[dict]) -> str:
    rows = [["REF", "WHEN (UTC)", "KIND", "MODEL", "BACKEND", "PROFILE", "TESTS", "W", "LABEL"]]
    for r in runs:
        tests = ", ".join(f"{t['name']} {_num(t.get('tokens_per_s'))}" for t in r["tests"][:4])
        if len(r["tests"]) > 4:
            tests += f", +{len(r['tests']) - 4}"
        model = (r.get("model") or {}).get("name") or "-"
        rows.append([r["ref"], _when(r["created_at"]), r["kind"], model[:32],
                     r.get("backend") or "-", r.get("profile") or "-", tests or "-",
                     _num(_run_watts(r)),
                     r.get("label") or ""])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)


def render_run(run: dict) -> str:
    from halotune.model.fingerprint import flatten, format_value

    model = run.get("model") or {}
    out = [f"run {run['ref']} ({run['kind']}), recorded {run['created_at']}, measured "
           f"{run['measured_at']}", f"  database: {run['db']}"]
    for key in ("label", "profile", "backend"):
        if run.get(key):
            out.append(f"  {key}: {run[key]}")
    if model:
        out.append("  model: " + ", ".join(f"{k} {v}" for k, v in model.items() if v is not None))
    if run["tests"]:
        out.append("")
        rows = [["TEST", "t/s", "±", "CV %", "W", "J/token"]]
        rows += [[t["name"], _num(t.get("tokens_per_s"), ".2f"), _num(t.get("stddev"), ".2f"),
                  _num(t.get("cv_percent")), _num(t.get("avg_power_w")),
                  _num(t.get("joules_per_token"), ".3f")] for t in run["tests"]]
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        out += ["  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                          for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    tel = run.get("telemetry") or {}
    if tel:
        out.append("")
        out.append("telemetry: " + ", ".join(
            f"{k} {format_value(tel.get(k))}" for k in ("samples", "duration_s",
                                                         "avg_socket_power_w", "avg_gfx_power_w",
                                                         "max_temp_c", "power_source")
            if k in tel))
    out.append("")
    out.append("fingerprint:")
    flat = flatten(run.get("fingerprint") or {})
    width = max((len(k) for k in flat), default=0)
    out += [f"  {k.ljust(width)}  {format_value(v)}" for k, v in flat.items() if k != "schema"]
    return "\n".join(out)


def render_alarms(ref: str, alarms: list[dict], threshold: float) -> str:
    if not alarms:
        return f"run {ref}: no regression (threshold {threshold:g} %)"
    return "\n".join([f"run {ref}: {len(alarms)} regression(s) (threshold {threshold:g} %)"]
                     + [f"  REGRESSION {a['message']}" for a in alarms])


# --- commands ------------------------------------------------------------------------------------

def run(args) -> int:
    from halotune.history.db import HistoryError

    cmd = getattr(args, "history_command", None) or "list"
    try:
        if cmd == "import":
            return _import(args)
        if cmd == "export":
            return _export(args)
        return _read(args, cmd)
    except HistoryError as e:
        print(f"halotune history: {e}", file=sys.stderr)
        return exitcodes.NOT_READY


def _read(args, cmd: str) -> int:
    from halotune.history.compare import compare_runs, render_compare
    from halotune.history.regression import check_regression
    from halotune.history.view import HistoryView

    with HistoryView.open(args.root, db_path=args.db) as view:
        for err in view.errors:
            print(f"halotune history: {err}", file=sys.stderr)
        if args.db and view.errors:
            return exitcodes.NOT_READY
        if cmd == "list":
            runs = view.list_runs(args.limit, args.kind)
            if args.json:
                _dump({"databases": [s.to_dict() for s in view.sources], "runs": runs})
            elif runs:
                print(render_list(runs))
            else:
                where = " or ".join(s.path for s in view.sources)
                print(f"no runs stored yet (looked in {where})")
            return exitcodes.OK
        if cmd == "show":
            one = view.get_run(args.ref)
            if args.json:
                _dump({"run": one})
            else:
                print(render_run(one))
            return exitcodes.OK
        if cmd == "compare":
            a, b = view.get_run(args.a), view.get_run(args.b)
            cmp = compare_runs(a, b)
            if args.json:
                _dump({"compare": cmp})
            else:
                _print_compare(render_compare(cmp))
            return exitcodes.OK
        ref = view.resolve_ref(args.ref)
        alarms = check_regression(view, ref, args.threshold)
        if getattr(args, "textfile", None):
            from halotune.history import textfile

            try:
                textfile.write(args.textfile, textfile.render(ref, alarms))
            except OSError as e:
                print(f"halotune history check: cannot write {args.textfile}: "
                      f"{e.strerror or e}", file=sys.stderr)
                return exitcodes.NOT_READY
        if args.json:
            _dump({"run": ref, "threshold_percent": args.threshold, "flagged": bool(alarms),
                   "alarms": alarms})
        else:
            print(render_alarms(ref, alarms, args.threshold))
        return exitcodes.NOT_READY if alarms else exitcodes.OK


def _export(args) -> int:
    from halotune.history.fleet import export_lines, write_export
    from halotune.history.view import HistoryView

    with HistoryView.open(args.root, db_path=args.db) as view:
        for err in view.errors:
            print(f"halotune history: {err}", file=sys.stderr)
        if args.db and view.errors:
            return exitcodes.NOT_READY
        lines = export_lines(view, args.root, args.machine, args.kind)
    if args.out is None:
        sys.stdout.write("".join(line + "\n" for line in lines))
        return exitcodes.OK
    try:
        write_export(lines, args.out)
    except OSError as e:
        print(f"halotune history export: cannot write {args.out}: {e.strerror or e}",
              file=sys.stderr)
        return exitcodes.NOT_READY
    print(f"{args.out}: {len(lines)} run(s) exported", file=sys.stderr)
    return exitcodes.OK


def _import_export(args, path: str):
    """One history export merged; (entry for --json, failed?)."""
    from halotune.history.fleet import ExportFormatError, import_export

    try:
        merged = import_export(path, root=args.root, db_path=args.db)
    except ExportFormatError as e:
        print(f"halotune history import: {e}", file=sys.stderr)
        return None
    if not args.json:
        print(f"{path}: {len(merged.added)} run(s) added"
              + (f" (from {', '.join(merged.machines)})" if merged.machines else "")
              + f", {merged.skipped} already stored, in {merged.db}")
    return {"file": path, "format": "halotune-export", "db": merged.db, "added": merged.added,
            "skipped": merged.skipped, "machines": merged.machines}


def _import(args) -> int:
    from halotune.history.fleet import file_is_export
    from halotune.history.importer import ImportRefused, import_file

    done, failed = [], 0
    for path in args.files:
        if file_is_export(path):
            entry = _import_export(args, path)
            if entry is None:
                failed += 1
            else:
                done.append(entry)
            continue
        try:
            rec = import_file(path, label=args.label, root=args.root,
                              socket=getattr(args, "socket", None), db_path=args.db)
        except ImportRefused as e:
            print(f"halotune history import: {e}", file=sys.stderr)
            failed += 1
            continue
        done.append({"file": path, "format": "llama-bench", "ref": rec.ref, "id": rec.id,
                     "db": rec.db, "via": rec.via})
        if not args.json:
            print(f"{path}: stored as run {rec.ref} in {rec.db or 'the daemon database'}")
    if args.json:
        _dump({"imported": done, "failed": failed})
    return exitcodes.NOT_READY if failed else exitcodes.OK
