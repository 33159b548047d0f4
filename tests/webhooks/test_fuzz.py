"""Property-based fuzzing of both push endpoints: thousands of adversarial requests, no 5xx, no stray event.

Every request is one of a closed set of *kinds* (valid, forged signature, stale, malformed body, ...). A
kind fixes what the answer must be:

* ``valid``: 200 ``accepted`` with exactly one new event, and its exact replay 200 ``duplicate`` with none;
* ``recorded``: verified but nothing to apply (unknown order, other event type): 202 (0trace) or 200
  (itrx, which counts only 200 as delivered), with a ``result`` other than accepted, and no event;
* everything else: 4xx, no event, and (itrx) no re-query of the partner.

Invalid requests carry bodies aimed at known open orders, so a request wrongly accepted would show up as
an event. Hypothesis drives the choices; the ledger, the pipeline and the itrx stub are real and shared by
all examples of one run (state only grows: each valid example seeds its own order).
"""

from __future__ import annotations

import json
import math
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.webhooks.helpers import (
    CANARY_ITRX_PREVIOUS,
    CANARY_ITRX_SECRET,
    CANARY_ZT_WEBHOOK_NEW,
    CANARY_ZT_WEBHOOK_OLD,
    T0,
    Seeded,
    World,
    build_world,
    itrx_callback_payload,
    itrx_headers,
    itrx_signed,
    zt_body,
    zt_dto,
    zt_headers,
)
from worker.partners.itrx.signing import itrx_sign
from worker.partners.zerotrace.signing import sign_body
from worker.webhooks.receiver import PushResult

MAX_BODY = 16384
ZT_EXAMPLES = 1700
ITRX_EXAMPLES = 1500
CONFIGURED = {CANARY_ZT_WEBHOOK_NEW, CANARY_ZT_WEBHOOK_OLD, CANARY_ITRX_SECRET, CANARY_ITRX_PREVIOUS}
HEX = "0123456789abcdef"
T = TypeVar("T")

FUZZ = settings(
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    print_blob=True,
)

# --- strategies ---------------------------------------
json_scalars = st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.floats() | st.text(max_size=12)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=8,
)
hostile_numbers = st.one_of(
    st.integers(min_value=10**308, max_value=10**1200),
    st.integers(min_value=-(10**1200), max_value=-(10**308)),
    st.floats(),  # includes nan / inf / -inf, which json.dumps writes as NaN / Infinity
    st.sampled_from([2**63, -(2**63) - 1, 1e308, -1e308, 5e-324]),
)
hostile_values = st.one_of(hostile_numbers, json_values, st.text(max_size=40))
hostile_times = st.one_of(
    st.sampled_from(
        [
            "0001-01-01T00:00:00+01:00",
            "0001-01-01T00:00:00+14:00",
            "9999-12-31T23:59:59-01:00",
            "9999-12-31T23:59:59-12:00",
            "2024-02-30T00:00:00Z",
            "2024-03-01T16:00:01",
            "",
        ]
    ),
    st.text(max_size=30),
    hostile_numbers,
)


def _float_ts(text: str) -> float | None:
    try:
        value = float(text)
    except (ValueError, OverflowError):
        return None
    return value if math.isfinite(value) else None


non_numeric_ts = st.one_of(
    st.sampled_from(
        ["", " ", "nan", "NaN", "inf", "-inf", "Infinity", "1e999", "0x6543", "12:00", "1,7e9", "now"]
    ),
    st.text(max_size=16).filter(lambda s: _float_ts(s) is None),
)


def _hexsig(data: st.DataObject) -> str:
    return data.draw(st.text(alphabet=HEX, min_size=64, max_size=64), label="random signature")


def _flip(signature: str, data: st.DataObject) -> str:
    pos = data.draw(st.integers(0, len(signature) - 1), label="flip position")
    other = data.draw(st.sampled_from([c for c in HEX if c != signature[pos].lower()]), label="flip to")
    return signature[:pos] + other + signature[pos + 1 :]


def _pick(data: st.DataObject, label: str, variants: dict[str, Any]) -> Any:
    """Draw a variant by name, so a failing example reports the name rather than kilobytes of body."""
    return variants[data.draw(st.sampled_from(sorted(variants)), label=label)]


def _earlier(pushes: list[T], data: st.DataObject) -> T:
    """One of the pushes sent so far. The draw's shape must not depend on how many there are: Hypothesis
    replays choice sequences, so strategy constraints must never follow external state."""
    return pushes[data.draw(st.integers(0, 2**16), label="earlier") % len(pushes)]


