"""What every route of one API shares: the client, the gate and the inline calls."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from workhorse.client import Client
from workhorse.http.auth import Auth, Caller
from workhorse.http.calls import InlineCalls


@dataclass(slots=True)
class Api:
    client: Client
    auth: Auth
    calls: InlineCalls
    prefix: str

    async def reader(self, request: Request) -> Caller:
        return await self.auth.require(request, "read")

    async def writer(self, request: Request) -> Caller:
        return await self.auth.require(request, "write")

    def location(self, job_id: str) -> str:
        return f"{self.prefix}/jobs/{job_id}"
