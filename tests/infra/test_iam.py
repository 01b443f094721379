"""Each function's IAM allows exactly the operations infra/aws_operations.json grants it, on this deployment.

Each operation's resource kind has a sample ARN the code really touches and
neighbours it must not touch (another table, another stage, another function, a
GET). For every function, on both deploy paths: each granted operation is allowed
on its samples and denied on the neighbours, and every operation *not* granted to
that function is denied on its samples too (disconnect cannot post to connections,
connect cannot query). The chalice-deploy policy files are matched as they are; the
Terraform policy documents after their references are replaced by the sample
values they would take, so both are held to the same samples.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from chalice.config import Config as ChaliceConfig

from infra import iam
from tests.infra.tf import Config

ROOT = Path(__file__).resolve().parents[2]
LIST = json.loads((ROOT / "infra" / "aws_operations.json").read_text())
OPERATIONS = LIST["operations"]
FUNCTIONS = LIST["functions"]["names"]
REGION, ACCOUNT, API_ID = "eu-west-1", "123456789012", "a1b2c3d4e5"
TABLE_SUFFIX = "websocket-connections"
#: Services whose actions support resource-level permissions: never on "*".
RESTRICTED = ("dynamodb:", "execute-api:", "lambda:", "sqs:", "logs:")


def samples(
    app: str, stage: str, api_stage: str, table: str, function: str
) -> dict[str, tuple[list[str], list[str]]]:
    """Resource kind -> (ARNs that must be allowed, ARNs that must not be), for one function."""
    ddb = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table"
    api = f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{API_ID}"
    fn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function"
    logs = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group"
    stream = "log-stream:2025/01/01/[$LATEST]0123abcd"
    other = "deliver" if function != "deliver" else "push"
    return {
        "table": ([f"{ddb}/{table}"], [f"{ddb}/other-table", f"{ddb}/{table}-copy"]),
        "feed-count": ([f"{ddb}/{table}"], [f"{ddb}/other-table"]),
        "index": (
            [f"{ddb}/{table}/index/connection_id-index"],
            [f"{ddb}/other-table/index/x", f"{ddb}/{table}/index/another-index"],
        ),
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
            [f"{logs}:/aws/lambda/{app}-{stage}-{function}:{stream}"],
            [
                f"{logs}:/aws/lambda/{app}-{stage}-{other}:{stream}",
                f"{logs}:/aws/lambda/other-function:{stream}",
            ],
        ),
        "function-log-groups": (
            [f"{logs}:/aws/lambda/{app}-{stage}-{function}"],
            [f"{logs}:/aws/lambda/{app}-{stage}-{other}", f"{logs}:/aws/lambda/other-function"],
        ),
        "*": (["*"], []),
    }


#: The request each resource kind's samples stand for, where a statement's condition looks at it:
#: counting the feed. A request without one (an ordinary Query) meets no condition.
CONTEXTS: dict[str, dict[str, Any]] = {
    "feed-count": {"dynamodb:Select": "COUNT", "dynamodb:LeadingKeys": ["feed#"]},
}


def _pattern(arn_glob: str) -> re.Pattern[str]:
    """IAM's resource wildcards: ``*`` any run of characters, ``?`` any one."""
    return re.compile(
        "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in arn_glob) + r"\Z"
    )


def _as_list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _meets(condition: dict[str, dict[str, list[str]]], context: dict[str, Any]) -> bool:
    """IAM's ``StringEquals`` (one value) and ``ForAllValues:StringEquals`` (every value), the ones used."""
    for test, pairs in condition.items():
        for key, allowed in pairs.items():
            if test == "StringEquals":
                if context.get(key) not in allowed:
                    return False
            elif test == "ForAllValues:StringEquals":
                if not all(value in allowed for value in context.get(key, [])):
                    return False
            else:
                raise AssertionError(f"a condition this check cannot evaluate: {test}")
    return True


