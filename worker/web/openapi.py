"""`GET /openapi.json`: the OpenAPI 3.1 document of every endpoint, generated from the operation
tables (worker/web/schemas/operations.py, org_operations.py) and the pydantic models it names.

Request models that validate (the quote body) and the models written for the document (events,
answers) are turned into JSON Schema by pydantic, which speaks the 2020-12 dialect OpenAPI 3.1
uses; each model becomes a component, referenced from every operation that takes or answers it.
The document is built once per process: it depends on the code only, never on the request.
"""

from __future__ import annotations

import functools
import importlib.metadata
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import JsonSchemaMode, models_json_schema
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from worker.web.schemas.events import event_models
from worker.web.schemas.operations import (
    OPERATIONS,
    SECURITY_SCHEMES,
    Content,
    Operation,
    Reply,
)
from worker.web.schemas.org_operations import ORG_OPERATIONS

ALL_OPERATIONS = (*OPERATIONS, *ORG_OPERATIONS)

REF = "#/components/schemas/{model}"
TAGS = {
    "events": "Usage, seat, plan and resource events into the ledger.",
    "pricing": "Quotes and the pricing pages, from the price books.",
    "reconciliations": "Stripe invoices compared with the ledger.",
    "quotas": "Limits the product checks before it acts.",
    "orgs": "What an org is on, what it was billed, and its credits.",
    "admin": "Actions that reach Stripe.",
    "webhook": "Stripe's events.",
    "pages": "The support site (HTML, a login session).",
    "status": "The worker at a glance (`billing status`).",
    "meta": "Health, metrics and this document.",
}


class _Schemas:
    """Schemas by content value, and the components they refer to."""

    def __init__(self, operations: Iterable[Operation]) -> None:
        keyed: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {}
        for model in event_models():  # every event type, even one no body lists by name
            keyed[(model, "validation")] = None
        for operation in operations:
            for value in (operation.body or {}).values():
                if _is_model(value):
                    keyed[(value, "validation")] = None
            for reply in operation.replies.values():
                for value in reply.content.values():
                    if _is_model(value):
                        keyed[(value, "serialization")] = None
        refs, defs = models_json_schema(list(keyed), ref_template=REF)
        self.refs = refs
        self.components: dict[str, Any] = dict(defs.get("$defs", {}))

    def of(self, value: Any, mode: JsonSchemaMode) -> dict[str, Any] | None:
        if value is None or isinstance(value, dict):
            return value
        if _is_model(value):
            return dict(self.refs[(value, mode)])
        schema = TypeAdapter(value).json_schema(ref_template=REF, mode=mode)
        self.components.update(schema.pop("$defs", {}))
        return schema


def _is_model(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


def _content(schemas: _Schemas, content: Content, mode: JsonSchemaMode) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for media_type, value in content.items():
        schema = schemas.of(value, mode)
        found[media_type] = {} if schema is None else {"schema": schema}
    return found


def _reply(schemas: _Schemas, reply: Reply) -> dict[str, Any]:
    described: dict[str, Any] = {"description": reply.description}
    if reply.content:
        described["content"] = _content(schemas, reply.content, "serialization")
    if reply.headers:
        described["headers"] = {
            name: {"description": text, "required": True, "schema": {"type": "string"}}
            for name, text in reply.headers.items()
        }
    return described


def _operation(schemas: _Schemas, operation: Operation) -> dict[str, Any]:
    described: dict[str, Any] = {
        "tags": [operation.tag],
        "summary": operation.summary,
        "operationId": f"{operation.method}_{operation.path}",
    }
    if operation.description:
        described["description"] = operation.description
    if operation.parameters:
        described["parameters"] = list(operation.parameters)
    if operation.body is not None:
        content = _content(schemas, operation.body, "validation")
        described["requestBody"] = {"required": True, "content": content}
    security: list[dict[str, list[str]]] = [{name: []} for name in operation.security]
    described["security"] = [*security, {}] if operation.optional_security else security
    described["responses"] = {
        str(status): _reply(schemas, reply) for status, reply in sorted(operation.replies.items())
    }
    return described


@functools.cache
def build_document() -> dict[str, Any]:
    schemas = _Schemas(ALL_OPERATIONS)
    paths: dict[str, dict[str, Any]] = {}
    for operation in ALL_OPERATIONS:
        paths.setdefault(operation.path, {})[operation.method] = _operation(schemas, operation)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Billing worker",
            "version": importlib.metadata.version("billing-worker"),
            "description": "Usage ingestion, quotes, reconciliations, quotas, orgs and their "
            "credits, status and metrics, admin actions and the Stripe webhook of `billing "
            "serve`. Amounts are integer minor units (cents); quantities are exact decimals, "
            "as JSON numbers or decimal strings.",
        },
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "tags": [{"name": name, "description": text} for name, text in TAGS.items()],
        "paths": paths,
        "components": {
            "schemas": dict(sorted(schemas.components.items())),
            "securitySchemes": dict(SECURITY_SCHEMES),
        },
        "security": [],
    }


async def openapi_json(_request: Request) -> JSONResponse:
    return JSONResponse(build_document())


routes = [Route("/openapi.json", openapi_json, methods=["GET"])]
