"""The documented client recipes, run as real subprocesses against the sandbox.

0trace: the docs' shell pipeline (``printf | openssl dgst | sed`` + curl). itrx: the docs' Python snippet
shape (``requests.post(url, data=json_data, headers=headers)``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from order_worker_sandbox.config import (
    SANDBOX_ITRX_API_KEY,
    SANDBOX_ITRX_API_SECRET,
    SANDBOX_ZEROTRACE_API_KEY,
    SANDBOX_ZEROTRACE_API_SECRET,
)
from order_worker_sandbox.testing import RunningSandbox

QUICKSTART = r"""
set -eu
call() {  # call PATH BODY [SENT_BODY] [EXTRA_HEADER]
  SIGN=$(printf '%s' "$2" | openssl dgst -sha256 -hmac "$APISECRET" | sed 's/^.* //')
  curl -sS -X POST "$URL$1" \
    -H "Content-Type: application/json" \
    -H "X-API-KEY: $APIKEY" \
    -H "X-API-SIGN: $SIGN" \
    -H "X-API-NONCE: $(openssl rand -hex 16)" \
    ${4:+-H "$4"} \
    --data-binary "${3:-$2}"
  echo
}
PRICE='{"type":"float","fromCcy":"btc","toCcy":"usdt_trc20","direction":"from","amount":"0.01"}'
CREATE='{"type":"float","fromCcy":"btc","toCcy":"usdt_trc20","direction":"from","amount":"0.01","toAddress":"TXyzExampleRecipientAddress0001","refundAddress":"bc1qexamplerefundaddress0000001"}'
call /api/v1/price "$PRICE"
call /api/v1/create "$CREATE" "" "Idempotency-Key: quickstart-0001"
# one byte changed after signing ("0.01" -> "0.02")
call /api/v1/price "$PRICE" "$(printf '%s' "$PRICE" | sed 's/0.01/0.02/')"
CHANGED=$(printf '%s' "$CREATE" | sed 's/0.01/0.02/')
call /api/v1/create "$CREATE" "$CHANGED" "Idempotency-Key: quickstart-0002"
# the echo mistake: a signature over BODY + newline, while printf-exact bytes are sent
SIGN=$(echo "$PRICE" | openssl dgst -sha256 -hmac "$APISECRET" | sed 's/^.* //')
curl -sS -X POST "$URL/api/v1/price" -H "Content-Type: application/json" -H "X-API-KEY: $APIKEY" \
  -H "X-API-SIGN: $SIGN" -H "X-API-NONCE: $(openssl rand -hex 16)" --data-binary "$PRICE"
echo
"""


def test_zerotrace_quickstart_with_openssl_and_curl(sb: RunningSandbox) -> None:
    env = {
        **os.environ,
        "URL": sb.base_url,
        "APIKEY": SANDBOX_ZEROTRACE_API_KEY,
        "APISECRET": SANDBOX_ZEROTRACE_API_SECRET,
    }
    out = subprocess.run(
        ["bash", "-c", QUICKSTART], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    price, create, price_changed, create_changed, echo_mistake = (
        json.loads(line) for line in out.stdout.splitlines()
    )
    assert price["code"] == 0 and price["data"]["from"]["amount"] == "0.01000000"
    assert create["code"] == 0 and create["data"]["status"] == "NEW" and len(create["data"]["token"]) == 43
    assert price_changed == {"code": 3, "msg": "AUTH_INVALID"}, "a one-byte body change must fail"
    assert create_changed == {"code": 3, "msg": "AUTH_INVALID"}
    assert echo_mistake == {"code": 3, "msg": "AUTH_INVALID"}, "TV11: echo adds a newline"
    assert [o["idempotency_key"] for o in sb.control.orders()] == ["quickstart-0001"]


ITRX_SNIPPET = textwrap.dedent(
    """
    import hashlib
    import hmac
    import json
    import os
    import time

    import requests

    API_KEY = os.environ["API_KEY"]
    API_SECRET = os.environ["API_SECRET"]
    URL = os.environ["URL"] + "/api/v1/frontend/order"

    timestamp = str(int(time.time()))
    data = {
        "energy_amount": 32000,
        "period": "1H",
        "receive_address": "TExWKszFWYTKZH8LYiovAPKzS3L9MLZ4kw",
        "callback_url": "http://127.0.0.1:9/callback",
        "out_trade_no": "123456",
    }
    json_data = json.dumps(data, sort_keys=True, separators=(",", ":"))
    message = f"{timestamp}&{json_data}"
    signature = hmac.new(API_SECRET.encode(), message.encode(), hashlib.sha256).hexdigest()
    headers = {
        "API-KEY": API_KEY,
        "TIMESTAMP": timestamp,
        "SIGNATURE": signature,
        "Content-Type": "application/json",
    }
    response = requests.post(URL, data=json_data, headers=headers)
    print(response.text)
    """
)


def test_itrx_documented_python_snippet(sb: RunningSandbox) -> None:
    env = {
        **os.environ,
        "URL": sb.base_url,
        "API_KEY": SANDBOX_ITRX_API_KEY,
        "API_SECRET": SANDBOX_ITRX_API_SECRET,
    }
    out = subprocess.run(
        [sys.executable, "-c", ITRX_SNIPPET], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    answer = json.loads(out.stdout)
    assert answer["errno"] == 0 and answer["serial"] and answer["amount"] > 0
    assert [o["out_trade_no"] for o in sb.control.orders("itrx")] == ["123456"]