def allows(
    statements: list[dict[str, Any]], action: str, arn: str, context: dict[str, Any] | None = None
) -> bool:
    for statement in statements:
        if statement.get("Effect", "Allow") != "Allow":
            continue
        actions = _as_list(statement.get("Action", []))
        if not any(_pattern(a.lower()).match(action.lower()) for a in actions):
            continue
        if "Condition" in statement and not _meets(statement["Condition"], context or {}):
            continue
        if any(_pattern(r).match(arn) for r in _as_list(statement.get("Resource", []))):
            return True
    return False


def assert_function(
    statements: list[dict[str, Any]],
    function: str,
    kinds: dict[str, tuple[list[str], list[str]]],
    path: str,
    present: set[str] | None = None,
) -> None:
    """Granted operations allowed (neighbours denied); every other operation denied."""
    ops = [op for op in OPERATIONS if op.get("only", path) == path]
    granted = [
        op
        for op in ops
        if function in op["functions"]
        and (present is None or not op["resource"].startswith("function:") or op["resource"][9:] in present)
    ]
    allowed = {(op["action"], arn) for op in granted for arn in kinds[op["resource"]][0]}
    for op in granted:
        for arn in kinds[op["resource"]][0]:
            assert allows(statements, op["action"], arn, CONTEXTS.get(op["resource"])), (function, op, arn)
    for op in ops:
        allowed_samples, neighbours = kinds[op["resource"]]
        denied = neighbours if op in granted else allowed_samples + neighbours
        context = CONTEXTS.get(op["resource"])
        for arn in denied:
            if (op["action"], arn) not in allowed:
                assert not allows(statements, op["action"], arn, context), (function, op["action"], arn)


def assert_no_star_for_restricted(statements: list[dict[str, Any]]) -> None:
    for statement in statements:
        actions = [a.lower() for a in _as_list(statement.get("Action", []))]
        assert "*" not in actions, statement
        assert not any(a.endswith(":*") for a in actions), statement
        if any(a.startswith(RESTRICTED) for a in actions):
            assert "*" not in _as_list(statement.get("Resource", [])), statement


#: The denials the design calls out, held separately so they read as what they are.
MUST_DENY = [
    ("websocket_disconnect", "execute-api:ManageConnections", "connections:POST"),
    ("websocket_disconnect", "lambda:InvokeFunction", "function:fanout"),
    ("websocket_disconnect", "dynamodb:Query", "table"),
    ("websocket_connect", "dynamodb:Query", "table"),  # only a count of the feed (below)
    ("websocket_connect", "dynamodb:Query", "index"),
    ("websocket_connect", "execute-api:ManageConnections", "connections:POST"),
    ("websocket_connect", "lambda:InvokeFunction", "function:fanout"),
    ("deliver", "dynamodb:PutItem", "table"),
    ("deliver", "lambda:InvokeFunction", "function:fanout"),
    ("push", "lambda:InvokeFunction", "function:deliver"),
    ("push", "dynamodb:PutItem", "table"),
    ("fanout", "dynamodb:Query", "table"),
    ("websocket_message", "dynamodb:PutItem", "table"),
]


def assert_must_deny(statements_of: dict[str, list[dict[str, Any]]], kinds_of: Any) -> None:
    for function, action, kind in MUST_DENY:
        if function in statements_of:
            for arn in kinds_of(function)[kind][0]:
                assert not allows(statements_of[function], action, arn), (function, action, arn)
    for statements in statements_of.values():  # no function may invoke the public push
        assert not allows(
            statements, "lambda:InvokeFunction", "arn:aws:lambda:eu-west-1:1:function:ws-proxy-dev-push"
        )


# -- the list -------------------------------------------------------------------------------------


