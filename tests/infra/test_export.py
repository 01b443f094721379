"""The Terraform export is one consistent configuration (checked without Terraform)."""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path
from typing import Any

import pytest

from chalicelib.schema import CONNECTION_INDEX, PARTITION_KEY, SORT_KEY, TTL_ATTRIBUTE
from infra import build
from tests.infra.tf import Config, find_cycle, hcl_top_level_blocks, interpolations, references

FUNCTIONS = {"websocket_connect", "websocket_message", "websocket_disconnect", "deliver", "push", "fanout"}
REQUIRED_OUTPUTS = {
    "websocket_api_endpoint",
    "websocket_api_id",
    "websocket_lambda_function_arn",
    "websocket_connections_table_name",
    "websocket_lambda_function_arns",
    "websocket_push_function_name",
}


def functions(tf: Config) -> dict[str, Any]:
    return tf.resources("aws_lambda_function")


def env(tf: Config, name: str) -> dict[str, str]:
    return dict(functions(tf)[name]["environment"]["variables"])


# -- references ---------------------------------------------------------------


def test_the_export_holds_chalice_output_and_every_addition(export_dir: Path) -> None:
    names = {p.name for p in export_dir.iterdir()}
    assert {"chalice.tf.json", "deployment.zip", "versions.tf"} <= names
    assert set(build.STATIC_FILES) <= names
    assert {"connections_table.tf.json", "functions.tf.json"} <= names


def test_the_package_ships_the_app_and_no_test_or_local_code(export_dir: Path) -> None:
    with zipfile.ZipFile(export_dir / "deployment.zip") as package:
        names = package.namelist()
    tops = {name.split("/", 1)[0] for name in names}
    assert {"app.py", "chalicelib", "aws_lambda_powertools"} <= tops
    never = {"ws_proxy_testing", "tests", "local_gateway", "bench", "infra", "client"}
    assert sorted(tops & never) == []


def test_every_reference_resolves_to_a_declaration(tf: Config) -> None:
    unresolved = {
        f"{block.address} ({block.file}) -> {ref.address}"
        for block in tf.all_blocks()
        for ref in block.refs()
        if ref.kind != "builtin" and ref.address not in tf.blocks
    }
    assert not unresolved, sorted(unresolved)


def test_each_and_count_appear_only_where_their_meta_argument_is(tf: Config) -> None:
    for block in tf.all_blocks():
        text = json.dumps(block.body)
        if "each." in text:
            assert "for_each" in block.body, block.address
        if "count.index" in text:
            assert "count" in block.body, block.address


def test_the_reference_reader_sees_what_terraform_sees() -> None:
    text = '${replace(aws_apigatewayv2_api.websocket_api.api_endpoint, "wss://", "https://")}/${var.stage}'
    found = {r.address for content in interpolations(text) for r in references(content)}
    assert found == {"aws_apigatewayv2_api.websocket_api", "var.stage"}
    nested = '${filebase64sha256("${path.module}/deployment.zip")}'
    assert {r.kind for content in interpolations(nested) for r in references(content)} == {"builtin"}
    listed = '${formatlist("%s:*", values(aws_cloudwatch_log_group.function)[*].arn)}'
    assert {r.address for c in interpolations(listed) for r in references(c)} == {
        "aws_cloudwatch_log_group.function"
    }
    assert {r.address for r in references("data.aws_iam_policy_document.x.json")} == {
        "data.aws_iam_policy_document.x"
    }


def test_the_configuration_has_no_dependency_cycle(tf: Config) -> None:
    assert find_cycle(tf.dependencies()) is None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


# -- versions and what current providers reject ------------------------------------


#: Lambda runtime -> the first AWS provider release that accepts it (the provider's CHANGELOG).
#: A runtime missing here fails the test below: look its release up and raise versions.tf's bound.
FIRST_PROVIDER_FOR_RUNTIME = {"python3.11": "5.11.0", "python3.13": "5.76.0"}


