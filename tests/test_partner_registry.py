"""The partner registry: partners come from the order_worker.partners entry-point group, and a broken or
ambiguous plug-in stops the process at start with its name instead of silently missing."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from worker.partners import registry


@pytest.fixture
def install(tmp_path: Path) -> Iterator[Callable[[str], None]]:
    """Writes package metadata with the given entry-point lines onto sys.path, as pip would install it."""
    added: list[str] = []

    def add(lines: str) -> None:
        site = tmp_path / f"site{len(added)}"
        dist = site / f"plugin{len(added)}-1.0.dist-info"
        dist.mkdir(parents=True)
        (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: plugin{len(added)}\nVersion: 1.0\n")
        (dist / "entry_points.txt").write_text(f"[order_worker.partners]\n{lines}\n")
        sys.path.insert(0, str(site))
        added.append(str(site))
        registry.registered.cache_clear()

    yield add
    for site in added:
        sys.path.remove(site)
    registry.registered.cache_clear()


def test_the_built_in_partners_are_registered_through_the_group() -> None:
    assert registry.names() == ["0trace", "itrx"]
    assert registry.get("itrx").capabilities.idempotent_create is False
    assert registry.get("0trace").capabilities.idempotent_create is True


def test_a_third_party_partner_is_found(install: Callable[[str], None]) -> None:
    install("acme = tests.third_partner.plugin:partner")
    assert registry.names() == ["0trace", "acme", "itrx"]
    assert registry.get("acme").params_model.__name__ == "AcmeParams"


def test_an_entry_point_that_is_not_a_partner_is_a_start_up_error(install: Callable[[str], None]) -> None:
    install("broken = tests.third_partner.plugin:AcmeParams")
    with pytest.raises(TypeError, match=r"entry point broken = tests\.third_partner\.plugin:AcmeParams"):
        registry.names()


def test_a_partner_registered_under_another_name_is_refused(install: Callable[[str], None]) -> None:
    install("other = tests.third_partner.plugin:partner")
    with pytest.raises(ValueError, match="entry point other names a partner called 'acme'"):
        registry.names()


def test_two_plug_ins_for_one_provider_id_are_refused(install: Callable[[str], None]) -> None:
    install("acme = tests.third_partner.plugin:partner")
    install("acme = tests.third_partner.plugin:partner")
    with pytest.raises(ValueError, match="two partner plug-ins answer to 'acme'"):
        registry.names()


def test_an_unknown_provider_names_the_installed_ones() -> None:
    with pytest.raises(
        registry.UnknownPartnerError, match=r"unknown provider 'kraken' \(known: 0trace, itrx\)"
    ):
        registry.get("kraken")
