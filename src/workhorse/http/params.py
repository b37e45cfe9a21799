"""The path and query parameters the REST routes share."""

from typing import Annotated

from fastapi import Path

NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,199}$"
Name = Annotated[str, Path(pattern=NAME_PATTERN)]
JobId = Annotated[str, Path(pattern=r"^[0-9a-f]{1,64}$")]
MAX_CURSOR = 2**63 - 1  # the event log's ids are 64-bit integers in every store
MAX_WAIT = 60.0  # seconds a ?wait= may hold a request (longer: poll GET /jobs/{id})
