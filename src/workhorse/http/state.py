"""What every route of one API shares: the client, the gate, the inline calls, and the
served app's hooks and flows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from workhorse.client import Client
from workhorse.flows import Flows
from workhorse.hooks import Hooks
from workhorse.http.auth import Auth, Caller
from workhorse.http.batching import EnqueueBatcher
from workhorse.http.calls import InlineCalls

# Declares the bearer scheme in the OpenAPI document (the /docs page's Authorize button);
# the check itself is Auth's, which also knows scopes and the app's auth function.
_BEARER = HTTPBearer(auto_error=False, description="a token of WORKHORSE_API_TOKENS")
Bearer = Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]


@dataclass(slots=True)
class Api:
    client: Client
    auth: Auth
    calls: InlineCalls
    prefix: str
    enqueues: EnqueueBatcher
    hooks: Hooks  # the served app's: replay calls its hooks
    flows: Flows  # the served app's: its flows' graphs, runs and waits

    async def reader(self, request: Request, _: Bearer) -> Caller:
        return await self.auth.require(request, "read")

    async def writer(self, request: Request, _: Bearer) -> Caller:
        return await self.auth.require(request, "write")

    def location(self, job_id: str) -> str:
        return f"{self.prefix}/jobs/{job_id}"
