"""The docs name everything an operator or a newcomer looks for, checked against the code (in the
manner of Datasette's test_docs.py): every package folder in docs/architecture.md, every server
setting in README.md or docs/, every Prometheus family of ours in docs/operations.md."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

import taskservice
from taskservice.server.config import Settings
from taskservice.telemetry import metrics

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PACKAGE = Path(taskservice.__file__).resolve().parent
# Families prometheus_client exports by itself (process and interpreter collectors): not ours to document.
_DEFAULT_PREFIXES = ("process_", "python_")


def _packages() -> list[str]:
    """Every package folder under src/taskservice, as a path relative to it (`store/migrations`)."""
    return sorted(
        init.parent.relative_to(PACKAGE).as_posix()
        for init in PACKAGE.rglob("__init__.py")
        if init.parent != PACKAGE and "__pycache__" not in init.parts
    )


def _all_docs() -> str:
    return (ROOT / "README.md").read_text() + "".join(p.read_text() for p in sorted(DOCS.rglob("*.md")))


def _metric_families() -> list[str]:
    """Every family the server exports that this project defines, named as it appears on /metrics."""
    names = []
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        if family.name.startswith(_DEFAULT_PREFIXES):
            continue
        names.append(family.name + "_total" if family.type == "counter" else family.name)
    return sorted(names)


def test_the_code_has_what_the_checks_look_for() -> None:
    """Guards the three tests below against passing over an empty list."""
    assert "domain" in _packages() and "store/migrations" in _packages()
    assert len(dataclasses.fields(Settings)) > 20
    assert "grpc_server_handled_total" in _metric_families()
    assert "taskservice_watchers" in _metric_families()


@pytest.mark.parametrize("package", _packages())
def test_every_package_is_in_architecture_md(package: str) -> None:
    text = (DOCS / "architecture.md").read_text()
    folder = package.rsplit("/", 1)[-1] + "/"
    assert re.search(rf"(?<![\w/]){re.escape(folder)}|{re.escape(package)}/", text), (
        f"src/taskservice/{package}/ is not described in docs/architecture.md"
    )


@pytest.mark.parametrize("setting", [f.name for f in dataclasses.fields(Settings)])
def test_every_setting_is_documented(setting: str) -> None:
    flag = "--" + setting.replace("_", "-")
    assert re.search(re.escape(flag) + r"(?![\w-])", _all_docs()), (
        f"server setting {flag} (server/config.py) is in neither README.md nor docs/*.md"
    )


@pytest.mark.parametrize("family", _metric_families())
def test_every_metric_is_in_operations_md(family: str) -> None:
    text = (DOCS / "operations.md").read_text()
    assert re.search(rf"\b{re.escape(family)}\b", text), (
        f"metric {family} (telemetry/metrics.py) is not described in docs/operations.md"
    )
