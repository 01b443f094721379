"""checkov over the Terraform export: no failed check beyond .checkov.yaml's reasoned skips.

checkov lives in its own virtualenv (``make checkov-venv``: its pins clash with
chalice's and moto's). A parse error or a run with zero checks fails here: checkov
3's terraform_json parser gives up on a file it cannot read (a ``terraform {}``
block in JSON, for one) and then reports nothing, which must not look like success.
What checkov cannot judge: attributes set from variables (``kms_key_arn =
var.x`` passes whatever the variable's default), and anything merged by override
files (it reads each file on its own).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
CONFIG = ROOT / ".checkov.yaml"
#: Checks that must run and pass on the export, so a parser or mapping change in
#: checkov cannot quietly stop checking what this configuration fixed. (The DLQ check,
#: CKV_AWS_116, is skipped for the synchronous handlers and so for all functions: its
#: place is taken by test_export.py's test of deliver's and push's dead_letter_config.)
MUST_PASS = {
    ("CKV_AWS_50", "aws_lambda_function", 5),  # X-Ray on every function
    ("CKV_AWS_76", "aws_apigatewayv2_stage", 1),  # access logging
    ("CKV_AWS_27", "aws_sqs_queue", 1),  # the DLQ is encrypted
    ("CKV_AWS_119", "aws_dynamodb_table", 1),  # the table is encrypted with KMS
    ("CKV_AWS_111", "aws_iam_policy_document", 3),  # no unconstrained write access
}


class CheckovRunError(AssertionError):
    """checkov did not really check: a parse error, or nothing checked."""


def run_checkov(
    directory: Path, framework: str = "terraform_json", *, allow_empty: bool = False
) -> dict[str, Any]:
    if not CHECKOV.exists():
        raise CheckovRunError(f"{CHECKOV} is missing: run `make checkov-venv` (make test does)")
    command = [str(CHECKOV), "-d", str(directory), "--config-file", str(CONFIG), "--framework", framework]
    result = subprocess.run(
        [*command, "-o", "json"], capture_output=True, text=True, cwd=directory, check=False
    )
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError as exc:
        raise CheckovRunError(f"checkov printed no JSON report: {result.stderr[-2000:]}") from exc
    if isinstance(report, list):
        raise CheckovRunError(f"expected one framework's report, got {len(report)}")
    summary = report.get("summary", report)
    if summary["parsing_errors"]:
        raise CheckovRunError(f"checkov could not parse: {report['results']['parsing_errors']}")
    if not allow_empty and summary["passed"] + summary["failed"] == 0:
        raise CheckovRunError("checkov ran zero checks")
    return dict(report)


@pytest.fixture(scope="module")
def report(export_dir: Path) -> dict[str, Any]:
    return run_checkov(export_dir)


def test_checkov_finds_nothing_beyond_the_reasoned_skips(report: dict[str, Any]) -> None:
    failed = [(c["check_id"], c["resource"], c["file_path"]) for c in report["results"]["failed_checks"]]
    assert failed == []
    assert report["summary"]["passed"] >= 100


def test_checkov_really_checked_what_the_export_fixed(report: dict[str, Any]) -> None:
    passed = Counter(check["check_id"] for check in report["results"]["passed_checks"])
    for check_id, what, count in MUST_PASS:
        assert passed[check_id] >= count, (check_id, what, passed[check_id])


def test_the_hcl_file_parses_too(export_dir: Path) -> None:
    # versions.tf holds only the terraform block: no resources, so no checks, but no parse error either.
    summary = run_checkov(export_dir, "terraform", allow_empty=True)
    summary = summary.get("summary", summary)
    assert summary["parsing_errors"] == 0


def test_a_json_terraform_block_fails_the_run_rather_than_passing_on_zero_checks(
    export_dir: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "terraform"
    shutil.copytree(export_dir, broken, ignore=shutil.ignore_patterns("*.zip"))
    chalice = json.loads((broken / "chalice.tf.json").read_text())
    chalice["terraform"] = {"required_version": ">= 1.5"}  # what chalice package writes
    (broken / "chalice.tf.json").write_text(json.dumps(chalice))
    with pytest.raises(CheckovRunError, match="could not parse"):
        run_checkov(broken)


def test_an_empty_directory_fails_the_run(tmp_path: Path) -> None:
    with pytest.raises(CheckovRunError, match="zero checks"):
        run_checkov(tmp_path)


def test_every_skip_is_a_known_check_with_a_reason() -> None:
    text = CONFIG.read_text()
    skips = re.findall(r"^  - (CKV\w+)$", text, re.MULTILINE)
    assert 0 < len(skips) <= 8
    lines = text.splitlines()
    for check in skips:
        index = lines.index(f"  - {check}")
        assert lines[index - 1].strip().startswith("#"), f"{check} has no reason above it"


def _reason(check: str) -> str:
    lines = CONFIG.read_text().splitlines()
    index = lines.index(f"  - {check}")
    reason: list[str] = []
    while lines[index - 1].strip().startswith("#"):
        index -= 1
        reason.insert(0, lines[index].strip().lstrip("# "))
    return " ".join(reason)


def test_the_authorizer_skip_names_the_types_that_do_and_do_not_call_the_backend_on_connect() -> None:
    from chalicelib.routes import DEFAULT_ROUTES

    reason = _reason("CKV_AWS_309")
    with_route = sorted(name for name, route in DEFAULT_ROUTES.items() if route.connect is not None)
    without = sorted(name for name, route in DEFAULT_ROUTES.items() if route.connect is None)
    assert with_route == ["booking", "chat", "notification"]
    assert "(chat, booking and notification by default), $connect calls it" in reason
    assert without == ["feed"]
    assert "(feed by default) never call the backend" in reason


def test_the_dead_letter_queue_skip_is_true_of_the_export(tf: Any) -> None:
    from infra import build

    reason = _reason("CKV_AWS_116")
    functions = tf.resources("aws_lambda_function")
    without_dlq = {n for n, f in functions.items() if "dead_letter_config" not in f}
    routes = {i["integration_uri"] for i in tf.resources("aws_apigatewayv2_integration").values()}
    assert {f"${{aws_lambda_function.{n}.invoke_arn}}" for n in without_dlq} == routes
    assert len(without_dlq) == 3
    assert "three WebSocket handlers" in reason
    assert all(name in reason for name in build.ASYNC_FUNCTIONS)
