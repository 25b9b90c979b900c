"""The witness's HTTP interface (c2sp.org/tlog-witness) as an ASGI app, served by uvicorn.

``POST /add-checkpoint`` hands the raw body to ``assay.audit.witness.handle_add_checkpoint`` and
returns its status, body and content type unchanged. ``GET /<hex SHA-256 of origin>/checkpoint``
serves the latest checkpoint the witness cosigned for that log, with the log's and the witness's
signatures (the spec's monitoring interface). Nothing else is exposed: no OpenAPI pages.

The state work runs on a worker thread (SQLite and fsync block); the compare-and-swap inside
one transaction is what serializes racing requests, so any number of threads — or several
server processes on one witness home — stay correct.
"""

from __future__ import annotations

from pathlib import Path

import anyio.to_thread
import uvicorn
from litestar import Litestar, Request, Response, get, post

from assay.audit.witness import MAX_REQUEST_BYTES, TEXT_CONTENT_TYPE, WitnessState, handle_add_checkpoint


def create_app(home: Path) -> Litestar:
    """The ASGI app of the witness whose home is ``home`` (BadInput if it is not a witness home)."""
    state = WitnessState.open(home)

    @post("/add-checkpoint", status_code=200)
    async def add_checkpoint(request: Request) -> Response[bytes]:
        body = await request.body()
        reply = await anyio.to_thread.run_sync(handle_add_checkpoint, state, body)
        # Set the header itself: litestar would append a charset to text/x.tlog.size.
        return Response(reply.body, status_code=reply.status, headers={"content-type": reply.content_type})

    @get("/{origin_hash:str}/checkpoint", sync_to_thread=True)
    def latest_checkpoint(origin_hash: str) -> Response[bytes]:
        note = state.latest_note(origin_hash)
        if note is None:
            return Response(b"this witness has not cosigned a checkpoint of that log\n", status_code=404,
                            headers={"content-type": TEXT_CONTENT_TYPE})
        return Response(note.encode(), status_code=200, headers={"content-type": TEXT_CONTENT_TYPE})

    return Litestar(
        route_handlers=[add_checkpoint, latest_checkpoint],
        openapi_config=None,
        request_max_body_size=MAX_REQUEST_BYTES + 1,
    )


def serve(home: Path, host: str, port: int, access_log: bool = True) -> None:
    """Run the witness on ``host:port`` until interrupted."""
    app = create_app(home)
    uvicorn.run(app, host=host, port=port, access_log=access_log, log_level="info", server_header=False)