def _case(signature: str, data: st.DataObject) -> str:
    style = data.draw(st.sampled_from(["lower", "upper", "mixed"]), label="hex case")
    if style == "upper":
        return signature.upper()
    if style == "mixed":
        mask = data.draw(st.lists(st.booleans(), min_size=64, max_size=64), label="case mask")
        return "".join(c.upper() if up else c for c, up in zip(signature, mask, strict=True))
    return signature


# --- bookkeeping ---------------------------------------


@dataclass
class Tally:
    requests: int = 0
    by_class: Counter[str] = field(default_factory=Counter)
    by_kind: Counter[str] = field(default_factory=Counter)
    results: Counter[str] = field(default_factory=Counter)
    events: int = 0
    valid: int = 0
    invalid_events: int = 0

    def count(self, kind: str, result: PushResult) -> None:
        self.requests += 1
        self.by_kind[kind] += 1
        self.results[result.result] += 1
        self.by_class[f"{result.status // 100}xx"] += 1

    def merged(self, other: Tally) -> Tally:
        out = Tally()
        for t in (self, other):
            out.requests += t.requests
            out.by_class.update(t.by_class)
            out.by_kind.update(t.by_kind)
            out.results.update(t.results)
            out.events += t.events
            out.valid += t.valid
            out.invalid_events += t.invalid_events
        return out

    def line(self, **extra: Any) -> str:
        return json.dumps(
            {
                "requests": self.requests,
                "2xx": self.by_class["2xx"],
                "4xx": self.by_class["4xx"],
                "5xx": self.by_class["5xx"],
                "events": self.events,
                "valid_accepted": self.valid,
                "events_from_invalid": self.invalid_events,
                "kinds": len(self.by_kind),
                "results": dict(sorted(self.results.items())),
                **extra,
            },
            sort_keys=False,
        )


