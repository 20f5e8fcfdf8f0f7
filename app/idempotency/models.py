"""The ``idempotency_keys`` table: the first answer to each (scope, Idempotency-Key).

The scope is the whole deployment (``DEPLOYMENT``): a retry is a retry whichever valid API key
sends it.
"""

from datetime import datetime

from sqlalchemy import DateTime, Index, Integer, LargeBinary, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.models import Base

DEPLOYMENT = "*"


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_keys"
    # Purging old records scans by age.
    __table_args__ = (Index("ix_idempotency_keys_created_at", "created_at"),)

    scope: Mapped[str] = mapped_column(Text, primary_key=True)
    key: Mapped[str] = mapped_column(Text, primary_key=True)
    fingerprint: Mapped[bytes] = mapped_column(LargeBinary)  # sha256(path + canonical body)
    status_code: Mapped[int | None] = mapped_column(Integer)
    content_type: Mapped[str | None] = mapped_column(Text)
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
