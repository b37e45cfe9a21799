"""The Lua scripts of the Redis backend: the files in ``lua/``, each wrapped in the prelude's
once() and named by its SHA."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

NAMES = (
    "enqueue", "claim", "renew", "finish", "update", "reclaim", "cancel", "retry", "peek",
    "fetch", "counts", "query", "purge", "pause", "publish", "counter", "beat",
    "workers", "kv", "quarantine", "release", "jobevents",
)  # fmt: skip
# Scripts whose second run would apply a change again or answer otherwise: each call
# carries an id, and a replay returns the first run's reply (_prelude.lua, once()).
ONCE = frozenset({"claim", "finish", "update", "counter", "kv", "publish", "release",
                   "retry", "purge", "quarantine"})  # fmt: skip
# Scripts that load only the prelude's head and these of its sections ('-- [name]' lines),
# without once(): building the functions a call never uses cost a one-job enqueue ~2.5 µs
# of Redis time, a tenth of its script (docs/profiles.md, issue 16).
SECTIONS = {"enqueue": ("placing",)}
_SECTION = re.compile(r"^-- \[(\w+)\]\n", re.MULTILINE)


@dataclass(slots=True)
class Script:
    name: str
    text: str
    sha: str


def load_script_texts(head: str = "") -> dict[str, Script]:
    """``head``: '#!lua\n' on a cluster of Redis 7+, where a script so marked is refused
    the moment it touches a second slot, even one on the same node."""
    folder = resources.files("workhorse.backends.redis").joinpath("lua")
    prelude = head + folder.joinpath("_prelude.lua").read_text("utf-8")
    first, *parts = _SECTION.split(prelude)
    sections = dict(zip(parts[::2], parts[1::2], strict=True))
    out = {}
    for name in NAMES:
        body = folder.joinpath(f"{name}.lua").read_text("utf-8")
        if name in SECTIONS:
            text = "".join([first, *(sections[s] for s in SECTIONS[name]), "\n", body])
        else:
            # The body runs inside once() (see _prelude.lua), which replays a call id's reply.
            text = f"{prelude}\nreturn once('{name}', function()\n{body}\nend)\n"
        out[name] = Script(name, text, hashlib.sha1(text.encode()).hexdigest())
    return out
