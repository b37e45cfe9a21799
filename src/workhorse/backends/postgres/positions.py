"""An event's place in the PostgreSQL log as one int: ``xid * 10**19 + id``.

Readers page the log by ``(xid, id)``: every transaction with an xid below the snapshot's
xmin has ended and no later one gets such an xid, so that order only grows at its end
(``id`` alone does not: an older transaction can commit a lower id after a read moved
past it). Decimal, so the xid and the id read off the digits; ``id`` (bigint) is below
``10**19``. A value below ``10**19`` (xid 0, which no transaction has) is a plain id saved
before migration 0013 (see ``legacy``)."""

from __future__ import annotations

SCALE = 10**19
_MAX_XID = 2**64 - 1  # xid8
_MAX_ID = 2**63 - 1  # bigint


def join(xid: int, id_: int) -> int:
    return xid * SCALE + id_


def split(position: int) -> tuple[str, int]:
    """The ``(xid, id)`` to compare rows with: the xid as text (cast to xid8 in SQL). A
    caller's number past any position (an HTTP ``after=``) is held to the largest one."""
    xid, id_ = divmod(max(0, position), SCALE)
    if xid > _MAX_XID:
        return str(_MAX_XID), _MAX_ID
    return str(xid), min(id_, _MAX_ID)


def legacy(position: int) -> bool:
    """A plain event id (a cursor saved before the upgrade, or a caller's old number)."""
    return 0 < position < SCALE
