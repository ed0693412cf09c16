"""Errors raised on purpose for input the user can fix.

train.py and the tools/ commands print an error of these types as one line that says what was
wrong and how to fix it (launch.run_reporting_user_errors); any other exception is a bug and
keeps its traceback. The types subclass ValueError and KeyError, so code that catches those
(and real Dassl's callers) sees no difference.

Not in Dassl.pytorch: trainers import these through trainers/errors.py, which falls back to
plain subclasses under real Dassl (a CoOp checkout).
"""

__all__ = ["UserError", "UserValueError", "UserKeyError"]


class UserError(Exception):
    """Bad input (a config value, a file, a command-line flag) with a message naming the fix."""


class UserValueError(UserError, ValueError):
    """A value the user gave (config, flag, file content) that the code cannot use."""


class UserKeyError(UserError, KeyError):
    """A name the user gave (config key, registry entry, class folder) that does not exist."""

    def __str__(self) -> str:  # KeyError would print the repr, with quotes
        return str(self.args[0]) if self.args else ""
