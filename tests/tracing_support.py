"""What the tracing tests share: a known trace, a command, and a pipeline calling a real 0trace client."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pydantic import SecretStr

from tests.ledger.helpers import command
from tests.support.partners import bound
from tests.support.settings import settings_of
from worker.ledger.base import Ledger
from worker.partners.zerotrace.client import ZeroTraceClient
from worker.pipeline import OrderPipeline
from worker.sealing import TokenSealer
from worker.transport import PartnerHttp

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
API_KEY = "CANARY-0trace-key"
SECRET = "CANARY-0trace-secret-7f3a9c"
KEY = [SecretStr("k1:" + base64.b64encode(b"k" * 32).decode())]


def kwargs(command_id: str) -> dict[str, Any]:
    result: dict[str, Any] = command(command_id).model_dump(mode="json", exclude_none=True)
    return result


@contextmanager
def stub_pipeline(ledger: Ledger, partner_url: str) -> Iterator[OrderPipeline]:
    """The pipeline with 0trace behind its real client (so every call goes through the transport)."""
    http = PartnerHttp(connect_timeout=2, read_timeout=2, pool_size=2)
    client = ZeroTraceClient(partner_url, API_KEY, SecretStr(SECRET), http)
    chosen = settings_of(token_keys=KEY)
    try:
        yield OrderPipeline(chosen, ledger, bound(chosen, client, client), TokenSealer.from_settings(KEY))
    finally:
        http.close()