def test_every_operation_names_functions_of_the_app_and_every_function_has_some() -> None:
    assert FUNCTIONS == [
        "websocket_connect",
        "websocket_message",
        "websocket_disconnect",
        "deliver",
        "push",
        "fanout",
    ]
    for op in OPERATIONS:
        assert op["functions"], op
        assert set(op["functions"]) <= set(FUNCTIONS), op
        if op["call"] == "runtime":
            assert op["functions"] == FUNCTIONS, op  # logs and traces: every function
    for function in FUNCTIONS:
        reached = {op["action"] for op in iam.grants(function) if op["call"] != "runtime"}
        assert reached, function


def test_an_unknown_function_or_resource_kind_is_refused() -> None:
    with pytest.raises(iam.PolicyError):
        iam.grants("websocket_reconnect")
    with pytest.raises(iam.PolicyError):
        iam.terraform_documents(["deliver", "websocket_reconnect"])
    with pytest.raises(iam.PolicyError):
        iam.chalice_resource("queue", "deliver", app="a", stage="s", api_stage="x", table="t")


# -- chalice deploy ------------------------------------------------------------------------


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_each_chalice_deploy_policy_allows_its_functions_operations_only(
    stage: str, chalice_config: dict[str, Any]
) -> None:
    settings = chalice_config["stages"][stage]
    table = settings["environment_variables"]["CONNECTIONS_TABLE"]
    app = chalice_config["app_name"]
    statements_of = {}
    for function in FUNCTIONS:
        policy_file = settings["lambda_functions"][function]["iam_policy_file"]
        assert policy_file == f"policy-{stage}-{function}.json"
        statements = json.loads((ROOT / ".chalice" / policy_file).read_text())["Statement"]
        kinds = samples(app, stage, settings["api_gateway_stage"], table, function)
        assert_function(statements, function, kinds, "chalice deploy")
        assert_no_star_for_restricted(statements)
        statements_of[function] = statements
    assert_must_deny(statements_of, lambda f: samples(app, stage, settings["api_gateway_stage"], table, f))


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_chalice_resolves_each_functions_own_policy_file_the_websocket_handlers_included(
    stage: str, chalice_config: dict[str, Any]
) -> None:
    # chalice scopes its configuration per function (deploy/appgraph.py _create_lambda_model), and
    # names the WebSocket handlers websocket_connect / websocket_message / websocket_disconnect.
    for function in FUNCTIONS:
        config = ChaliceConfig(chalice_stage=stage, function_name=function, config_from_disk=chalice_config)
        assert config.iam_policy_file == f"policy-{stage}-{function}.json"
        assert config.autogen_policy is False
    # No stage-wide file: a function added without its own policy fails to package instead of
    # silently getting another function's rights.
    assert "iam_policy_file" not in chalice_config["stages"][stage]
    assert not (ROOT / ".chalice" / f"policy-{stage}.json").exists()


def test_the_policy_files_are_generated_from_the_list(tmp_path: Path) -> None:
    assert iam.stale_files() == []
    copy = tmp_path / ".chalice"
    shutil.copytree(ROOT / ".chalice", copy)
    target = copy / "policy-dev-websocket_disconnect.json"
    policy = json.loads(target.read_text())
    policy["Statement"][0]["Action"].append("execute-api:ManageConnections")
    target.write_text(json.dumps(policy, indent=2) + "\n")
    (copy / "policy-prod-fanout.json").unlink()
    assert sorted(iam.stale_files(copy)) == [
        "policy-dev-websocket_disconnect.json",
        "policy-prod-fanout.json",
    ]
    assert sorted(iam.write_files(copy)) == [
        "policy-dev-websocket_disconnect.json",
        "policy-prod-fanout.json",
    ]
    assert iam.stale_files(copy) == []


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_chalice_deploy_uses_the_policy_files_not_a_generated_one(
    stage: str, chalice_config: dict[str, Any]
) -> None:
    settings = {**chalice_config, **chalice_config["stages"][stage]}
    assert settings["autogen_policy"] is False
    assert settings.get("xray") is True  # the policies' X-Ray statement is for this
    variables = settings["environment_variables"]
    assert variables["DELIVER_FUNCTION_NAME"] == f"{chalice_config['app_name']}-{stage}-deliver"
    assert settings["api_gateway_stage"] == "development"


