"""``make validate``: the export through the real AWS provider, applied to and destroyed on moto.

The full run needs the terraform CLI and an AWS provider mirror; without them the
test skips and names what to install, unless REQUIRE_TERRAFORM=1 (CI sets it in
.ci/run), which turns the skip into a failure. The judging of apply's output, the
mirror discovery and the endpoint mapping are tested on their own below.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import pytest

from infra import validate
from infra.validate import ApplyResult, Missing, ValidationError

MODULE = f"module.{validate.MODULE_NAME}"


def tools_or_skip() -> validate.Tools:
    try:
        return validate.prerequisites()
    except Missing as exc:
        skip_or_fail(exc, os.environ)
        raise AssertionError("unreachable") from exc


def skip_or_fail(exc: Missing, environ: Mapping[str, str]) -> None:
    if environ.get("REQUIRE_TERRAFORM") == "1":
        pytest.fail(f"REQUIRE_TERRAFORM=1 but {exc}")
    pytest.skip(str(exc))


def test_the_export_passes_validate_and_applies_to_moto_but_for_the_known_gaps(export_dir: Path) -> None:
    tools = tools_or_skip()
    report = validate.run(export_dir, tools)
    assert report.ok, report.text
    assert report.apply is not None
    missing = {validate.module_address(a) for a in report.apply.not_created()}
    assert missing == set(validate.KNOWN_UNSUPPORTED)
    assert len(report.apply.created) >= 40  # functions, roles, table, queue, logs, alarms, ...
    assert "destroy: everything created was destroyed" in report.lines


def test_require_terraform_turns_the_skip_into_a_failure() -> None:
    missing = Missing("no terraform on PATH: install the terraform CLI")
    with pytest.raises(pytest.fail.Exception, match="REQUIRE_TERRAFORM=1 but no terraform"):
        skip_or_fail(missing, {"REQUIRE_TERRAFORM": "1"})
    with pytest.raises(pytest.skip.Exception, match="install the terraform CLI"):
        skip_or_fail(missing, {})


# -- judging apply --------------------------------------------------------------------------


def result(created: set[str], errors: list[tuple[str, str]] | None = None) -> ApplyResult:
    planned = {
        f"{MODULE}.aws_lambda_function.push",
        f'{MODULE}.aws_cloudwatch_log_group.function["push"]',
        *(f"{MODULE}.{a}" for a in validate.KNOWN_UNSUPPORTED),
    }
    return ApplyResult(planned=planned, created=created, errors=errors or [])


DEPLOYMENT = "aws_apigatewayv2_deployment.websocket_api_deployment"
SUPPORTED = {f"{MODULE}.aws_lambda_function.push", f'{MODULE}.aws_cloudwatch_log_group.function["push"]'}


def test_exactly_the_known_gaps_pass() -> None:
    verdict = validate.judge(result(SUPPORTED, [(f"{MODULE}.{DEPLOYMENT}", "CreateDeployment 404")]))
    assert verdict.ok, verdict.lines
    assert any("moto cannot" in line and DEPLOYMENT in line for line in verdict.lines)


def test_any_other_resource_not_created_fails() -> None:
    verdict = validate.judge(result({f"{MODULE}.aws_lambda_function.push"}))
    assert not verdict.ok
    assert "FAILED, not created: aws_cloudwatch_log_group.function" in verdict.lines


def test_an_error_on_a_supported_resource_fails_even_if_it_was_created_elsewhere() -> None:
    errors = [(f"{MODULE}.aws_lambda_function.push", "AccessDenied")]
    assert not validate.judge(result(SUPPORTED, errors)).ok
    assert not validate.judge(result(SUPPORTED, [("", "Invalid provider configuration")])).ok


def test_a_known_gap_that_moto_fills_fails_so_the_list_stays_exact() -> None:
    created = SUPPORTED | {f"{MODULE}.{DEPLOYMENT}"}
    verdict = validate.judge(result(created))
    assert not verdict.ok
    assert any("update KNOWN_UNSUPPORTED" in line and DEPLOYMENT in line for line in verdict.lines)


def test_an_apply_that_planned_nothing_fails() -> None:
    assert not validate.judge(ApplyResult()).ok


def test_apply_output_is_read_by_address_and_action() -> None:
    lines = [
        json.dumps({"type": "planned_change", "change": {"action": "create", "resource": {"addr": "a.b"}}}),
        json.dumps({"type": "planned_change", "change": {"action": "create", "resource": {"addr": "c.d"}}}),
        json.dumps({"type": "planned_change", "change": {"action": "update", "resource": {"addr": "e.f"}}}),
        json.dumps({"type": "apply_complete", "hook": {"action": "create", "resource": {"addr": "a.b"}}}),
        json.dumps(
            {"type": "diagnostic", "diagnostic": {"severity": "error", "summary": "boom", "address": "c.d"}}
        ),
        json.dumps({"type": "diagnostic", "diagnostic": {"severity": "warning", "summary": "meh"}}),
        "not json",
    ]
    read = validate.read_apply(lines)
    assert read.planned == {"a.b", "c.d"}
    assert read.created == {"a.b"}
    assert read.not_created() == {"c.d"}
    assert read.errors == [("c.d", "boom")]


def test_module_addresses_lose_the_module_and_the_index() -> None:
    assert validate.module_address(f'{MODULE}.aws_cloudwatch_log_group.function["push"]') == (
        "aws_cloudwatch_log_group.function"
    )
    assert validate.module_address(f"{MODULE}.aws_iam_role.api_gateway_cloudwatch[0]") == (
        "aws_iam_role.api_gateway_cloudwatch"
    )
    assert validate.module_address("aws_sns_topic.alarms") == "aws_sns_topic.alarms"


# -- endpoints ------------------------------------------------------------------------------------


def test_every_type_of_the_export_has_an_endpoint_and_an_unknown_type_stops_the_run(
    export_dir: Path,
) -> None:
    services = validate.endpoints_for(validate.resource_types(export_dir))
    assert {"apigatewayv2", "cloudwatch", "dynamodb", "iam", "lambda", "logs", "sqs", "sts"} <= set(services)
    with pytest.raises(ValidationError, match="aws_kinesis_stream"):
        validate.endpoints_for({"aws_lambda_function", "aws_kinesis_stream"})


def test_the_root_module_points_every_endpoint_at_moto_with_fake_credentials() -> None:
    root = validate.root_module("http://127.0.0.1:5", ["lambda", "sqs"])
    provider = root["provider"]["aws"]
    assert provider["endpoints"] == [{"lambda": "http://127.0.0.1:5", "sqs": "http://127.0.0.1:5"}]
    assert provider["access_key"] == "testing"
    assert provider["skip_credentials_validation"] is True
    assert provider["skip_requesting_account_id"] is True
    assert provider["skip_metadata_api_check"] is True
    assert root["module"][validate.MODULE_NAME]["source"] == "./modules/ws-proxy"


# -- prerequisites ------------------------------------------------------------------------------


def unpacked_mirror(base: Path, version: str = "5.100.0", os_arch: str = "linux_amd64") -> Path:
    target = base / validate.PROVIDER / version / os_arch
    target.mkdir(parents=True)
    (target / f"terraform-provider-aws_v{version}_x5").write_bytes(b"")
    return base


def test_a_mirror_is_found_in_either_layout_and_only_for_this_platform(tmp_path: Path) -> None:
    unpacked = unpacked_mirror(tmp_path / "unpacked")
    assert validate.mirror_versions(unpacked, "linux_amd64") == ["5.100.0"]
    assert validate.mirror_versions(unpacked, "darwin_arm64") == []
    packed = tmp_path / "packed" / validate.PROVIDER
    packed.mkdir(parents=True)
    (packed / "terraform-provider-aws_5.31.0_linux_amd64.zip").write_bytes(b"")
    assert validate.mirror_versions(tmp_path / "packed", "linux_amd64") == ["5.31.0"]
    assert validate.mirror_versions(tmp_path / "nothing", "linux_amd64") == []


def test_the_mirror_comes_from_the_argument_the_variable_or_the_candidates(tmp_path: Path) -> None:
    good = unpacked_mirror(tmp_path / "good")
    empty = tmp_path / "empty"
    empty.mkdir()
    found = validate.find_mirror(None, {}, (empty, good), "linux_amd64")
    assert found == good
    assert validate.find_mirror(None, {"TF_PROVIDER_MIRROR": str(good)}, (), "linux_amd64") == good
    # An explicit mirror without the provider is an error, not a fall-back to the candidates.
    with pytest.raises(Missing, match="TF_PROVIDER_MIRROR"):
        validate.find_mirror(None, {"TF_PROVIDER_MIRROR": str(empty)}, (good,), "linux_amd64")
    with pytest.raises(Missing, match="no AWS provider mirror found"):
        validate.find_mirror(None, {}, (empty,), "linux_amd64")


def test_a_missing_terraform_names_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(Missing, match="install the terraform CLI"):
        validate.find_terraform({"PATH": str(tmp_path)})
    with pytest.raises(Missing, match="is not an executable"):
        validate.find_terraform({"TERRAFORM": str(tmp_path / "terraform")})
    fake = tmp_path / "terraform"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    assert validate.find_terraform({"PATH": str(tmp_path)}) == fake


def test_the_cli_config_installs_from_the_mirror_only(tmp_path: Path) -> None:
    text = validate.cli_config(tmp_path)
    assert "filesystem_mirror" in text
    assert json.dumps(str(tmp_path)) in text
    assert "direct" not in text
    assert "network_mirror" not in text
