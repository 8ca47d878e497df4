"""`halotune daemon`: run the service (normally started by systemd)."""

from __future__ import annotations

import asyncio
import logging
import os
import sys

from halotune.cli import exitcodes


def _log_to_stderr(level: str) -> None:
    """journald adds its own timestamp; under it, `<N>` priority prefixes file the severity."""
    from halotune.daemon import notify

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(notify.JournalFormatter() if notify.journal_stream()
                         else logging.Formatter("%(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper(), logging.INFO))


def run(args) -> int:
    from halotune.daemon.config import ConfigError, load
    from halotune.daemon.service import Daemon, DaemonError
    from halotune.tuning.engine import default_state_dir

    try:
        config = load(args.config)
    except ConfigError as e:
        print(f"halotune daemon: {e}", file=sys.stderr)
        return exitcodes.USAGE
    if args.check_config:
        print(f"configuration OK ({args.config or 'defaults'})")
        return exitcodes.OK
    _log_to_stderr(getattr(args, "log_level", None) or "info")
    sock = args.socket or os.environ.get("HALOTUNE_SOCKET") or config.api.socket
    daemon = Daemon(config, args.root, args.state_dir or default_state_dir(args.root), sock,
                    profiles_dir=args.profiles_dir)
    try:
        return asyncio.run(daemon.run())
    except DaemonError as e:
        print(f"halotune daemon: {e}", file=sys.stderr)
        return exitcodes.NOT_READY
    except PermissionError as e:
        print(f"halotune daemon: {e.filename}: permission denied", file=sys.stderr)
        return exitcodes.PERMISSION
