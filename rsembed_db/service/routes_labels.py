"""``/v1/labels``: named label sets (positive / negative examples) kept in the store.

Reads need a read key, changes a write key. ``who`` is recorded as the caller's key id
(``key:`` + 8 hex digits of its SHA-256; ``open`` without keys), prefixed by the name
the client gives in ``who``, if any.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from rsembed_db.errors import SpecError
from rsembed_db.query.labels import label_set_geojson, labelled_rows
from rsembed_db.service.auth import Principal, Reader, Writer
from rsembed_db.service.context import Context
from rsembed_db.service.errors import ApiError, errors
from rsembed_db.service.tables import resolve_table
from rsembed_db.store.labels import LabelSets, check_set_name

router = APIRouter(prefix="/v1", tags=["labels"])
GEOJSON = "application/geo+json"
MAX_WHO = 64


def _set_name(name: Annotated[str, Path(alias="set", description="Label set name: 1-64 letters, digits, _ or -.")]
              ) -> str:
    return check_set_name(name, "set")


SetName = Annotated[str, Depends(_set_name)]


class Label(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str
    label: Literal["positive", "negative"]


class LabelsBody(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, json_schema_extra={"examples": [
        {"table": "mosaiks", "labels": [{"key": "3f2a...", "label": "positive"}], "who": "ana"}]})

    table: str | None = None
    model: str | None = None
    config: dict[str, Any] | None = Field(None, alias="model_config", description="Model configuration.")
    labels: list[Label] = Field(min_length=1, max_length=10_000)
    who: str | None = Field(None, description="A name to record with the caller's key id (at most 64 characters).")


def _who(body_who: str | None, caller: Principal) -> str:
    if body_who is None or not body_who.strip():
        return caller.key_id or "anonymous"
    if len(body_who) > MAX_WHO:
        raise SpecError("who", f"at most {MAX_WHO} characters, got {len(body_who)}")
    return f"{body_who.strip()} ({caller.key_id})"


@router.get("/labels", summary="Every label set: table, counts, last change", responses=errors(401))
def list_sets(ctx: Context, _: Reader) -> dict[str, Any]:
    return {"sets": [info.to_dict() for info in LabelSets(ctx.store).sets()]}


@router.get("/labels/{set}.geojson", summary="A label set as GeoJSON (the labelled rows' footprints)",
            response_model=None, responses={200: {"content": {GEOJSON: {}}}, **errors(401, 404, 422)})
def set_geojson(name: SetName, ctx: Context, _: Reader) -> JSONResponse:
    return JSONResponse(label_set_geojson(ctx.store, name), media_type=GEOJSON)


@router.get("/labels/{set}", summary="A label set: its labels with the rows' places", responses=errors(401, 404, 422))
def get_set(name: SetName, ctx: Context, _: Reader) -> dict[str, Any]:
    rows = labelled_rows(ctx.store, name)
    for row in rows:
        row.pop("geometry")
    return {"name": name, "table": rows[0]["table"], "labels": rows}


@router.post("/labels/{set}", summary="Add or change labels of a set (needs a write key)",
             responses=errors(401, 403, 404, 409, 413, 422, 507))
def put_labels(name: SetName, body: LabelsBody, ctx: Context, caller: Writer) -> dict[str, Any]:
    table, _variant = resolve_table(ctx, body.table, body.model, body.config)
    sets = LabelSets(ctx.store)
    written = sets.put(name, table, [(item.key, item.label) for item in body.labels], _who(body.who, caller))
    info = next(i for i in sets.sets() if i.name == name)
    return {"written": written, **info.to_dict()}


@router.delete("/labels/{set}/{key}", summary="Remove one label from a set (needs a write key)",
               responses=errors(401, 403, 404, 409, 422, 507))
def delete_label(name: SetName, key: str, ctx: Context, _: Writer) -> dict[str, Any]:
    if LabelSets(ctx.store).delete(name, [key]) == 0:
        raise ApiError(404, "key", f"label set {name!r} has no label for key {key!r}")
    return {"removed": 1}


@router.delete("/labels/{set}", summary="Remove a whole label set (needs a write key)",
               responses=errors(401, 403, 404, 409, 422, 507))
def delete_set(name: SetName, ctx: Context, _: Writer) -> dict[str, Any]:
    removed = LabelSets(ctx.store).delete(name)
    if removed == 0:
        raise ApiError(404, "set", f"no label set {name!r}")
    return {"removed": removed}
