"""Query-string models read in one validation, documented as FastAPI would document them.

FastAPI reads an `Annotated[Model, Query()]` parameter field by field on every request (each
field's annotation inspected for lists, its aliases looked up, its value fetched), which
costs more than the model's own validation, on the busiest endpoints. `from_query(Model)`
validates the query string as one dict instead; a bad value is the same 422, located at
`("query", field)`. `document(router)` gives each route using it the parameters FastAPI
would have derived from the model (a test compares the two).
"""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.datastructures import QueryParams

M = TypeVar("M", bound=BaseModel)
REF_TEMPLATE = "#/components/schemas/{model}"  # where FastAPI puts the enums these refer to


def from_query(model: type[M]) -> Any:
    """`Depends` for `query: Annotated[Model, from_query(Model)]`."""

    async def parse(request: Request) -> M:
        try:
            return model.model_validate(_values(request.query_params, model))
        except ValidationError as error:
            errors = [{**e, "loc": ("query", *e["loc"])} for e in error.errors(include_url=False)]
            raise RequestValidationError(errors) from None

    parse.query_model = model  # type: ignore[attr-defined]  # read by document()
    return Depends(parse)


def _values(params: QueryParams, model: type[BaseModel]) -> dict[str, Any]:
    """What FastAPI hands the model: a field's last value when repeated, and an unknown
    name's every value (so the 422 for it shows them all)."""
    values: dict[str, Any] = dict(params)
    if len(values) < len(params.multi_items()):  # some name repeated
        for name in values.keys() - model.model_fields.keys():
            if len(repeated := params.getlist(name)) > 1:
                values[name] = repeated
    return values


def parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    """The OpenAPI query parameters of `model`'s fields."""
    schema = model.model_json_schema(ref_template=REF_TEMPLATE)
    required = set(schema.get("required", ()))
    # pydantic leaves the title off a field that refers to another schema; FastAPI sets it
    return [
        {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": {"title": name.replace("_", " ").title(), **field},
        }
        for name, field in schema["properties"].items()
    ]


def document(router: APIRouter) -> None:
    """Add the query parameters of every `from_query` model a route depends on to its docs."""
    for route in router.routes:
        if not isinstance(route, APIRoute):
            continue
        for dependency in route.dependant.dependencies:
            model = getattr(dependency.call, "query_model", None)
            if model is not None:
                extra = route.openapi_extra = route.openapi_extra or {}
                extra.setdefault("parameters", []).extend(parameters(model))
