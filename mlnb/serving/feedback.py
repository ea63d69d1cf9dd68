"""Ground truth that arrives after a prediction: ``mlnb.log_feedback(request_id, label)``
and the service's ``POST /feedback`` both record it against the request id the service
returned (the ``x-request-id`` header of ``/invocations``, ``id`` of a V2 answer)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlnb.errors import PredictionInputError
from mlnb.serving.protocol import check_request_id
from mlnb.store.predictions import insert_feedback

if TYPE_CHECKING:
    from mlnb.store import Store
    from mlnb.tracking.active import StoreLike

__all__ = ["log_feedback"]


def log_feedback(request_id: str, label: Any, *, store: StoreLike | None = None) -> None:
    """Record the true outcome ``label`` (any JSON value: a class, a number) of the served
    request ``request_id``. A later label for the same request supersedes an earlier
    one; a request the log did not sample still gets its label (labels are counted too)."""
    from mlnb.tracking.active import resolve_store

    check_request_id(request_id)
    st = resolve_store(store, create=False)
    insert_feedback(st.file, request_id, label)


def check_feedback(payload: Any) -> list[tuple[str, Any]]:
    """The body of ``POST /feedback`` — ``{"request_id": ..., "label": ...}`` or a list of
    them — as ``(request id, label)`` pairs; a 400 naming the field otherwise."""
    items = payload if isinstance(payload, list) else [payload]
    out = []
    for i, item in enumerate(items):
        where = f"[{i}]" if isinstance(payload, list) else ""
        if not isinstance(item, dict) or "request_id" not in item or "label" not in item:
            raise PredictionInputError(
                'feedback is {"request_id": "...", "label": ...} (or a list of them)',
                field=f"{where}request_id" if isinstance(item, dict) else where or "body",
            )
        check_request_id(item["request_id"], field=f"{where}request_id")
        out.append((item["request_id"], item["label"]))
    return out


def record_feedback(store: Store, items: list[tuple[str, Any]]) -> None:
    for request_id, label in items:
        insert_feedback(store.file, request_id, label)
