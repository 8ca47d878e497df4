"""Result history: every probe, validation, bench, sweep and import with its fingerprint.

    HistoryDB      one SQLite database (db.py)
    record_run     store a result where it belongs: daemon, state DB or user DB (record.py)
    check_regression   the regression alarm (regression.py)
"""

from halotune.history.db import HistoryDB, HistoryError
from halotune.history.record import record_run
from halotune.history.regression import check_regression

HISTORY_SCHEMA = "halotune.history/1"

__all__ = ["HISTORY_SCHEMA", "HistoryDB", "HistoryError", "check_regression", "record_run"]
