"""Several broker URLs in ``ORDER_WORKER_BROKER_URL``: how they are split, checked, shown and handed to
pika and Dramatiq, and that no password of any of them is ever echoed."""

from __future__ import annotations

import dramatiq
import pika
import pytest
from order_worker_client.brokers import broker_urls
from pydantic import SecretStr, ValidationError

from worker.bus.broker import build_broker
from worker.bus.connection import BlockingLink, connection_parameters
from worker.bus.publishing import BatchPublisher
from worker.cli.common import load_settings
from worker.settings import BusSettings, Settings, broker_hosts, get_settings

CLUSTER = (
    "amqp://svc:CANARY-ONE@rabbit-0.mq:5672/orders,"
    " amqps://svc:CANARY%2CTWO@rabbit-1.mq/orders ,"
    "amqp://svc:CANARY-THREE@rabbit-2.mq:5673/orders?heartbeat=5,"
)


def test_one_url_stays_one_url() -> None:
    assert broker_urls("amqp://guest:guest@127.0.0.1:5672/%2F") == ["amqp://guest:guest@127.0.0.1:5672/%2F"]


def test_a_cluster_is_split_on_commas_and_a_percent_encoded_comma_stays_in_its_password() -> None:
    urls = broker_urls(CLUSTER)
    assert urls == [
        "amqp://svc:CANARY-ONE@rabbit-0.mq:5672/orders",
        "amqps://svc:CANARY%2CTWO@rabbit-1.mq/orders",
        "amqp://svc:CANARY-THREE@rabbit-2.mq:5673/orders?heartbeat=5",
    ]
    assert Settings(bus={"broker_url": SecretStr(CLUSTER)}).bus.broker_urls() == urls


def test_pika_gets_every_node_with_its_own_credentials_and_options() -> None:
    parameters = connection_parameters(CLUSTER, shuffle=False)
    assert [(p.host, p.port) for p in parameters] == [
        ("rabbit-0.mq", 5672),
        ("rabbit-1.mq", 5671),
        ("rabbit-2.mq", 5673),
    ]
    assert parameters[1].credentials.password == "CANARY,TWO"
    assert parameters[2].heartbeat == 5 and parameters[0].heartbeat is None
    shuffled = {(p.host, p.port) for p in connection_parameters(CLUSTER)}
    assert shuffled == {(p.host, p.port) for p in parameters}


def test_every_client_accepts_a_cluster_without_connecting() -> None:
    BlockingLink(CLUSTER)
    BatchPublisher(CLUSTER)
    previous_broker, previous_encoder = dramatiq.get_broker(), dramatiq.get_encoder()
    try:
        broker = build_broker(Settings(bus={"broker_url": SecretStr(CLUSTER)}))
    finally:
        dramatiq.set_encoder(previous_encoder)
        dramatiq.set_broker(previous_broker)
    assert isinstance(broker.parameters, list)
    assert sorted(p.host for p in broker.parameters) == ["rabbit-0.mq", "rabbit-1.mq", "rabbit-2.mq"]
    # each connection Dramatiq opens gets the nodes in a fresh order, so a reconnect does not always
    # try the failed node first
    assert len({tuple(p.host for p in broker.parameters) for _ in range(60)}) > 1


def test_hosts_are_shown_without_user_password_or_vhost() -> None:
    shown = broker_hosts(CLUSTER)
    assert shown == "rabbit-0.mq:5672, rabbit-1.mq:5671, rabbit-2.mq:5673"
    assert broker_hosts("amqp://u:p@broker:notaport/x") == "broker:5672"


@pytest.mark.parametrize(
    "value",
    ["", " , ", "amqp://u:CANARY-PW@a/x,http://u:CANARY-PW@b/x", "CANARY-PW"],
)
def test_a_setting_without_amqp_urls_is_refused(value: str) -> None:
    with pytest.raises(ValidationError) as info:
        BusSettings(broker_url=SecretStr(value))
    assert "CANARY" not in str(info.value)


def test_a_bad_url_among_several_is_named_by_the_variable_and_not_echoed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ORDER_WORKER_BROKER_URL", "amqp://u:CANARY-PW@a/x,mysql://u:CANARY-PW@b/x")
    get_settings.cache_clear()
    try:
        with pytest.raises(SystemExit) as info:
            load_settings()
    finally:
        get_settings.cache_clear()
    message = str(info.value.code)
    assert "ORDER_WORKER_BROKER_URL:" in message and "CANARY" not in message


def test_the_settings_tree_masks_every_url() -> None:
    settings = Settings(bus={"broker_url": SecretStr(CLUSTER)})
    assert "CANARY" not in repr(settings) and "CANARY" not in str(settings.model_dump())


def test_no_node_named_is_refused_before_any_connection() -> None:
    with pytest.raises(ValueError):
        connection_parameters(" , ")
    assert isinstance(connection_parameters("amqp://h/%2F")[0], pika.URLParameters)
