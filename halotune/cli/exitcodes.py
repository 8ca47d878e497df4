"""Exit codes shared by every command (a contract for scripts)."""

OK = 0
WARNINGS = 1          # only with --strict
NOT_READY = 2         # a check failed, or the command could not do its job
NO_AMD_GPU = 3
PERMISSION = 4
USAGE = 64            # EX_USAGE from sysexits.h
