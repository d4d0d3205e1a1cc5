"""HTTP routes that let a person or a chaos experiment break a running simulated fleet.

``POST /sim/faults`` takes a fault as JSON and answers 201 ``{"id", "kind"}``; bad input is a 400
``{"error", "field"}``, a body over 64 KiB a 413, one not there within 30 s a 408, a compressed one a
415, a client gone mid-body a 400 (read as serve reads its bodies, and answered in its words:
``gpuwarden.httpbody``). ``GET /sim/faults`` lists active faults and the log; ``DELETE
/sim/faults/{id}`` clears one. Mounted by the exporter only when ``--simulate`` is on.
"""

from __future__ import annotations

import json
import logging

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gpuwarden.errors import InputError
from gpuwarden.httpbody import BodyRefused, check_json_body, read_limited
from gpuwarden.sim.faults import parse_fault
from gpuwarden.sim.fleet import Fleet

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
BODY_TIMEOUT_SECONDS = 30.0


def _error(status: int, message: str, field: str = "") -> JSONResponse:
    return JSONResponse({"error": message, "field": field}, status_code=status)


def fault_routes(fleet: Fleet) -> list[Route]:
    """Starlette routes for fault injection on ``fleet``."""

    async def post_fault(request: Request) -> JSONResponse:
        try:
            body = await read_limited(request, MAX_BODY_BYTES, BODY_TIMEOUT_SECONDS)
            # Only JSON: a web page can send text/plain here without a preflight (CSRF from 127.0.0.1).
            check_json_body(request, body)
        except BodyRefused as exc:
            return _error(exc.status, str(exc), exc.field)
        except InputError as exc:  # a Content-Type that does not parse
            return _error(400, str(exc), exc.field)
        try:
            payload = json.loads(body or b"null")
        except (ValueError, UnicodeDecodeError) as exc:
            return _error(400, f"body is not valid JSON: {exc}")
        try:
            spec = parse_fault(payload, fleet)
            fault_id = fleet.inject(spec)
        except InputError as exc:
            return _error(400, str(exc), exc.field)
        except Exception as exc:  # an HTTP boundary answers; it never crashes with a 500
            logger.exception("fault injection failed", extra={"payload": payload})
            return _error(400, f"fault could not be injected: {exc}")
        logger.info("fault injected", extra={"fault_id": fault_id, "kind": spec.kind, "node": spec.node})
        return JSONResponse({"id": fault_id, "kind": spec.kind}, status_code=201)

    async def list_faults(request: Request) -> JSONResponse:
        active = [r.to_dict() for r in fleet.active_faults()]
        log = [r.to_dict() for r in list(fleet.fault_log)]
        return JSONResponse({"active": active, "log": log})

    async def clear_fault(request: Request) -> JSONResponse:
        fault_id = str(request.path_params["fault_id"])
        try:
            fleet.clear_fault(fault_id)
        except InputError as exc:
            return _error(404, str(exc), exc.field)
        return JSONResponse({"id": fault_id, "cleared": True})

    return [
        Route("/sim/faults", post_fault, methods=["POST"]),
        Route("/sim/faults", list_faults, methods=["GET"]),
        Route("/sim/faults/{fault_id}", clear_fault, methods=["DELETE"]),
    ]