class Fuzzer:
    def __init__(self, world: World) -> None:
        self.w = world
        self.zt = Tally()
        self.itrx = Tally()
        self.zt_targets = [world.seed_zerotrace() for _ in range(6)]
        self.itrx_targets = [world.seed_itrx() for _ in range(6)]
        for seeded in self.itrx_targets:
            assert seeded.order_id is not None
            world.stub.set_order(seeded.order_id, 40)  # a wrongly accepted callback would complete it
        self.zt_replayable: list[tuple[bytes, str]] = []
        self.itrx_replayable: list[tuple[bytes, dict[str, list[str]]]] = []
        self._first_valid_pushes()

    def _first_valid_pushes(self) -> None:
        """One accepted push per provider before fuzzing, so replay kinds always have something to replay."""
        seeded = self.w.seed_zerotrace()
        assert seeded.order_id is not None
        raw = zt_body(zt_dto(seeded.order_id, "PENDING", T0 + 1))
        signature = sign_body(raw, CANARY_ZT_WEBHOOK_NEW)
        self.send("0trace", "valid", raw, zt_headers(raw, "", self.w.clock(), sign=signature), "valid")
        self.zt_replayable.append((raw, signature))
        seeded = self.w.seed_itrx()
        assert seeded.order_id is not None
        self.w.stub.set_order(seeded.order_id, 40)
        payload = itrx_callback_payload(seeded.order_id, seeded.partner_ref, 40)
        raw, headers = itrx_signed(payload, CANARY_ITRX_SECRET, int(self.w.clock()))
        self.send("itrx", "valid", raw, headers, "valid")
        self.itrx_replayable.append((raw, headers))

    # --- sending and judging -------------------------------
    def send(
        self, provider: str, kind: str, raw: bytes, headers: dict[str, list[str]], expect: str
    ) -> PushResult:
        tally = self.zt if provider == "0trace" else self.itrx
        before = self.w.outbox_count()
        queries = len(self.w.stub.requests)
        raised = len(self.w.exceptions)
        result = self.w.call(provider, raw, headers)
        tally.count(kind, result)
        delta = self.w.outbox_count() - before
        tally.events += delta
        where = f"{provider}/{kind}: expected {expect}, got {result.status} {result.result} (+{delta} events)"
        assert len(self.w.exceptions) == raised, f"{where}: raised {self.w.exceptions[-1]!r}"
        if expect == "valid":
            assert (result.status, result.result, delta) == (200, "accepted", 1), where
            tally.valid += 1
        elif expect == "duplicate":
            assert (result.status, result.result, delta) == (200, "duplicate", 0), where
        elif expect == "recorded":
            recorded = result.status == 202 or (
                result.status == 200 and result.result not in ("accepted", "duplicate")
            )
            assert (recorded or 400 <= result.status < 500) and delta == 0, where
        else:
            tally.invalid_events += delta
            assert 400 <= result.status < 500 and delta == 0, where
            assert len(self.w.stub.requests) == queries, f"{where}: re-queried itrx on an unverified callback"
        return result

    # --- 0trace -------------------------------
    def zt_target_body(self, data: st.DataObject) -> bytes:
        target: Seeded = data.draw(st.sampled_from(self.zt_targets), label="target")
        assert target.order_id is not None
        return zt_body(zt_dto(target.order_id, "PENDING", T0 + 100))

    def zerotrace(self, kind: str, data: st.DataObject) -> None:
        now = self.w.clock()
        ts = str(int(now))
        secret = data.draw(st.sampled_from([CANARY_ZT_WEBHOOK_NEW, CANARY_ZT_WEBHOOK_OLD]), label="secret")
        send = self.send

        if kind == "valid":
            seeded = self.w.seed_zerotrace()
            assert seeded.order_id is not None
            status = data.draw(st.sampled_from(["PENDING", "EXCHANGE", "EMERGENCY", "DONE", "EXPIRED"]))
            update = T0 + data.draw(st.integers(1, 10**6), label="update delta")
            raw = zt_body(zt_dto(seeded.order_id, status, update))
            signature = _case(sign_body(raw, secret), data)
            offset = data.draw(st.integers(-60, 300), label="age")
            send(
                "0trace", kind, raw, zt_headers(raw, secret, str(int(now) - offset), sign=signature), "valid"
            )
            replay_age = data.draw(st.integers(-60, 300), label="replay age")
            other = data.draw(st.sampled_from([CANARY_ZT_WEBHOOK_NEW, CANARY_ZT_WEBHOOK_OLD]))
            replay = zt_headers(raw, other, str(int(now) - replay_age))
            send("0trace", "replay", raw, replay, "duplicate")
            self.zt_replayable.append((raw, signature))
            return

        raw = self.zt_target_body(data)
        good = sign_body(raw, secret)
        headers = zt_headers(raw, secret, ts)
        sign_key, ts_key = "x-partner-webhook-sign", "x-partner-webhook-timestamp"
        expect = "invalid"

        if kind == "bad_signature":
            headers[sign_key] = [_hexsig(data)]
        elif kind == "truncated_signature":
            cut = data.draw(st.integers(0, 63), label="cut")
            extra = data.draw(st.text(alphabet=HEX, min_size=1, max_size=8), label="extra")
            headers[sign_key] = [
                _pick(data, "cut", {"prefix": good[:cut], "longer": good + extra, "shifted": good[1:] + "0"})
            ]
        elif kind == "flipped_signature":
            headers[sign_key] = [_case(_flip(good, data), data)]
        elif kind == "garbage_signature":
            headers[sign_key] = [data.draw(st.text(max_size=80), label="garbage")]
        elif kind == "wrong_secret":
            other = data.draw(st.text(min_size=1, max_size=48).filter(lambda s: s not in CONFIGURED))
            headers[sign_key] = [_case(sign_body(raw, other), data)]
        elif kind == "stale":
            age = data.draw(st.one_of(st.integers(301, 10**9), st.floats(300.001, 1e9)), label="age")
            headers[ts_key] = [str(int(now) - age) if isinstance(age, int) else repr(now - age)]
        elif kind == "future":
            ahead = data.draw(st.one_of(st.integers(61, 10**9), st.floats(60.001, 1e9)), label="ahead")
            headers[ts_key] = [str(int(now) + ahead) if isinstance(ahead, int) else repr(now + ahead)]
        elif kind == "non_numeric_timestamp":
            headers[ts_key] = [data.draw(non_numeric_ts, label="timestamp")]
        elif kind == "missing_header":
            for key in data.draw(st.sampled_from([[sign_key], [ts_key], [sign_key, ts_key]])):
                if data.draw(st.booleans(), label="drop key or empty list"):
                    del headers[key]
                else:
                    headers[key] = []
        elif kind == "duplicated_header":
            key = data.draw(st.sampled_from([sign_key, ts_key]))
            second = data.draw(st.sampled_from([headers[key][0], good, _hexsig(data), ts]))
            headers[key] = [headers[key][0], second]
        elif kind == "non_utf8":
            raw = _pick(
                data,
                "non-utf8",
                {
                    "inside-string": raw.replace(b'"PENDING"', b'"PEND\xffING"'),
                    "bom-like-prefix": b"\xff\xfe" + raw,
                    "truncated-sequence": raw[:-1] + b"\xc3",
                },
            )
            headers = zt_headers(raw, secret, ts)
        elif kind == "non_json":
            raw = b"<" + data.draw(st.binary(max_size=200), label="junk")
            headers = zt_headers(raw, secret, ts)
        elif kind == "json_non_object":
            value = data.draw(json_values.filter(lambda v: not isinstance(v, dict)), label="value")
            raw = json.dumps(value).encode()
            headers = zt_headers(raw, secret, ts)
        elif kind == "oversized":
            pad = data.draw(st.integers(1, 3 * MAX_BODY), label="excess")
            raw = raw[:-1] + b',"pad":"' + b"x" * (MAX_BODY - len(raw) + pad) + b'"}'
            headers = zt_headers(raw, secret, ts)
        elif kind == "random_bytes":
            raw = data.draw(st.binary(max_size=MAX_BODY), label="body")  # shrinks small when failing
            headers[sign_key] = [data.draw(st.one_of(st.text(max_size=70), st.just(_hexsig(data))))]
        elif kind == "bad_dto":
            raw = json.dumps(self._bad_dto_body(data)).encode()
            headers = zt_headers(raw, secret, ts)
        elif kind == "deep_nesting":
            depth = data.draw(st.integers(1000, 8000), label="depth")
            inner = _pick(
                data,
                "nest",
                {"arrays": b"[" * depth + b"]" * depth, "objects": b'{"a":' * depth + b"1" + b"}" * depth},
            )
            raw = _pick(
                data,
                "where",
                {"top": inner, "order": b'{"event":"order.status_changed","order":' + inner + b"}"},
            )
            headers = zt_headers(raw, secret, ts)
            expect = "recorded"  # signed: 400 (not an order), or 202 for an object that merely lacks "event"
        elif kind == "tampered":
            raw = _pick(
                data,
                "tamper",
                {
                    "status": raw.replace(b'"PENDING"', b'"EXCHANGE"'),
                    "trailing-newline": raw + b"\n",
                    "leading-space": b" " + raw,
                    "reformatted": raw.replace(b":", b": "),
                },
            )
        elif kind == "replay_stale":
            raw, signature = _earlier(self.zt_replayable, data)
            age = data.draw(st.integers(301, 10**7), label="age")
            headers = zt_headers(raw, secret, str(int(now) - age), sign=signature)
        elif kind == "other_event":
            event = data.draw(
                st.one_of(
                    st.sampled_from(["partner.paid_out", "earnings.cleared"]), st.text(max_size=30)
                ).filter(lambda e: e != "order.status_changed")
            )
            raw = json.dumps(
                {"event": event, "payout": {"paidOutAt": 1}, "ts": data.draw(json_values)}
            ).encode()
            headers = zt_headers(raw, secret, ts)
            expect = "recorded"
        elif kind == "hostile_dto":
            raw = json.dumps(
                {"event": "order.status_changed", "order": self._hostile_dto(data), "ts": 1}
            ).encode()
            headers = zt_headers(raw, secret, ts)
            expect = "recorded"
        else:
            raise AssertionError(kind)
        self.send("0trace", kind, raw, headers, expect)
        return None

    @staticmethod
    def _bad_dto_body(data: st.DataObject) -> dict[str, Any]:
        dto = zt_dto(str(uuid.uuid4()), "PENDING", T0)
        variant = data.draw(
            st.sampled_from(["no_order", "order_not_object", "no_id", "no_status", "bad_id", "bad_status"])
        )
        if variant == "no_order":
            return {"event": "order.status_changed", "ts": 1}
        if variant == "order_not_object":
            return {
                "event": "order.status_changed",
                "order": data.draw(json_values.filter(lambda v: not isinstance(v, dict))),
            }
        if variant in ("no_id", "no_status"):
            del dto["id" if variant == "no_id" else "status"]
        else:
            bad = data.draw(st.one_of(json_values.filter(lambda v: not isinstance(v, str)), st.just("")))
            dto["id" if variant == "bad_id" else "status"] = bad
        return {"event": "order.status_changed", "order": dto, "ts": 1}

    @staticmethod
    def _hostile_dto(data: st.DataObject) -> dict[str, Any]:
        """A DTO for an order nobody knows, id and status fine, some other field hostile."""
        dto = zt_dto(str(uuid.uuid4()), data.draw(st.sampled_from(["PENDING", "DONE", "MYSTERY"])), T0)
        for _ in range(data.draw(st.integers(1, 3))):
            where = data.draw(
                st.sampled_from(
                    [
                        "time.update",
                        "time.reg",
                        "time.expiration",
                        "time.finish",
                        "time.left",
                        "time",
                        "markupBps",
                        "rate",
                        "networkFee",
                        "from",
                        "from.amount",
                        "from.tx",
                        "to.tx",
                        "back",
                        "emergency",
                        "emergency.status",
                        "type",
                    ]
                ),
                label="field",
            )
            value = data.draw(hostile_values, label="value")
            outer, _, inner = where.partition(".")
            if inner and isinstance(dto.get(outer), dict):
                dto[outer][inner] = value
            else:
                dto[outer] = value
        return dto

    # --- itrx -------------------------------
    def itrx_target(self, data: st.DataObject) -> tuple[bytes, str, Seeded, dict[str, Any]]:
        target: Seeded = data.draw(st.sampled_from(self.itrx_targets), label="target")
        payload = itrx_callback_payload(target.order_id, target.partner_ref, 40)
        raw, headers = itrx_signed(payload, CANARY_ITRX_SECRET, int(self.w.clock()))
        return raw, headers["signature"][0], target, payload

    def itrx_call(self, kind: str, data: st.DataObject) -> None:
        now = self.w.clock()
        ts = str(int(now))
        secret = data.draw(st.sampled_from([CANARY_ITRX_SECRET, CANARY_ITRX_PREVIOUS]), label="secret")

        def signed(raw: bytes, at: str = ts) -> dict[str, list[str]]:
            return itrx_headers(at, itrx_sign(secret, at, raw))

        if kind == "valid":
            seeded = self.w.seed_itrx()
            assert seeded.order_id is not None
            partner_status = data.draw(st.sampled_from([0, 40, 41, 43]), label="partner status")
            self.w.stub.set_order(seeded.order_id, partner_status)
            ids = data.draw(st.sampled_from(["both", "serial", "out_trade_no"]), label="identifiers")
            claimed = data.draw(st.sampled_from([0, 10, 20, 30, 40, 41, 43, 99]), label="claimed status")
            payload = itrx_callback_payload(
                seeded.order_id if ids != "out_trade_no" else None,
                seeded.partner_ref if ids != "serial" else None,
                claimed,
            )
            form = data.draw(
                st.sampled_from(["compact", "python_default", "python_default_raw"]), label="form"
            )
            age = data.draw(st.integers(-60, 300), label="age")
            raw, headers = itrx_signed(payload, secret, int(now) - age, form=form)
            headers["signature"] = [_case(headers["signature"][0], data)]
            self.send("itrx", kind, raw, headers, "valid")
            self.send("itrx", "replay", raw, headers, "duplicate")
            assert len(self.w.stub.queries_for(seeded.order_id)) == 1
            record = self.w.ledger.get(seeded.command_id)
            assert record is not None and record.provider_status == str(partner_status)
            self.itrx_replayable.append((raw, headers))
            return

        raw, good, _target, payload = self.itrx_target(data)
        headers = signed(raw)
        good = headers["signature"][0]
        expect = "invalid"

        if kind == "bad_signature":
            headers["signature"] = [_hexsig(data)]
        elif kind == "truncated_signature":
            cut = data.draw(st.integers(0, 63), label="cut")
            headers["signature"] = [
                _pick(data, "cut", {"prefix": good[:cut], "longer": good + "0", "shifted": good[1:] + "0"})
            ]
        elif kind == "flipped_signature":
            headers["signature"] = [_case(_flip(good, data), data)]
        elif kind == "garbage_signature":
            headers["signature"] = [data.draw(st.text(max_size=80), label="garbage")]
        elif kind == "wrong_secret":
            other = data.draw(st.text(min_size=1, max_size=48).filter(lambda s: s not in CONFIGURED))
            headers["signature"] = [itrx_sign(other, ts, raw)]
        elif kind == "stale":
            age = data.draw(st.integers(301, 10**9), label="age")
            headers = signed(raw, str(int(now) - age))  # correctly signed, just too old
        elif kind == "future":
            ahead = data.draw(st.integers(61, 10**9), label="ahead")
            headers = signed(raw, str(int(now) + ahead))
        elif kind == "non_numeric_timestamp":
            bad = data.draw(non_numeric_ts, label="timestamp")
            headers = itrx_headers(bad, itrx_sign(secret, bad, raw) if bad.isascii() else good)
        elif kind == "timestamp_not_signed":
            other_ts = str(
                int(now) - data.draw(st.integers(-60, 300).filter(lambda a: a != 0), label="shift")
            )
            headers["timestamp"] = [other_ts]  # signature covers ts; a fresh header with an old signature
        elif kind == "missing_header":
            for key in data.draw(st.sampled_from([["signature"], ["timestamp"], ["signature", "timestamp"]])):
                if data.draw(st.booleans()):
                    del headers[key]
                else:
                    headers[key] = []
        elif kind == "duplicated_header":
            key = data.draw(st.sampled_from(["signature", "timestamp"]))
            headers[key] = [headers[key][0], data.draw(st.sampled_from([headers[key][0], _hexsig(data), ts]))]
        elif kind == "non_utf8":
            raw = _pick(
                data,
                "non-utf8",
                {"in-key": raw.replace(b'"out_trade_no"', b'"out_\xfftrade_no"'), "prefix": b"\xff" + raw},
            )
            headers = signed(raw)
        elif kind == "non_json":
            raw = b"<" + data.draw(st.binary(max_size=200), label="junk")
            headers = signed(raw)
        elif kind == "json_non_object":
            raw = json.dumps(data.draw(json_values.filter(lambda v: not isinstance(v, dict)))).encode()
            headers = signed(raw)
        elif kind == "oversized":
            pad = data.draw(st.integers(1, 3 * MAX_BODY), label="excess")
            raw = raw[:-1] + b',"pad":"' + b"x" * (MAX_BODY - len(raw) + pad) + b'"}'
            headers = signed(raw)
        elif kind == "random_bytes":
            raw = data.draw(st.binary(max_size=MAX_BODY), label="body")
            headers["signature"] = [data.draw(st.one_of(st.text(max_size=70), st.just(_hexsig(data))))]
        elif kind == "deep_nesting":
            depth = data.draw(st.integers(1000, 8000), label="depth")
            raw = _pick(
                data,
                "nest",
                {"arrays": b"[" * depth + b"]" * depth, "objects": b'{"a":' * depth + b"1" + b"}" * depth},
            )
            forged = data.draw(st.booleans(), label="forged")  # forged: anyone can send this
            headers = itrx_headers(ts, _hexsig(data)) if forged else signed(raw)
            expect = "invalid" if forged else "recorded"  # signed: 400, or 202 unknown_order for an object
        elif kind == "tampered":
            raw = _pick(
                data,
                "tamper",
                {
                    "status": raw.replace(b'"status":40', b'"status":41'),
                    "out_trade_no": raw.replace(b'"out_trade_no":"', b'"out_trade_no":"x'),
                    "in-array": b"[" + raw + b"]",
                    "wrapped": b'{"wrapped":' + raw + b"}",
                },
            )
        elif kind == "replay_stale":
            raw, headers = _earlier(self.itrx_replayable, data)
            sent_at = int(headers["timestamp"][0])
            later = data.draw(st.integers(301, 10**6), label="later")
            self.w.clock.now = sent_at + later  # itrx re-sends the same (TIMESTAMP, SIGNATURE) much later
            try:
                self.send("itrx", kind, raw, headers, "invalid")
            finally:
                self.w.clock.now = now
            return None
        elif kind == "unknown_order":
            unknown = itrx_callback_payload(uuid.uuid4().hex, f"x-{uuid.uuid4().hex[:12]}", 40)
            ids = data.draw(st.sampled_from(["both", "serial", "out_trade_no", "none"]))
            for key in {"serial": ["out_trade_no"], "out_trade_no": ["serial", "order_no"]}.get(ids, []):
                unknown.pop(key, None)
            if ids == "none":
                unknown = {
                    k: v for k, v in unknown.items() if k not in ("serial", "order_no", "out_trade_no")
                }
            raw, headers = itrx_signed(unknown, secret, ts)
            expect = "recorded"
        elif kind == "hostile_values":
            hostile = {**payload, "serial": uuid.uuid4().hex, "order_no": None, "out_trade_no": "x-hostile"}
            for _ in range(data.draw(st.integers(1, 3))):
                name = data.draw(
                    st.sampled_from(
                        [
                            "status",
                            "create_time",
                            "details",
                            "period",
                            "amount",
                            "energy_amount",
                            "pay_amount",
                            "refund_amount",
                            "receive_address",
                        ]
                    ),
                    label="field",
                )
                if name == "create_time":
                    hostile[name] = data.draw(hostile_times)
                elif name == "details":
                    hostile[name] = [
                        {"delegate_time": data.draw(hostile_times), "status": data.draw(hostile_values)}
                    ]
                elif name == "status":
                    hostile[name] = data.draw(
                        st.one_of(hostile_values, st.integers(4301, 6000).map(lambda n: "4" * n))
                    )
                else:
                    hostile[name] = data.draw(hostile_values)
            raw = json.dumps(hostile, sort_keys=True, separators=(",", ":")).encode()
            if len(raw) > MAX_BODY:
                return None
            headers = signed(raw)
            expect = "recorded"
        else:
            raise AssertionError(kind)
        self.send("itrx", kind, raw, headers, expect)
        return None