def test_the_samples_catch_an_over_broad_policy() -> None:
    kinds = samples("ws-proxy", "dev", "development", "ws-proxy-dev-websocket-connections", "deliver")
    broad = [{"Effect": "Allow", "Action": "dynamodb:*", "Resource": "arn:aws:dynamodb:*:*:table/*"}]
    with pytest.raises(AssertionError):
        assert_function(broad, "deliver", kinds, "chalice deploy")
    shared = json.loads((ROOT / ".chalice" / "policy-dev-websocket_message.json").read_text())["Statement"]
    with pytest.raises(AssertionError):  # message's rights are too many for disconnect
        assert_function(shared, "websocket_disconnect", kinds, "chalice deploy")
    with pytest.raises(AssertionError):
        assert_no_star_for_restricted([{"Action": ["lambda:InvokeFunction"], "Resource": "*"}])


# -- Terraform -------------------------------------------------------------------------------


def sample_values(app: str, stage: str, functions: list[str]) -> dict[str, str]:
    """What the references in the policy documents evaluate to, for the samples above."""
    where = f"{REGION}:{ACCOUNT}"
    values = {
        "aws_dynamodb_table.connections.arn": f"arn:aws:dynamodb:{where}:table/{app}-{stage}-{TABLE_SUFFIX}",
        "aws_apigatewayv2_api.websocket_api.execution_arn": f"arn:aws:execute-api:{where}:{API_ID}",
        "var.websocket_stage_name": "development",
        "aws_sqs_queue.async_dlq.arn": f"arn:aws:sqs:{where}:{app}-{stage}-websocket-api-async-dlq",
    }
    for name in functions:
        values[f"aws_lambda_function.{name}.arn"] = f"arn:aws:lambda:{where}:function:{app}-{stage}-{name}"
        values[f'aws_cloudwatch_log_group.function["{name}"].arn'] = (
            f"arn:aws:logs:{where}:log-group:/aws/lambda/{app}-{stage}-{name}"
        )
    return values


def evaluate(resources: list[str], values: dict[str, str]) -> list[str]:
    """The ARNs a statement's ``resources`` yield, with the sample values."""
    assert isinstance(resources, list), resources
    out = []
    for item in resources:
        rendered = re.sub(r"\$\{([^}]+)\}", lambda m: values[m.group(1)], item)
        assert "${" not in rendered, item
        out.append(rendered)
    return out


def statements_from(document: dict[str, Any], values: dict[str, str]) -> list[dict[str, Any]]:
    statements = []
    for s in document["statement"]:
        statement: dict[str, Any] = {
            "Effect": s.get("effect", "Allow"),
            "Action": s["actions"],
            "Resource": evaluate(s["resources"], values),
        }
        for block in s.get("condition", []):
            statement.setdefault("Condition", {}).setdefault(block["test"], {})[block["variable"]] = block[
                "values"
            ]
        statements.append(statement)
    return statements


def check_terraform(documents: dict[str, Any], functions: list[str]) -> None:
    values = sample_values("ws-proxy", "dev", functions)
    statements_of = {}
    for function in functions:
        statements = statements_from(documents[function], values)
        kinds = samples("ws-proxy", "dev", "development", "ws-proxy-dev-websocket-connections", function)
        assert_function(statements, function, kinds, "terraform", present=set(functions))
        assert_no_star_for_restricted(statements)
        # Terraform creates the log groups, so the functions may not.
        assert not any("logs:CreateLogGroup" in s["Action"] for s in statements)
        statements_of[function] = statements
    assert_must_deny(
        statements_of,
        lambda f: samples("ws-proxy", "dev", "development", "ws-proxy-dev-websocket-connections", f),
    )


def test_each_terraform_policy_allows_its_functions_operations_only(tf: Config) -> None:
    functions = sorted(tf.resources("aws_lambda_function"))
    check_terraform(tf.data("aws_iam_policy_document"), functions)


