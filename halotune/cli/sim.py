"""`halotune sim DIR [--animate]`: lay out the simulated Strix Halo, optionally keep it moving."""

from __future__ import annotations

import os
import signal
import sys
import threading

from halotune.cli import exitcodes


def run(args) -> int:
    from halotune.sim.animate import Animator
    from halotune.sim.tree import lay_out

    target = os.path.abspath(args.dir)
    if args.reboot:
        from halotune.sim.reboot import reboot

        try:
            boot_id = reboot(target)
        except FileNotFoundError:
            print(f"halotune sim: {target} holds no simulated machine to reboot", file=sys.stderr)
            return exitcodes.USAGE
        print(f"simulated Strix Halo in {target} rebooted (boot_id {boot_id})")
        return exitcodes.OK
    try:
        handlers = tuple(h.strip() for h in args.platform_profile_handlers.split(","))
        lay_out(target, scenario=args.scenario, force=args.force, kernel=args.kernel,
                profile_handlers=handlers)
    except FileExistsError:
        print(f"halotune sim: {target} is not empty and holds no simulated machine; "
              "use --force to lay out into it anyway", file=sys.stderr)
        return exitcodes.USAGE
    except ValueError as e:   # the root directory itself, an unknown scenario or handler
        print(f"halotune sim: {e}", file=sys.stderr)
        return exitcodes.USAGE
    except OSError as e:
        print(f"halotune sim: cannot create the tree in {target}: {e.strerror}", file=sys.stderr)
        return exitcodes.PERMISSION if isinstance(e, PermissionError) else exitcodes.NOT_READY
    print(f"simulated Strix Halo laid out in {target}\n"
          f"  read it:  halotune status --root {target}")
    if not args.animate:
        return exitcodes.OK
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"  animating every {args.interval:g} s; Ctrl-C to stop", flush=True)
    try:
        Animator(target, interval=args.interval).run(stop)
    except KeyboardInterrupt:
        pass
    return exitcodes.OK