ZT_KINDS = [
    "valid", "valid", "valid", "bad_signature", "truncated_signature", "flipped_signature",
    "garbage_signature", "wrong_secret", "stale", "future", "non_numeric_timestamp", "missing_header",
    "duplicated_header", "non_utf8", "non_json", "json_non_object", "oversized", "random_bytes", "bad_dto",
    "deep_nesting", "tampered", "replay_stale", "other_event", "hostile_dto",
]  # fmt: skip
ITRX_KINDS = [
    "valid", "valid", "valid", "bad_signature", "truncated_signature", "flipped_signature",
    "garbage_signature", "wrong_secret", "stale", "future", "non_numeric_timestamp", "timestamp_not_signed",
    "missing_header", "duplicated_header", "non_utf8", "non_json", "json_non_object", "oversized",
    "random_bytes", "deep_nesting", "tampered", "replay_stale", "unknown_order", "hostile_values",
]  # fmt: skip


@pytest.fixture(scope="module")
def fuzz_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    built = build_world(Path(tmp_path_factory.mktemp("fuzz")), webhook_max_body=MAX_BODY)
    yield built
    built.close()


def test_fuzz_adversarial_pushes(fuzz_world: World, capsys: pytest.CaptureFixture[str]) -> None:
    fuzzer = Fuzzer(fuzz_world)

    @settings(FUZZ, max_examples=ZT_EXAMPLES)
    @given(kind=st.sampled_from(ZT_KINDS), data=st.data())
    def zerotrace(kind: str, data: st.DataObject) -> None:
        fuzzer.zerotrace(kind, data)

    @settings(FUZZ, max_examples=ITRX_EXAMPLES)
    @given(kind=st.sampled_from(ITRX_KINDS), data=st.data())
    def itrx(kind: str, data: st.DataObject) -> None:
        fuzzer.itrx_call(kind, data)

    failures: list[BaseException] = []
    for run in (zerotrace, itrx):
        try:
            run()
        except BaseException as error:
            failures.append(error)
    total = fuzzer.zt.merged(fuzzer.itrx)
    with capsys.disabled():
        print()
        print(total.line(zerotrace=fuzzer.zt.requests, itrx=fuzzer.itrx.requests, failed=len(failures)))
    if failures:
        raise failures[0]

    # every valid push produced exactly one status_changed event on its own order, nothing else did
    changed = fuzz_world.events(event_type="status_changed")
    assert len(changed) == total.valid == total.events
    assert len({e["command_id"] for e in changed}) == len(changed)
    assert len({e["event_id"] for e in fuzz_world.events()}) == fuzz_world.outbox_count()
    assert total.by_class["5xx"] == 0 and total.invalid_events == 0
    assert total.requests >= 3000, total.line()
    for seeded in fuzzer.zt_targets + fuzzer.itrx_targets:  # targets of invalid pushes never moved
        record = fuzz_world.ledger.get(seeded.command_id)
        assert record is not None and record.status in ("awaiting_deposit", "processing")
        assert record.event_seq == 1
