"""Request work that could hold the event loop up: inline when small, in a thread when large.

Small requests are parsed on the event loop, where a thread hop would cost more than the
work (``docs/performance.md``); a large body or table would stall every other request
and the health probes meanwhile, so those move to a worker thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from serving.columns import EncodedTable

Result = TypeVar("Result")

#: Bodies of more bytes are decompressed and decoded in a worker thread (a 64-row JSON
#: body of 32 features is about 40 KB; 1 MiB of JSON numbers takes about 10 ms to decode).
OFF_LOOP_BODY_BYTES = 1 << 20
#: JSON numbers compress by up to about this factor, so a compressed body of this
#: fraction of :data:`OFF_LOOP_BODY_BYTES` may inflate past it.
COMPRESSION_FACTOR = 16
#: Table requests of more rows are encoded in a worker thread (4,096 records of 20
#: columns take about 60 ms).
OFF_LOOP_TABLE_ROWS = 256


def body_is_large(raw: bytes, encoding: str | None) -> bool:
    """Whether decoding ``raw`` (``Content-Encoding`` ``encoding``) belongs off the loop."""
    compressed = (encoding or "identity").strip().lower() not in ("", "identity")
    limit = OFF_LOOP_BODY_BYTES // COMPRESSION_FACTOR if compressed else OFF_LOOP_BODY_BYTES
    return len(raw) > limit


async def run_sized(large: bool, work: Callable[[], Result]) -> Result:
    """``work()``: in a worker thread when ``large``, else right here on the loop."""
    return await asyncio.to_thread(work) if large else work()


async def encode_off_loop(encode: Callable[[Any], EncodedTable], rows: Any) -> EncodedTable:
    """``encode(rows)``: inline for small table requests, in a worker thread for large ones."""
    size = len(rows) if isinstance(rows, list) else max((len(v) for v in rows.values()), default=0)
    return await run_sized(size > OFF_LOOP_TABLE_ROWS, lambda: encode(rows))
