"""Both IAM policies allow every operation in infra/aws_operations.json, on this deployment only.

Each operation's resource kind has a sample ARN the code really touches (must
be allowed) and neighbours it must not touch (another table, another stage,
another function, a GET). The chalice-deploy policy files are matched as they
are; the Terraform policy document is matched after its references are replaced
by the sample values they would take, so both are held to the same samples.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.infra.tf import Config

ROOT = Path(__file__).resolve().parents[2]
OPERATIONS = json.loads((ROOT / "infra" / "aws_operations.json").read_text())["operations"]
REGION, ACCOUNT, API_ID = "eu-west-1", "123456789012", "a1b2c3d4e5"
#: Services whose actions support resource-level permissions: never on "*".
TABLE_SUFFIX = "websocket-connections"
RESTRICTED = ("dynamodb:", "execute-api:", "lambda:", "sqs:", "logs:")


def samples(app: str, stage: str, api_stage: str, table: str) -> dict[str, tuple[list[str], list[str]]]:
    """Resource kind → (ARNs that must be allowed, ARNs that must not be)."""
    ddb = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table"
    api = f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{API_ID}"
    fn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function"
    logs = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group"
    stream = "log-stream:2025/01/01/[$LATEST]0123abcd"
    return {
        "table": ([f"{ddb}/{table}"], [f"{ddb}/other-table", f"{ddb}/{table}-copy"]),
        "index": ([f"{ddb}/{table}/index/connection_id-index"], [f"{ddb}/other-table/index/x"]),
        "connections:POST": (
            [f"{api}/{api_stage}/POST/@connections/Zx_1aBcDeFg="],
            [
                f"{api}/{api_stage}/GET/@connections/x",
                f"{api}/{api_stage}/DELETE/@connections/x",
                f"{api}/other-stage/POST/@connections/x",
            ],
        ),
        "function:deliver": (
            [f"{fn}:{app}-{stage}-deliver"],
            [f"{fn}:{app}-{stage}-websocket_message", f"{fn}:x"],
        ),
        "function:fanout": (
            [f"{fn}:{app}-{stage}-fanout"],
            # the backend's push is public: the app itself never needs to invoke it
            [f"{fn}:{app}-{stage}-push", f"{fn}:{app}-{stage}-websocket_connect", f"{fn}:x"],
        ),
        "function-logs": (
            [
                f"{logs}:/aws/lambda/{app}-{stage}-{name}:{stream}"
                for name in ("deliver", "websocket_message")
            ],
            [f"{logs}:/aws/lambda/other-function:{stream}"],
        ),
        "function-log-groups": (
            [f"{logs}:/aws/lambda/{app}-{stage}-deliver"],
            [f"{logs}:/aws/lambda/other-function"],
        ),
        "*": (["*"], []),
    }


def _pattern(arn_glob: str) -> re.Pattern[str]:
    """IAM's resource wildcards: ``*`` any run of characters, ``?`` any one."""
    return re.compile(
        "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in arn_glob) + r"\Z"
    )


def _as_list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def allows(statements: list[dict[str, Any]], action: str, arn: str) -> bool:
    for statement in statements:
        if statement.get("Effect", "Allow") != "Allow":
            continue
        actions = _as_list(statement.get("Action", []))
        if not any(_pattern(a.lower()).match(action.lower()) for a in actions):
            continue
        if any(_pattern(r).match(arn) for r in _as_list(statement.get("Resource", []))):
            return True
    return False


def assert_covers(
    statements: list[dict[str, Any]], kinds: dict[str, tuple[list[str], list[str]]], path: str
) -> None:
    for operation in OPERATIONS:
        if operation.get("only") and operation["only"] != path:
            continue
        allowed, denied = kinds[operation["resource"]]
        for arn in allowed:
            assert allows(statements, operation["action"], arn), (operation, arn)
        for arn in denied:
            assert not allows(statements, operation["action"], arn), (operation, arn)


def assert_no_star_for_restricted(statements: list[dict[str, Any]]) -> None:
    for statement in statements:
        actions = [a.lower() for a in _as_list(statement.get("Action", []))]
        assert "*" not in actions and not any(a.endswith(":*") for a in actions), statement
        if any(a.startswith(RESTRICTED) for a in actions):
            assert "*" not in _as_list(statement.get("Resource", [])), statement


# -- chalice deploy ------------------------------------------------------------------------


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_the_chalice_deploy_policy_allows_every_operation_on_this_stage_only(
    stage: str, chalice_config: dict[str, Any]
) -> None:
    settings = chalice_config["stages"][stage]
    policy = json.loads((ROOT / ".chalice" / settings["iam_policy_file"]).read_text())
    table = settings["environment_variables"]["CONNECTIONS_TABLE"]
    kinds = samples(chalice_config["app_name"], stage, settings["api_gateway_stage"], table)
    assert_covers(policy["Statement"], kinds, "chalice deploy")
    assert_no_star_for_restricted(policy["Statement"])


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_chalice_deploy_uses_the_policy_file_not_a_generated_one(
    stage: str, chalice_config: dict[str, Any]
) -> None:
    settings = {**chalice_config, **chalice_config["stages"][stage]}
    assert settings["autogen_policy"] is False
    assert settings["iam_policy_file"] == f"policy-{stage}.json"
    assert settings.get("xray") is True  # the policy's X-Ray statement is for this
    variables = settings["environment_variables"]
    assert variables["DELIVER_FUNCTION_NAME"] == f"{chalice_config['app_name']}-{stage}-deliver"
    assert variables["FANOUT_FUNCTION_NAME"] == f"{chalice_config['app_name']}-{stage}-fanout"
    assert settings["api_gateway_stage"] == "development"


