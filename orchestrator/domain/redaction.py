"""The tenant's columns that hold a caller's words are redacted as they are set, whatever code writes them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import InstrumentedAttribute

from orchestrator.domain.models import AppointmentRow, DisputeRow, InvoiceLineRow, RefundRow, TicketRow
from orchestrator.redact import redact_text

# Free text built from what a caller said: an escalation's summary, a refund's or dispute's reason (and the
# credit line a refund adds), a visit's reason. Ids, amounts and dates in them survive `redact_text`.
CALLER_TEXT: tuple[InstrumentedAttribute[str], ...] = (
    TicketRow.summary,
    RefundRow.reason,
    DisputeRow.reason,
    InvoiceLineRow.description,
    AppointmentRow.reason,
)


def _redacted(_target: object, value: Any, _old: object, _initiator: object) -> Any:
    # No dialogue here to tell a ZIP answer from another number: five digits on their own are taken as a ZIP.
    return redact_text(value, zip_expected=True) if isinstance(value, str) else value


for _column in CALLER_TEXT:
    # retval: the listener's return value is what the row holds; rows loaded from the database are not "set".
    event.listen(_column, "set", _redacted, retval=True)
