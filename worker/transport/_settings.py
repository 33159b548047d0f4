"""How one partner's calls travel: timeouts, pool, proxy, TLS material and the caps on an answer."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

DEFAULT_MAX_RESPONSE_BYTES = 4 * 1024 * 1024


class TransportSettings(BaseModel):
    """One partner's transport. Built from :meth:`worker.settings.Settings.transport` in the service;
    tests build it directly. Frozen: a client's connections were opened under these values."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    connect_timeout: float = Field(3.0, gt=0, description="Seconds to open a connection (and TLS).")
    read_timeout: float = Field(
        10.0, gt=0, description="Seconds from the request sent to the whole answer read, not per recv."
    )
    pool_size: int = Field(16, ge=1, description="Keep-alive connections kept per origin.")
    idle_expiry: float = Field(
        20.0,
        gt=0,
        description="A pooled connection idle longer than this is closed, not reused: a partner's own idle "
        "close racing our next request would turn an itrx create in-doubt for nothing.",
    )
    proxy_url: SecretStr | None = Field(
        None, description="http(s)://[user:password@]proxy:port for every call (it may hold a password)."
    )
    proxy_from_env: bool = Field(
        True, description="Without proxy_url, honour HTTPS_PROXY / HTTP_PROXY / NO_PROXY of the process."
    )
    ca_bundle: Path | None = Field(None, description="PEM file of the CAs trusted for the partner.")
    client_cert: Path | None = Field(None, description="PEM client certificate (mTLS).")
    client_key: Path | None = Field(None, description="PEM key of client_cert, when not in that file.")
    max_response_bytes: int = Field(
        DEFAULT_MAX_RESPONSE_BYTES, ge=1, description="Largest answer body, as received and as decoded."
    )
    max_header_bytes: int = Field(64 * 1024, ge=256, description="Largest answer header block.")
    max_header_count: int = Field(100, ge=1, le=100, description="Most answer header lines.")

    @model_validator(mode="after")
    def _key_needs_certificate(self) -> TransportSettings:
        if self.client_key is not None and self.client_cert is None:
            raise ValueError("client_key is set without client_cert")
        if self.proxy_url is not None and not self.proxy_url.get_secret_value().startswith(
            ("http://", "https://")
        ):
            raise ValueError("proxy_url must be an http:// or https:// URL")
        return self