def test_versions_tf_requires_terraform_1_5_and_an_aws_provider_that_takes_the_runtime(
    export_dir: Path, tf: Config
) -> None:
    text = (export_dir / "versions.tf").read_text()
    assert hcl_top_level_blocks(text) == ["terraform"]
    assert re.search(r'required_version\s*=\s*">=\s*1\.5"', text)
    assert re.search(r'source\s*=\s*"hashicorp/aws"', text)
    bound = re.search(r'\bversion\s*=\s*">=\s*([0-9.]+)"', text)
    assert bound, text
    runtimes = {f["runtime"] for f in functions(tf).values()}
    needed = max(
        (FIRST_PROVIDER_FOR_RUNTIME[r] for r in runtimes), key=lambda v: tuple(map(int, v.split(".")))
    )
    assert bound.group(1) == needed
    assert not re.search(r"^\s*null\s*=", text, re.MULTILINE)  # the null provider is gone


def test_no_json_file_has_a_terraform_block(tf: Config) -> None:
    # checkov's terraform_json parser cannot read one (and would report zero checks).
    assert [name for name, doc in tf.documents.items() if "terraform" in doc] == []


def test_nothing_deprecated_by_current_providers_remains(export_dir: Path) -> None:
    text = "".join(p.read_text() for p in export_dir.glob("*.tf*"))
    assert "null_data_source" not in text
    assert "data.aws_region" not in text  # `name` is deprecated in AWS provider 6


# -- outputs and variables -------------------------------------------------------------


def test_the_outputs_the_infra_repository_expects_exist(tf: Config) -> None:
    assert set(tf.outputs) >= REQUIRED_OUTPUTS
    value = {name: tf.outputs[name].body["value"] for name in REQUIRED_OUTPUTS}
    assert value["websocket_api_endpoint"] == "${aws_apigatewayv2_stage.websocket_api_stage.invoke_url}"
    assert value["websocket_lambda_function_arn"] == "${aws_lambda_function.websocket_message.arn}"
    assert value["websocket_push_function_name"] == "${aws_lambda_function.push.function_name}"
    assert value["websocket_connections_table_name"] == "${aws_dynamodb_table.connections.name}"


def test_the_function_map_output_lists_every_function(tf: Config) -> None:
    assert tf.outputs["websocket_lambda_function_arns"].body["value"] == "${local.function_arns}"
    arns = tf.blocks["local.function_arns"].body
    assert set(arns) == set(functions(tf)) == FUNCTIONS
    assert all(arns[n] == f"${{aws_lambda_function.{n}.arn}}" for n in arns)


def test_the_variables_the_issue_names_exist_with_their_defaults(tf: Config) -> None:
    variables = {a[4:]: b.body for a, b in tf.blocks.items() if a.startswith("var.")}
    assert variables["websocket_stage_name"]["default"] == "development"
    assert "default" not in variables["websocket_backend_url"]  # required
    assert variables["connections_table_name"]["default"] is None
    assert variables["allowed_origins"]["default"] == []
    assert variables["log_retention_days"]["default"] > 0
    assert all(v.get("description") for v in variables.values())


# -- the table ----------------------------------------------------------------------------


def test_the_table_matches_the_contract(tf: Config) -> None:
    table = tf.resources("aws_dynamodb_table")["connections"]
    assert table["hash_key"] == PARTITION_KEY == "booking_id"
    assert table["range_key"] == SORT_KEY == "connection_id"
    assert table["billing_mode"] == "PAY_PER_REQUEST"
    assert {a["name"]: a["type"] for a in table["attribute"]} == {"booking_id": "S", "connection_id": "S"}
    assert table["global_secondary_index"] == [
        {"name": CONNECTION_INDEX, "hash_key": "connection_id", "projection_type": "ALL"}
    ]
    assert CONNECTION_INDEX == "connection_id-index"
    assert table["ttl"] == {"attribute_name": TTL_ATTRIBUTE, "enabled": True}
    assert TTL_ATTRIBUTE == "ttl"
    assert table["server_side_encryption"] == {"enabled": True, "kms_key_arn": "${var.table_kms_key_arn}"}
    assert table["tags"] == "${var.tags}"


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_the_default_table_name_is_the_one_chalice_deploy_uses(
    stage: str, chalice_config: dict[str, Any]
) -> None:
    local = build.table_file(chalice_config["app_name"], stage)["locals"]["connections_table_name"]
    expected = chalice_config["stages"][stage]["environment_variables"]["CONNECTIONS_TABLE"]
    assert local == f'${{coalesce(var.connections_table_name, "{expected}")}}'
    assert expected == f"ws-proxy-{stage}-websocket-connections"


