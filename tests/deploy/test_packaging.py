"""The product's wheel: what production installs, built from pyproject.toml as pip builds it."""

from __future__ import annotations

import subprocess
import sys
import zipfile

import pytest

from tests.deploy.conftest import REPO


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            str(REPO),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = out.glob("order_worker-*.whl")
    return zipfile.ZipFile(built)


def test_the_wheel_carries_no_simulator(wheel: zipfile.ZipFile) -> None:
    names = wheel.namelist()
    assert any(name.startswith("worker/partners/zerotrace/") for name in names)
    assert not [name for name in names if "sandbox" in name.lower()]


def test_the_simulator_s_dependencies_are_only_an_extra(wheel: zipfile.ZipFile) -> None:
    metadata = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    requires = [
        line for line in wheel.read(metadata).decode().splitlines() if line.startswith("Requires-Dist:")
    ]
    assert not [line for line in requires if "segno" in line]
    assert [line for line in requires if "order-worker-sandbox" in line] == [
        'Requires-Dist: order-worker-sandbox; extra == "sandbox"'
    ]


def test_the_built_in_partners_are_found_through_the_entry_point_group(wheel: zipfile.ZipFile) -> None:
    entry_points = next(n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt"))
    text = wheel.read(entry_points).decode()
    assert "[order_worker.partners]" in text
    assert (
        "0trace = worker.partners.zerotrace:partner" in text and "itrx = worker.partners.itrx:partner" in text
    )


def test_partner_modules_are_in_the_wheel_as_in_the_tree(wheel: zipfile.ZipFile) -> None:
    in_tree = {p.relative_to(REPO).as_posix() for p in (REPO / "worker" / "partners").rglob("*.py")}
    assert in_tree and in_tree <= set(wheel.namelist())
