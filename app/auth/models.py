"""The ``api_keys`` table. Only a SHA-256 of each secret is stored.

A plain hash is enough (no bcrypt): secrets are 32 random bytes, so there is nothing to guess
by brute force, and a fast hash keeps authentication off the hot path's CPU budget.
"""

import enum
from datetime import datetime

from sqlalchemy import DateTime, LargeBinary, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from app.core.models import Base


class Scope(enum.StrEnum):
    READ = "read"  # list, history, check without lock or send_event
    WRITE = "write"  # every balance mutation (and everything read allows)
    ADMIN = "admin"  # key management (and everything write allows)


SCOPE_RANK = {Scope.READ: 0, Scope.WRITE: 1, Scope.ADMIN: 2}


class ApiKey(Base):
    __tablename__ = "api_keys"
    # Authentication looks a key up by the hash of the presented secret.
    __table_args__ = (UniqueConstraint("secret_hash", name="uq_api_keys_secret_hash"),)

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    scopes: Mapped[list[str]] = mapped_column(ARRAY(Text))
    secret_hash: Mapped[bytes] = mapped_column(LargeBinary)
    secret_hint: Mapped[str] = mapped_column(Text)  # "sk_AbCd…": recognisable, useless to steal
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
