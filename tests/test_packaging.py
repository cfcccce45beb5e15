"""Packaging: an SPDX license expression with its file, a bounded build backend."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent


def test_spdx_license_and_bounded_setuptools():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["license"] == "Apache-2.0"
    for pattern in project["project"]["license-files"]:
        assert list(ROOT.glob(pattern)), pattern
    [req] = [Requirement(r) for r in project["build-system"]["requires"]]
    assert req.name == "setuptools"
    assert req.specifier.contains(Version("77.0.3"))  # the first with PEP 639 license strings
    assert not req.specifier.contains(Version("76.1.0"))
    assert not req.specifier.contains(Version("999"))  # bounded above
