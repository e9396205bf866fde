"""The process-wide clients the API's services use, made once in the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from api.admission import SubmissionGate
from herald.settings import Settings


@dataclass(frozen=True)
class Backends:
    """The process-wide clients a request needs."""

    engine: AsyncEngine
    temporal: Client
    settings: Settings
    admission: SubmissionGate
