"""The 0trace asset catalog and pricing engine (fixed, plausible USD prices; adjustable via control).

Quote model (ours; the real formula is not published):
``rate = (usd_from / usd_to) * (1 - (baseFeeBps + markupBps) / 10000)``,
``direction=from``: ``to = from * rate - networkFee`` (rounded down to the destination precision);
``direction=to``: ``from = (to + networkFee) / rate`` (rounded up to the source precision).
The deposit must be worth ``min_usd..max_usd`` ($1..$5000 by default, the spec's per-pair defaults).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation
from typing import Any


@dataclass
class Asset:
    code: str
    coin: str
    network: str
    name: str
    precision: int
    usd: Decimal
    network_fee: Decimal
    """Payout network fee, in units of this asset (charged when it is the destination)."""
    enabled: bool = True
    send: bool = True

    def catalog_entry(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "coin": self.coin,
            "network": self.network,
            "name": self.name,
            "recv": True,
            "send": self.send,
            "tag": None,
            "logo": None,
            "color": None,
            "minAmount": None,
            "maxAmount": None,
            "precision": self.precision,
        }


def default_assets() -> dict[str, Asset]:
    d = Decimal
    assets = [
        Asset("btc", "BTC", "Bitcoin", "Bitcoin", 8, d("61600"), d("0.00002")),
        Asset("eth", "ETH", "Ethereum", "Ethereum", 8, d("3050"), d("0.0004")),
        Asset("ltc", "LTC", "Litecoin", "Litecoin", 8, d("82.40"), d("0.001")),
        Asset("trx", "TRX", "Tron", "TRON", 6, d("0.12"), d("1.1")),
        Asset("usdt_trc20", "USDT", "Tron", "Tether USD (TRC20)", 6, d("1"), d("1.20")),
        Asset("usdt_erc20", "USDT", "Ethereum", "Tether USD (ERC20)", 6, d("1"), d("3.50")),
    ]
    return {a.code: a for a in assets}


def quant(precision: int) -> Decimal:
    return Decimal(1).scaleb(-precision)


def fmt(value: Decimal, precision: int, rounding: str = ROUND_FLOOR) -> str:
    return f"{value.quantize(quant(precision), rounding=rounding):f}"


def parse_amount(value: object) -> Decimal | None:
    """A positive finite decimal from a JSON string or number; None for anything else (incl. bools)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        if not text or text != value or any(c not in "0123456789." for c in text) or text.count(".") > 1:
            return None
        if text.startswith(".") or text.endswith("."):
            return None
    elif isinstance(value, int | float):
        text = repr(value)
    else:
        return None
    try:
        amount = Decimal(text)
    except InvalidOperation:
        return None
    if not amount.is_finite() or amount <= 0:
        return None
    return amount


@dataclass
class Quote:
    src: Asset
    dst: Asset
    from_amount: Decimal
    to_amount: Decimal
    rate: Decimal
    markup_bps: int
    errors: list[str]

    @property
    def from_str(self) -> str:
        return fmt(self.from_amount, self.src.precision, ROUND_CEILING)

    @property
    def to_str(self) -> str:
        return fmt(self.to_amount, self.dst.precision)

    @property
    def rate_str(self) -> str:
        return fmt(self.rate, 8)

    @property
    def fee_str(self) -> str:
        fee = self.dst.network_fee
        return f"{fee.quantize(Decimal('0.01')) if fee >= 1 else fee.normalize():f}"


def quote(
    src: Asset,
    dst: Asset,
    direction: str,
    amount: Decimal,
    markup_bps: int,
    base_fee_bps: int,
    min_usd: Decimal,
    max_usd: Decimal,
) -> Quote:
    factor = 1 - Decimal(base_fee_bps + markup_bps) / Decimal(10000)
    rate = (src.usd / dst.usd * factor).quantize(quant(8), rounding=ROUND_FLOOR)
    if direction == "from":
        from_amount = amount.quantize(quant(src.precision), rounding=ROUND_FLOOR)
        to_amount = (from_amount * rate - dst.network_fee).quantize(
            quant(dst.precision), rounding=ROUND_FLOOR
        )
    else:
        to_amount = amount.quantize(quant(dst.precision), rounding=ROUND_FLOOR)
        from_amount = ((to_amount + dst.network_fee) / rate).quantize(
            quant(src.precision), rounding=ROUND_CEILING
        )
    errors: list[str] = []
    usd = from_amount * src.usd
    if usd < min_usd or to_amount <= 0:
        errors.append("AMOUNT_TOO_LOW")
    elif usd > max_usd:
        errors.append("AMOUNT_TOO_HIGH")
    return Quote(src, dst, from_amount, max(to_amount, Decimal(0)), rate, markup_bps, errors)


def side(asset: Asset, amount: Decimal, rate: str, min_usd: Decimal, max_usd: Decimal) -> dict[str, Any]:
    p = asset.precision
    return {
        "code": asset.code,
        "coin": asset.coin,
        "network": asset.network,
        "amount": fmt(amount, p, ROUND_CEILING if amount else ROUND_FLOOR),
        "rate": rate,
        "precision": p,
        "min": fmt(min_usd / asset.usd, p, ROUND_CEILING),
        "max": fmt(max_usd / asset.usd, p),
        "usd": fmt(amount * asset.usd, 2),
    }


def price_data(q: Quote, min_usd: Decimal, max_usd: Decimal) -> dict[str, Any]:
    src = side(q.src, q.from_amount, q.rate_str, min_usd, max_usd)
    src["btc"] = "0"
    dst = side(q.dst, q.to_amount, q.rate_str, min_usd, max_usd)
    dst["amount"] = q.to_str
    return {"from": src, "to": dst, "errors": q.errors, "markupBps": q.markup_bps}
