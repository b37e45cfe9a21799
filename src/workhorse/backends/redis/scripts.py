"""The Lua scripts of the Redis backend: the files in ``lua/``, each wrapped in the prelude's
once() and named by its SHA; on Redis 7+ some are also built into one Function library."""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from importlib import resources

NAMES = (
    "enqueue", "claim", "renew", "finish", "update", "reclaim", "cancel", "retry", "peek",
    "fetch", "watch", "counts", "query", "purge", "pause", "publish", "counter", "beat",
    "workers", "kv", "kvscan", "quarantine", "release", "jobevents", "claimed", "start",
)  # fmt: skip
# Scripts whose second run would apply a change again or answer otherwise: each call
# carries an id, and a replay returns the first run's reply (_prelude.lua, once()).
ONCE = frozenset({"claim", "finish", "update", "counter", "kv", "publish", "release",
                   "retry", "purge", "quarantine", "claimed", "start"})  # fmt: skip
# Scripts that load only the prelude's head and these of its sections ('-- [name]' lines),
# without once(): building the functions a call never uses cost a one-job enqueue ~2.5 µs
# of Redis time, a tenth of its script (docs/profiles.md, issue 16).
SECTIONS = {"enqueue": ("skiplists", "placing", "enqueuing")}
# Sections the other scripts load only if named here: the rest of them would build these
# functions on every call for nothing (and carry their text).
NARROW = {
    "kv": frozenset({"kv", "finish", "claimed", "start"}),
    "enqueuing": frozenset({"finish", "claimed", "start"}),
    "claims": frozenset({"finish", "claimed", "start"}),
    "revs": frozenset({"finish", "publish", "start"}),
    "publishing": frozenset({"publish", "start"}),
    "counting": frozenset({"counter", "start"}),
}
_SECTION = re.compile(r"^-- \[(\w+)\]\n", re.MULTILINE)
# Scripts called as Redis Functions (FCALL) on a standalone Redis 7+: the library builds
# the prelude's functions once, at FUNCTION LOAD, where a script call builds them anew
# each time (docs/decisions.md, "Redis enqueue as a Function", "The worker's Redis scripts
# as Functions"): the producer's calls and those a worker makes per job, batch or tick.
# fetch stays a script: at maxmemory a function that may write is refused before it runs,
# where a script is refused only at a write, and reading jobs and results must go on there.
FUNCTIONS = ("enqueue", "kv", "kvscan", "start", "claim", "renew", "finish", "claimed",
             "publish", "counter", "peek", "update", "beat", "reclaim")  # fmt: skip
# The flags of the scripts that still answer at maxmemory (a Function's registration, or
# a '#!lua' script's first line on a cluster; others are refused there before they run):
# 'no-writes' for those that only read, 'allow-oom' for those whose only writes delete (the
# entries of expired keys or workers), which free memory.
FLAGS = {"peek": "no-writes", "fetch": "no-writes", "counts": "no-writes", "query": "no-writes",
         "jobevents": "no-writes", "kvscan": "allow-oom", "workers": "allow-oom"}  # fmt: skip
# The prelude's top-level locals that each call sets (from its arguments and the clock):
# in the library they are declared once and assigned by begin() at the start of a call.
_PER_CALL = ("QK", "G", "P", "MAXEV", "_t", "NOW", "NOWS", "LAST", "CALL")
_GLOBALS = "redis, string, table, math, tonumber, tostring, unpack, ipairs, pcall, cjson, type"
_CALL_INPUT = re.compile(r"\b(ARGV|KEYS|redis\.call)\b")


@dataclass(slots=True)
class Script:
    name: str
    sha: str
    # How a call names it: EVALSHA and the SHA, or FCALL and the library's function
    # (set by the backend once the library is loaded; see use_function).
    verb: str = "EVALSHA"
    ref: str = ""

    def __post_init__(self) -> None:
        self.ref = self.ref or self.sha

    def use_function(self, function: str | None) -> None:
        """Call it as ``function`` (FCALL), or by its SHA again (None)."""
        self.verb, self.ref = ("FCALL", function) if function else ("EVALSHA", self.sha)


def _prelude() -> tuple[str, dict[str, str]]:
    folder = resources.files("workhorse.backends.redis").joinpath("lua")
    return folder.joinpath("_prelude.lua").read_text("utf-8"), {
        name: folder.joinpath(f"{name}.lua").read_text("utf-8") for name in NAMES
    }