def test_with_all_six_functions_each_terraform_policy_is_its_own() -> None:
    documents = iam.terraform_documents(FUNCTIONS)
    check_terraform(documents, FUNCTIONS)
    fanout = {s["sid"]: s for s in documents["fanout"]["statement"]}
    assert fanout["InvokeFanout"]["resources"] == ["${aws_lambda_function.fanout.arn}"]
    assert fanout["ConnectionsTable"]["actions"] == [
        "dynamodb:DeleteItem",
        "dynamodb:BatchGetItem",
        "dynamodb:BatchWriteItem",
    ]


def test_a_grant_on_a_function_missing_from_the_export_is_dropped() -> None:
    without_fanout = [f for f in FUNCTIONS if f != "fanout"]
    documents = iam.terraform_documents(without_fanout)
    assert "fanout" not in documents
    for function in ("websocket_message", "push"):
        sids = {s["sid"] for s in documents[function]["statement"]}
        assert "InvokeFanout" not in sids
        assert "ManageConnections" in sids
    assert "aws_lambda_function.fanout" not in json.dumps(documents)


def test_every_role_gets_its_own_policy_and_nothing_else(tf: Config) -> None:
    roles = tf.resources("aws_iam_role")
    policies = tf.resources("aws_iam_role_policy")
    for name in tf.resources("aws_lambda_function"):
        chalice_policy = policies[f"{name}_role"]
        assert chalice_policy["role"] == f"${{aws_iam_role.{name}_role.id}}"
        assert chalice_policy["policy"] == f"${{data.aws_iam_policy_document.{name}.json}}"
        assert f"{name}_role" in roles
    others = set(policies) - {f"{n}_role" for n in tf.resources("aws_lambda_function")}
    assert {p["policy"] for n, p in policies.items() if n in others} == {
        "${data.aws_iam_policy_document.async_dlq_send.json}"
    }
    assert not tf.resources("aws_iam_role_policy_attachment").keys() - {"api_gateway_cloudwatch"}


def test_no_terraform_policy_document_grants_star_for_restricted_actions(tf: Config) -> None:
    values = sample_values("ws-proxy", "dev", sorted(tf.resources("aws_lambda_function")))
    for name, document in tf.data("aws_iam_policy_document").items():
        if name == "api_gateway_assume":
            continue
        assert_no_star_for_restricted(statements_from(document, values))
    for policy in tf.resources("aws_iam_role_policy").values():  # any literal JSON left
        if policy["policy"].startswith("{"):
            assert_no_star_for_restricted(json.loads(policy["policy"])["Statement"])


@pytest.mark.parametrize("path", ["chalice deploy", "terraform"])
def test_connect_may_count_the_feed_and_read_nothing(path: str) -> None:
    table = "ws-proxy-dev-websocket-connections"
    if path == "terraform":
        document = iam.terraform_documents(FUNCTIONS)["websocket_connect"]
        statements = statements_from(document, sample_values("ws-proxy", "dev", FUNCTIONS))
    else:
        statements = json.loads((ROOT / ".chalice" / "policy-dev-websocket_connect.json").read_text())[
            "Statement"
        ]
    arn = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{table}"
    count = {"dynamodb:Select": "COUNT", "dynamodb:LeadingKeys": ["feed#"]}
    assert allows(statements, "dynamodb:Query", arn, count)
    for request in (
        {**count, "dynamodb:Select": "ALL_ATTRIBUTES"},
        {**count, "dynamodb:Select": "SPECIFIC_ATTRIBUTES"},
        {"dynamodb:LeadingKeys": ["feed#"]},
        {**count, "dynamodb:LeadingKeys": ["booking#1"]},
        {**count, "dynamodb:LeadingKeys": ["feed#", "user#alice"]},
    ):
        assert not allows(statements, "dynamodb:Query", arn, request), request