def test_the_table_generator_rejects_what_it_cannot_express() -> None:
    with pytest.raises(build.BuildError):
        build.table_resource({"BillingMode": "PROVISIONED", "KeySchema": [], "AttributeDefinitions": []})


# -- functions ----------------------------------------------------------------------------


def test_every_function_is_wired_to_the_table_and_backend_by_reference(tf: Config) -> None:
    assert set(functions(tf)) == FUNCTIONS
    for name in FUNCTIONS:
        variables = env(tf, name)
        assert variables["CONNECTIONS_TABLE"] == "${aws_dynamodb_table.connections.name}", name
        assert variables["BACKEND_URL"] == "${var.websocket_backend_url}", name
        assert variables["ALLOWED_ORIGINS"] == '${join(",", var.allowed_origins)}', name
        for key in ("CONNECTION_TTL_SECONDS", "BACKEND_TIMEOUT_SECONDS", "FANOUT_WORKERS", "PUSH_CHUNK_SIZE"):
            assert variables[key].startswith("${var."), (name, key)


def test_the_feed_cap_is_an_optional_variable_for_connect_only(tf: Config) -> None:
    variable = tf.blocks["var.max_feed_connections"].body
    assert variable["default"] == 0  # no cap
    assert "max_feed_connections >= 0" in variable["validation"]["condition"]
    assert env(tf, "websocket_connect")["MAX_FEED_CONNECTIONS"] == "${var.max_feed_connections}"
    assert not any("MAX_FEED_CONNECTIONS" in env(tf, n) for n in FUNCTIONS - {"websocket_connect"})


def test_function_names_are_wired_where_the_code_invokes_them(tf: Config) -> None:
    for name in ("websocket_connect", "websocket_disconnect"):  # initial frames; presence events
        assert env(tf, name)["DELIVER_FUNCTION_NAME"] == "${aws_lambda_function.deliver.function_name}"
    fanout = "${aws_lambda_function.fanout.function_name}"
    assert env(tf, "websocket_message")["FANOUT_FUNCTION_NAME"] == fanout
    assert env(tf, "push")["FANOUT_FUNCTION_NAME"] == fanout
    # fanout derives its own name from its context.function_name: a self-reference would be a cycle.
    assert "FANOUT_FUNCTION_NAME" not in env(tf, "fanout")
    assert not any("PUSH_FUNCTION_NAME" in env(tf, n) for n in FUNCTIONS)  # the app never invokes push
    for name in FUNCTIONS:
        assert f"aws_lambda_function.{name}." not in json.dumps(functions(tf)[name]), name


def test_functions_without_an_api_gateway_event_get_the_endpoint_built_by_reference(tf: Config) -> None:
    with_endpoint = {n for n in FUNCTIONS if "API_GATEWAY_ENDPOINT" in env(tf, n)}
    assert with_endpoint == {"push", "deliver", "fanout"}
    for name in with_endpoint:
        assert env(tf, name)["API_GATEWAY_ENDPOINT"] == (
            '${replace(aws_apigatewayv2_api.websocket_api.api_endpoint, "wss://", "https://")}'
            "/${var.websocket_stage_name}"
        )


def test_no_literal_from_the_chalice_deploy_stage_leaks_into_the_export(tf: Config) -> None:
    text = json.dumps(tf.documents["chalice.tf.json"])
    assert "api-dev.example.com" not in text
    assert "websocket-connections" not in text


def test_every_function_is_traced_and_has_a_log_group_with_retention(tf: Config) -> None:
    for name, function in functions(tf).items():
        assert function["tracing_config"] == {"mode": "Active"}, name
    assert set(tf.blocks["local.function_names"].body) == FUNCTIONS
    group = tf.resources("aws_cloudwatch_log_group")["function"]
    assert group["for_each"] == "${local.function_names}"
    assert group["name"] == "/aws/lambda/${each.value}"
    assert group["retention_in_days"] == "${var.log_retention_days}"


