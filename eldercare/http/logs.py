"""Access logs without bearer tokens (audit M5).

The console sends its websocket token in the first message, but an old or careless client
may still put ``?token=`` in a URL, and uvicorn logs the path with its query string. The
request is refused; this filter makes sure the token does not outlive it in the log.
"""

from __future__ import annotations

import logging
import re
from typing import Final

_SECRET_PARAM: Final = re.compile(r"((?:access_)?token=)[^&\s\"']+", re.IGNORECASE)
UVICORN_LOGGERS: Final = ("uvicorn", "uvicorn.error", "uvicorn.access")


def redact(text: str) -> str:
    return _SECRET_PARAM.sub(r"\1[redacted]", text)


class RedactTokens(logging.Filter):
    """Rewrites ``token=...`` in a record's message and string arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        return True


def redact_tokens() -> None:
    """Attach the filter to uvicorn's loggers (after uvicorn configured them: a logging
    config applied later would not remove it, but one applied before could replace it)."""
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())