def test_the_samples_catch_an_over_broad_policy() -> None:
    kinds = samples("ws-proxy", "dev", "development", "ws-proxy-dev-websocket-connections")
    broad = [{"Effect": "Allow", "Action": "dynamodb:*", "Resource": "arn:aws:dynamodb:*:*:table/*"}]
    with pytest.raises(AssertionError):
        assert_covers(broad, kinds, "chalice deploy")
    with pytest.raises(AssertionError):
        assert_no_star_for_restricted([{"Action": ["lambda:InvokeFunction"], "Resource": "*"}])


# -- Terraform -------------------------------------------------------------------------------


def sample_values(app: str, stage: str, functions: list[str]) -> dict[str, str]:
    """What the references in the policy document evaluate to, for the samples above."""
    where = f"{REGION}:{ACCOUNT}"
    values = {
        "aws_dynamodb_table.connections.arn": f"arn:aws:dynamodb:{where}:table/{app}-{stage}-{TABLE_SUFFIX}",
        "aws_apigatewayv2_api.websocket_api.execution_arn": f"arn:aws:execute-api:{where}:{API_ID}",
        "var.websocket_stage_name": "development",
        "aws_sqs_queue.async_dlq.arn": f"arn:aws:sqs:{where}:{app}-{stage}-websocket-api-async-dlq",
    }
    for name in functions:
        values[f"aws_lambda_function.{name}.arn"] = (
            f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{app}-{stage}-{name}"
        )
    return values


_LOG_STREAMS = re.compile(
    r'^\$\{formatlist\("%s(?P<suffix>[^"]*)", values\(aws_cloudwatch_log_group\.function\)\[\*\]\.arn\)\}$'
)


def evaluate(resources: Any, values: dict[str, str], log_groups: list[str]) -> list[str]:
    """The ARNs a statement's ``resources`` expression yields, with the sample values."""
    if isinstance(resources, str):
        match = _LOG_STREAMS.match(resources)
        if not match:
            raise AssertionError(f"unexpected resources expression {resources!r}")
        return [group + match.group("suffix") for group in log_groups]
    out = []
    for item in resources:

        def substitute(m: re.Match[str]) -> str:
            return values[m.group(1)]

        rendered = re.sub(r"\$\{([A-Za-z0-9_.-]+)\}", substitute, item)
        assert "${" not in rendered, item
        out.append(rendered)
    return out


def terraform_statements(tf: Config, document: str) -> list[dict[str, Any]]:
    functions = sorted(tf.resources("aws_lambda_function"))
    values = sample_values("ws-proxy", "dev", functions)
    log_groups = [
        f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/ws-proxy-dev-{n}" for n in functions
    ]
    statements = []
    for statement in tf.data("aws_iam_policy_document")[document]["statement"]:
        statements.append(
            {
                "Effect": statement.get("effect", "Allow"),
                "Action": statement["actions"],
                "Resource": evaluate(statement["resources"], values, log_groups),
            }
        )
    return statements


def test_the_terraform_policy_allows_every_operation_on_this_deployment_only(tf: Config) -> None:
    kinds = samples("ws-proxy", "dev", "development", "ws-proxy-dev-websocket-connections")
    statements = terraform_statements(tf, "websocket_proxy")
    assert_covers(statements, kinds, "terraform")
    assert_no_star_for_restricted(statements)
    # Terraform creates the log groups, so the functions may not.
    assert not any("logs:CreateLogGroup" in s["Action"] for s in statements)


def test_every_role_gets_the_terraform_policy_and_nothing_else(tf: Config) -> None:
    roles = tf.resources("aws_iam_role")
    policies = tf.resources("aws_iam_role_policy")
    for name in tf.resources("aws_lambda_function"):
        chalice_policy = policies[f"{name}_role"]
        assert chalice_policy["role"] == f"${{aws_iam_role.{name}_role.id}}"
        assert chalice_policy["policy"] == "${data.aws_iam_policy_document.websocket_proxy.json}"
        assert f"{name}_role" in roles
    assert not tf.resources("aws_iam_role_policy_attachment").keys() - {"api_gateway_cloudwatch"}


def test_no_terraform_policy_document_grants_star_for_restricted_actions(tf: Config) -> None:
    for name in tf.data("aws_iam_policy_document"):
        if name == "api_gateway_assume":
            continue
        assert_no_star_for_restricted(terraform_statements(tf, name))
    for policy in tf.resources("aws_iam_role_policy").values():  # any literal JSON left
        if policy["policy"].startswith("{"):
            assert_no_star_for_restricted(json.loads(policy["policy"])["Statement"])
