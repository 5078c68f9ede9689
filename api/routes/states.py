"""Item states and label stats: what people record about a version's items."""

from __future__ import annotations

from typing import Any

from starlette.routing import Route

from api.http import Context, endpoint, if_match, page_endpoint, public
from api.routes.datasets import VERSION
from api.routes.items import ITEM
from shared.schemas import ItemStatePublic, ItemStateUpdate, LabelStat
from shared.services import label_stats, states


@endpoint(ItemStatePublic)
def get_item_state(c: Context) -> dict[str, Any]:
    """The item's state in this version; never written: version 0."""
    return public(ItemStatePublic, states.get_state(c.session, c.user_id, **c.ids))


@endpoint(ItemStatePublic, body=ItemStateUpdate, if_match=True, errors=(412,))
def put_item_state(c: Context) -> dict[str, Any]:
    """Write the item's state; If-Match "N" applies it only at version N
    ("0": only if never written)."""
    row = states.put_state(c.session, c.user_id, **c.ids, body=c.body, if_match=if_match(c.request))
    return public(ItemStatePublic, row)


@endpoint(LabelStat, many=True)
def get_label_stats(c: Context) -> list[dict[str, Any]]:
    """Per label of the version: its annotations in the split and the items
    they are on; label_id "": the split's unlabelled items."""
    rows = label_stats.label_stats(c.session, c.user_id, **c.ids)
    return [row.model_dump() for row in rows]


routes = [
    Route(ITEM + "/state", get_item_state, methods=["GET"]),
    Route(ITEM + "/state", put_item_state, methods=["PUT"]),
    Route(VERSION + "/states", page_endpoint(ItemStatePublic, states.list_states), methods=["GET"]),
    Route(VERSION + "/labels/splits/{split_id:uuid}", get_label_stats, methods=["GET"]),
]
