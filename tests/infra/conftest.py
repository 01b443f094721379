"""The Terraform export, built once per test session into a temporary directory."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from infra import build
from tests.infra.tf import Config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``make package``'s output for the dev stage, built from this checkout."""
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")  # chalice package needs one
    return build.build(tmp_path_factory.mktemp("export") / "terraform", "dev")


@pytest.fixture(scope="session")
def tf(export_dir: Path) -> Config:
    return Config.load(export_dir)


@pytest.fixture(scope="session")
def chalice_config() -> dict[str, Any]:
    return dict(json.loads((ROOT / ".chalice" / "config.json").read_text()))
