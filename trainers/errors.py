"""The user-error types for trainers (dassl/utils/errors.py): bad input, reported on one line.

Real Dassl.pytorch, in a CoOp checkout (README), has no such types; there the trainers raise
plain ValueError and KeyError subclasses, which its train.py reports with a traceback as it
does every error.
"""
try:
    from dassl.utils.errors import UserError, UserKeyError, UserValueError
except ImportError:  # real Dassl.pytorch
    class UserError(Exception):
        """Bad input, with a message naming the fix."""

    class UserValueError(UserError, ValueError):
        """A value the user gave that the code cannot use."""

    class UserKeyError(UserError, KeyError):
        """A name the user gave that does not exist."""

__all__ = ["UserError", "UserValueError", "UserKeyError"]
