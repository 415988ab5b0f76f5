"""Exceptions of the job database.

Each one subclasses the builtin a caller would naturally catch (ValueError for bad input, KeyError for a missing
row, FileExistsError like MBJM's ``initialize_from_df``), so code written against MBJM's file databases keeps
working, while ``JobDbError`` catches everything the job database raises on purpose.
"""

from __future__ import annotations


class JobDbError(Exception):
    """Base class of every error the job database raises deliberately."""


class JobDbInputError(JobDbError, ValueError):
    """Bad input (frame, value, column, file): nothing was written."""


class UnsupportedColumnError(JobDbInputError):
    """A column's dtype (or one of its values) cannot be stored and read back exactly."""


class UnknownColumnError(JobDbInputError, KeyError):
    """A column name that the job table does not have."""

    def __str__(self) -> str:  # KeyError would show the message quoted as a repr
        return str(self.args[0]) if self.args else ""


class JobDbExistsError(JobDbError, FileExistsError):
    """The job table already exists and ``on_exists="error"`` was asked for."""


class JobDbMissingError(JobDbError, LookupError):
    """The job table does not exist (yet)."""


class RowNotFoundError(JobDbError, KeyError):
    """No row with the given row id."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class JobDbFileError(JobDbInputError):
    """A job file (CSV, Parquet, GeoParquet) that is unreadable, truncated or corrupt."""
