"""Driver write rules of the simulated machine, one module per kernel driver.

A rule is `rule(state, value, match)`: it parses the written text the way the driver's store
function does, changes `state`, or raises OSError with the errno the driver returns. Each
module exports RULES, a tuple of (path regex, rule) over root-relative real paths.
"""

from __future__ import annotations

import errno
import os
from typing import NoReturn


def reject(code: int = errno.EINVAL) -> NoReturn:
    """Fail the write like the driver's store function returning -code."""
    raise OSError(code, os.strerror(code))