def test_asynchronously_invoked_functions_have_an_encrypted_dead_letter_queue(tf: Config) -> None:
    queue = tf.resources("aws_sqs_queue")["async_dlq"]
    assert queue["sqs_managed_sse_enabled"] is True or queue.get("kms_master_key_id")
    role_policies = tf.resources("aws_iam_role_policy")
    present = [n for n in build.ASYNC_FUNCTIONS if n in functions(tf)]
    assert set(build.REQUIRED_ASYNC_FUNCTIONS) <= set(present)
    without = {n for n, f in functions(tf).items() if "dead_letter_config" in f} - set(present)
    assert without == set()
    for name in present:
        function = functions(tf)[name]
        assert function["dead_letter_config"] == {"target_arn": "${aws_sqs_queue.async_dlq.arn}"}, name
        sender = role_policies[f"{name}_dlq"]
        assert sender["role"] == f"${{aws_iam_role.{name}_role.id}}"
        assert f"aws_iam_role_policy.{name}_dlq" in function["depends_on"]
    statement = tf.data("aws_iam_policy_document")["async_dlq_send"]["statement"]
    assert statement == [
        {
            "sid": "DeadLetterQueue",
            "actions": ["sqs:SendMessage"],
            "resources": ["${aws_sqs_queue.async_dlq.arn}"],
        }
    ]


# -- the stage --------------------------------------------------------------------------


def test_the_stage_logs_access_without_query_strings_and_throttles_the_default_route(tf: Config) -> None:
    stage = tf.resources("aws_apigatewayv2_stage")["websocket_api_stage"]
    assert stage["name"] == "${var.websocket_stage_name}"
    logs = stage["access_log_settings"]
    assert logs["destination_arn"] == "${aws_cloudwatch_log_group.websocket_access.arn}"
    assert logs["format"] == "${jsonencode(local.websocket_access_log_format)}"
    fields = tf.blocks["local.websocket_access_log_format"].body
    values = " ".join(v for k, v in fields.items() if k != "//")
    assert "$context.connectionId" in values
    assert "$context.status" in values
    for leak in ("querystring", "query", "header", "body", "authorizer", "protocol"):
        assert leak not in values.lower(), leak
    routes = stage["default_route_settings"]
    assert routes["throttling_rate_limit"] == "${var.websocket_throttling_rate_limit}"
    assert routes["throttling_burst_limit"] == "${var.websocket_throttling_burst_limit}"
    assert routes["data_trace_enabled"] is False  # it would log whole frames, tokens included
    groups = tf.resources("aws_cloudwatch_log_group")
    assert groups["websocket_access"]["retention_in_days"] == "${var.log_retention_days}"
    # API Gateway's own execution log group exists (with retention) before logging is on.
    assert groups["websocket_execution"]["name"] == (
        "API-Gateway-Execution-Logs_${aws_apigatewayv2_api.websocket_api.id}/${var.websocket_stage_name}"
    )
    assert "aws_cloudwatch_log_group.websocket_execution" in stage["depends_on"]
    assert routes["logging_level"] == "ERROR"


def test_integrations_and_permissions_are_built_from_resource_attributes(tf: Config) -> None:
    for name, integration in tf.resources("aws_apigatewayv2_integration").items():
        function = name.removesuffix("_api_integration")
        assert integration["integration_uri"] == f"${{aws_lambda_function.{function}.invoke_arn}}"
    for permission in tf.resources("aws_lambda_permission").values():
        assert permission["source_arn"] == "${aws_apigatewayv2_api.websocket_api.execution_arn}/*"


def test_fanout_gets_the_dead_letter_queue_once_it_exists_and_deliver_and_push_are_required() -> None:
    def doc(*names: str) -> dict[str, Any]:
        return {"resource": {"aws_lambda_function": {n: {} for n in names}}}

    with_fanout = doc("deliver", "push", "fanout", "websocket_connect")
    build.wire_dead_letter_queues(with_fanout)
    functions_ = with_fanout["resource"]["aws_lambda_function"]
    assert {n for n, f in functions_.items() if "dead_letter_config" in f} == {"deliver", "push", "fanout"}
    assert set(with_fanout["resource"]["aws_iam_role_policy"]) == {"deliver_dlq", "push_dlq", "fanout_dlq"}
    with pytest.raises(build.BuildError, match="deliver"):
        build.wire_dead_letter_queues(doc("push"))
