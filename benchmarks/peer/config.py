"""What the plain-queue processes share: their settings (passed as one JSON argument)
and the table they write."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

MAX_ATTEMPTS = 3

SCHEMA = """
CREATE TABLE emails (
    id uuid PRIMARY KEY,
    recipient text NOT NULL,
    subject text NOT NULL,
    html text NOT NULL,
    status text NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    last_error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True)
class PeerConfig:
    """Where the plain-queue service finds its database, queue and SMTP server."""

    database_dsn: str
    amqp_url: str
    queue: str
    api_port: int
    smtp_host: str
    smtp_port: int
    database_pool_size: int = 10
    smtp_pool_size: int = 8
    prefetch: int = 50

    def argument(self) -> str:
        """This config as the command-line argument of a peer process."""
        return json.dumps(asdict(self))

    @classmethod
    def parse(cls, argument: str) -> PeerConfig:
        """The config ``argument`` made."""
        return cls(**json.loads(argument))
