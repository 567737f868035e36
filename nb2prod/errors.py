"""Errors a user can cause. Front ends show ``.message`` (or ``.to_dict()``), never a traceback."""

from __future__ import annotations

from typing import Any


class Nb2ProdError(Exception):
    """Base of every user-facing nb2prod error."""

    exit_code = 1

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        return {"error": self.message, "kind": type(self).__name__, **self.details}


class UsageError(Nb2ProdError):
    """Bad command-line or API usage (exit code 2)."""

    exit_code = 2


class NotebookError(Nb2ProdError):
    """The file is missing, not JSON, or not an nbformat >= 4 notebook."""


class ValidationError(Nb2ProdError):
    """The notebook's pipeline has validation errors (``details['errors']``)."""


class ParameterError(UsageError):
    """An unknown parameter or a value of the wrong type."""


class StoreUnavailable(Nb2ProdError):
    """The run store cannot be opened (its URL, server, rights or file): the operator's to fix, not a client's
    (HTTP 500, the message in the server's log only)."""

    http_status = 500


class RunNotFound(Nb2ProdError):
    """No run with that nb2prod or MLflow run id."""


class ScheduleNotFound(UsageError):
    """No schedule with that name (HTTP 404)."""

    http_status = 404
