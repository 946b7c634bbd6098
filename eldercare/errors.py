"""The one exception hierarchy of the eldercare package.

Every error the package raises on purpose derives from :class:`EldercareError`.
Foreign libraries' errors (psycopg, paho) are translated once, at the module
that talks to them, with ``raise ... from exc`` so the cause stays visible::

    EldercareError
    ├── ConfigError          settings missing, malformed or unsafe
    ├── ProtocolError        an uplink message the device protocol refuses (has .reason)
    ├── StorageError         the database refused or is unreachable (HTTP 503)
    │   ├── MigrationError
    │   └── DatabaseFault    a statement failed for a reason that is a bug or a
    │                        misconfiguration, not the input or availability (HTTP 500)
    ├── BrokerError          broker credentials, ACL or reload failed
    ├── NotFoundError        a registry or alarm id that does not exist (HTTP 404)
    ├── ConflictError        a state change that is not allowed now, a duplicate (HTTP 409)
    ├── InvalidInput         well-formed input the rules refuse (HTTP 422)
    ├── AuthError            bad credentials (HTTP 401)
    │   └── PermissionDenied a role that may not do this (HTTP 403)
    ├── RateLimited          too many attempts for now (HTTP 429 with Retry-After)
    ├── ModelError           an ML model cannot be trained, evaluated or loaded
    │   ├── UnknownModel     no model (or model version) by that name
    │   ├── NotEnoughData    too few labelled rows to train or evaluate honestly
    │   └── ArtefactRefused  an artefact whose sha256 or stored types are not trusted
    └── DemoError            something the person running the demo must fix

psycopg's errors are mapped to these in one table, ``eldercare.storage.db.PG_ERRORS``.
"""

from __future__ import annotations


class EldercareError(Exception):
    """Base of every error raised by eldercare on purpose."""


class ConfigError(EldercareError):
    """Settings are missing, malformed, or unsafe for the environment."""


class ProtocolError(EldercareError):
    """An uplink message refused by the device protocol.

    ``reason`` is one of the protocol's nack codes (``malformed_json``, ``schema``,
    ``too_large``, ``unknown_type``, ``unknown_device``); ``msg_id`` is the message
    id when it could be read, so the nack can name it.
    """

    def __init__(self, reason: str, detail: str, msg_id: str | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.msg_id = msg_id


class StorageError(EldercareError):
    """The database refused an operation or could not be reached."""


class DatabaseFault(StorageError):
    """The database refused a statement because of the code or its privileges (a
    programming error, a missing grant), not because of the input or an outage. A
    subclass of StorageError so callers that retry storage work still catch it; the API
    answers 500 rather than a misleading 503 "database unavailable"."""

    def __init__(self, sqlstate: str | None, name: str, primary: str | None = None) -> None:
        super().__init__(f"database fault {sqlstate or '?'} ({name})")
        self.sqlstate = sqlstate
        # The server's one-line message (names a column, table or constraint), for the
        # log only; never the DETAIL line, which quotes the row.
        self.primary = primary


class MigrationError(StorageError):
    """A schema migration failed or the schema is newer than this code."""


class BrokerError(EldercareError):
    """Broker credentials, ACL or reload could not be applied."""


class NotFoundError(EldercareError):
    """The named object does not exist."""


class ConflictError(EldercareError):
    """The requested change is not allowed in the object's current state."""


class AuthError(EldercareError):
    """Authentication failed or the role may not perform the action."""


class InvalidInput(EldercareError):
    """Input that parses but is refused: too short, inconsistent, or out of range."""


class PermissionDenied(AuthError):
    """Authenticated, but the role may not do this (HTTP 403)."""


class RateLimited(EldercareError):
    """Too many attempts (sign-ins, reveals) for now; ``retry_after`` is in seconds."""

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = max(1, int(retry_after))


class ModelError(EldercareError):
    """An ML model (eldercare.models) cannot be trained, evaluated, promoted or loaded."""


class UnknownModel(ModelError):
    """No model, or no version of a model, by that name."""


class NotEnoughData(ModelError):
    """Too few labelled rows (or one class only) to train or evaluate honestly."""


class ArtefactRefused(ModelError):
    """A model artefact that must not be loaded: its sha256 differs from the manifest's,
    or it holds types outside the model's allow-list (loading could run their code)."""


class DemoError(EldercareError):
    """Something the person running the demo must fix (printed without a traceback)."""
