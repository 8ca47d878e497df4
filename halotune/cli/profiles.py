"""`halotune profiles list|show NAME|diff A B`."""

from __future__ import annotations

import json
import sys

from halotune.cli import exitcodes


def _fmt(v) -> str:
    from halotune.tuning.engine import fmt_value

    return "-" if v is None else fmt_value(v)


def run(args) -> int:
    from halotune.tuning.loader import ProfileError, ProfileStore

    store = ProfileStore(args.profiles_dir, root=args.root)
    cmd = args.profiles_command or "list"
    try:
        if cmd == "list":
            profiles, errors = store.load_all()
            if args.json:
                json.dump({"profiles": [{"name": p.name, "description": p.description,
                                         "path": p.display_path, "inherits": p.chain[1:]}
                                        for p in profiles],
                           "errors": [str(e) for e in errors]}, sys.stdout, indent=2)
                print()
            else:
                width = max((len(p.name) for p in profiles), default=4)
                for p in profiles:
                    print(f"{p.name.ljust(width)}  {p.description}")
                for e in errors:
                    print(f"error: {e}", file=sys.stderr)
            return exitcodes.OK if not errors else exitcodes.NOT_READY
        if cmd == "show":
            p = store.load(args.name)
            if args.json:
                json.dump({"name": p.name, "path": p.display_path, "chain": p.chain,
                           "description": p.description, "values": p.values,
                           "requires": p.requires, "restore_baseline": p.restore_baseline},
                          sys.stdout, indent=2)
                print()
                return exitcodes.OK
            print(f"{p.name}: {p.description}")
            print(f"  file: {p.display_path}" + (f"  (inherits {' -> '.join(p.chain[1:])})"
                                                 if len(p.chain) > 1 else ""))
            if p.restore_baseline:
                print("  restores the values the machine had before halotune changed anything")
            for key in sorted(p.values):
                src = p.sources.get(key, p.display_path)
                origin = "" if src == p.display_path else f"   (from {src})"
                print(f"  {key} = {_fmt(p.values[key])}{origin}")
            for k, v in p.requires.items():
                print(f"  requires {k} in {v}")
            return exitcodes.OK
        rows = [r for r in store.diff(args.a, args.b) if r[1] != r[2]]
        if args.json:
            json.dump([{"key": k, args.a: a, args.b: b} for k, a, b in rows], sys.stdout, indent=2)
            print()
        else:
            width = max((len(k) for k, _, _ in rows), default=3)
            print(f"{'KEY'.ljust(width)}  {args.a}  ->  {args.b}")
            for k, a, b in rows:
                print(f"{k.ljust(width)}  {_fmt(a)}  ->  {_fmt(b)}")
        return exitcodes.OK
    except ProfileError as e:
        print(f"halotune: {e}", file=sys.stderr)
        return exitcodes.NOT_READY
