"""Ask a scheduler who it is, over one connection, without registering as a client.

``launch`` polls it until the scheduler has workers; ``invoke dashboard`` reads the port of
the dashboard it serves. Unlike a ``Client``, the identity call does not count as a
connected client, so it never holds an idle cluster up.
"""

from __future__ import annotations

import asyncio
from typing import Any

from distributed.comm.core import connect
from distributed.security import Security


async def _identity(address: str, security: Security | None, timeout: float) -> dict[str, Any]:
    arguments = security.get_connection_args("client") if security is not None else {}  # type: ignore[no-untyped-call]
    comm = await connect(address, timeout=timeout, **arguments)  # type: ignore[no-untyped-call]
    try:
        await comm.write({"op": "identity", "reply": True})
        reply: dict[str, Any] = await comm.read()
        return reply
    finally:
        await comm.close()


def scheduler_identity(
    address: str, security: Security | None, timeout: float = 5
) -> dict[str, Any]:
    """The scheduler's ``identity`` reply (address, workers, services, ...).

    Raises ``OSError``, ``TimeoutError`` or ``EOFError`` when it does not answer.
    """
    return asyncio.run(_identity(address, security, timeout))