def load_script_texts(head: str = "") -> dict[str, Script]:
    """The scripts by SHA (their texts: script_texts). ``head``: '#!lua\n' on a cluster
    of Redis 7+, where a script so marked is refused the moment it touches a second slot,
    even one on the same node."""
    return {
        name: Script(name, hashlib.sha1(text.encode()).hexdigest())
        for name, text in script_texts(head).items()
    }


def script_texts(head: str = "") -> dict[str, str]:
    """Each script's text, built anew for each load: a backend keeps only the SHAs, so a
    process does not hold the texts (the prelude in every one of them) once they are
    loaded."""
    prelude, bodies = _prelude()
    first, *parts = _SECTION.split(prelude)
    sections = dict(zip(parts[::2], parts[1::2], strict=True))
    out = {}
    for name in NAMES:
        body = bodies[name]
        line = head
        if head and name in FLAGS:  # '#!lua' and its flags (those of the Function's)
            line = f"{head.rstrip()} flags={FLAGS[name]}\n"
        if name in SECTIONS:
            text = "".join([line, first, *(sections[s] for s in SECTIONS[name]), "\n", body])
        else:
            kept = [part for sec, part in sections.items() if name in NARROW.get(sec, (name,))]
            # The body runs inside once() (see _prelude.lua), which replays a call id's reply.
            text = "".join(
                [line, first, *kept, f"\nreturn once('{name}', function()\n{body}\nend)\n"]
            )
        out[name] = text
    return out


@dataclass(frozen=True, slots=True)
class Library:
    name: str
    text: str  # FUNCTION LOAD's argument
    functions: dict[str, str]  # script name -> its function's name


@functools.cache  # one per process, shared by its backends (its functions map is only read)
def load_library(names: tuple[str, ...] = FUNCTIONS) -> Library:
    """The scripts ``names`` as one Function library: the prelude once, at the library's
    top level, each call's own locals set by begin(), and each body a function of its own
    (in once() as a script's is). Named by a hash of its text, so that processes of
    different versions on one server each call their own."""
    prelude, bodies = _prelude()
    assigns = []
    for var in _PER_CALL:
        line = re.compile(rf"^local {var} = (.+)$", re.MULTILINE)
        found = line.findall(prelude)
        if len(found) != 1:
            raise RuntimeError(f"_prelude.lua: expected one 'local {var} = ...' line")
        assigns.append(f"  {var} = {found[0]}")
        prelude = line.sub(f"local {var}", prelude)
    # The library's tables last between its calls (_prelude.lua, [skiplists]).
    prelude, marked = re.subn(r"^local LIBRARY = false$", "local LIBRARY = true", prelude,
                              flags=re.MULTILINE)  # fmt: skip
    if marked != 1:
        raise RuntimeError("_prelude.lua: expected one 'local LIBRARY = false' line")
    for row in prelude.splitlines():
        # A top-level line that reads a call's input would run once, at load: refuse it.
        if row[:1] not in ("", " ", "-") and _CALL_INPUT.search(row) and "function" not in row:
            raise RuntimeError(f"_prelude.lua: per-call line not in scripts._PER_CALL: {row}")
    parts = [
        # Upvalues, not globals (a function's global reads go through its sandbox's index),
        # taken at the first call: at load, the library sees none of them (redis.call
        # neither). _globals() is written before the locals, so it reads the globals.
        f"local function _globals()\n  return {_GLOBALS}\nend\n",
        "local register = redis.register_function\n",
        f"local KEYS, ARGV, {_GLOBALS}\n",
        prelude,
        "\nlocal function begin(keys, args)\n",
        f"  if not redis then {_GLOBALS} = _globals() end\n",
        "  KEYS, ARGV = keys, args\n",
        "\n".join(assigns),
        "\nend\n",
    ]
    for name in names:
        parts.append(f"\nlocal function body_{name}()\n{bodies[name]}\nend\n")
    code = "".join(parts)
    # The registrations name the library: hash what they add (the names and their flags).
    signed = code + repr([(name, FLAGS.get(name)) for name in names])
    lib = "workhorse_" + hashlib.sha1(signed.encode()).hexdigest()[:16]
    functions = {name: f"{lib}_{name}" for name in names}
    for name in names:
        run = f"once('{name}', body_{name})" if name in ONCE else f"body_{name}()"
        flags = f"{{'{FLAGS[name]}'}}" if name in FLAGS else "{}"
        parts.append(
            f"register{{function_name = '{functions[name]}', flags = {flags},\n"
            f"  callback = function(keys, args)\n  begin(keys, args)\n  return {run}\nend}}\n"
        )
    return Library(lib, f"#!lua name={lib}\n" + "".join(parts), functions)
