"""Build ``build/terraform/``: Chalice's Terraform export, completed into one configuration.

    python -m infra.build --stage dev --out build/terraform      (what ``make package`` runs)

Steps:

1. ``chalice package --stage <stage> --pkg-format terraform <out>`` writes
   ``chalice.tf.json`` and ``deployment.zip``.
2. The files under ``infra/`` are copied beside it as they are: variables,
   logs, the dead-letter queue, outputs, and ``versions.tf`` (HCL, see below).
3. Four files are generated: ``connections_table.tf.json`` from
   ``chalicelib.schema.create_table_request`` (the one table definition the
   code and the local stack use too), ``functions.tf.json``, locals that
   list Chalice's functions so logs and outputs cover every one of them, and
   ``monitoring.tf.json`` (infra/monitoring.py): CloudWatch alarms and a
   dashboard for every function, the table, the queue and the stage, and
   ``iam.tf.json`` (infra/iam.py): one policy document per function, from
   infra/aws_operations.json.
4. ``chalice.tf.json`` is edited, and only where a reference must be wired
   in or where Chalice emits something current Terraform rejects. Every edit
   is one function below, named for what it does. Settings that checkov must
   see (X-Ray, dead-letter queues, stage access logs) are written into the
   resources themselves: checkov reads each file on its own and ignores
   ``*_override.tf.json`` merges.

Chalice's resource names (``aws_lambda_function.<name>``,
``aws_iam_role.<name>_role``, ``aws_apigatewayv2_stage.websocket_api_stage``,
...) are kept, so the files under ``infra/`` can reference them.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from chalicelib.schema import TTL_ATTRIBUTE, create_table_request
from infra.iam import iam_file
from infra.monitoring import monitoring_file

ROOT = Path(__file__).resolve().parent.parent
INFRA = Path(__file__).resolve().parent
CHALICE_FILE = "chalice.tf.json"

#: infra/ files copied into the export unchanged.
STATIC_FILES = (
    "versions.tf",
    "variables.tf.json",
    "logs.tf.json",
    "dlq.tf.json",
    "outputs.tf.json",
)

#: Functions that are invoked asynchronously (InvocationType=Event): they get a dead-letter queue.
#: ``fanout`` (large fan-outs and later attempts) gets one as soon as app.py defines it.
ASYNC_FUNCTIONS = ("deliver", "push", "fanout")
#: Of those, the ones the export cannot be without.
REQUIRED_ASYNC_FUNCTIONS = ("deliver", "push")

STAGE_RESOURCE = "websocket_api_stage"
API_RESOURCE = "websocket_api"

#: Every function's environment, by reference (docs/operations.md, "Settings"). Replaces the literal values
#: .chalice/config.json holds for ``chalice deploy``.
COMMON_ENVIRONMENT = {
    "BACKEND_URL": "${var.websocket_backend_url}",
    "CONNECTIONS_TABLE": "${aws_dynamodb_table.connections.name}",
    "CONNECTION_TTL_SECONDS": "${var.connection_ttl_seconds}",
    "BACKEND_TIMEOUT_SECONDS": "${var.backend_timeout_seconds}",
    "FANOUT_WORKERS": "${var.fanout_workers}",
    "PUSH_CHUNK_SIZE": "${var.push_chunk_size}",
    "ALLOWED_ORIGINS": '${join(",", var.allowed_origins)}',
}

ENDPOINT_REFERENCE = (
    '${replace(aws_apigatewayv2_api.websocket_api.api_endpoint, "wss://", "https://")}'
    "/${var.websocket_stage_name}"
)
#: What only some functions need. ``fanout`` gets no FANOUT_FUNCTION_NAME: its own name would
#: be a reference to itself (a Terraform cycle); the code falls back to the Lambda context's
#: function_name. API_GATEWAY_ENDPOINT is built from the API and the stage *name*, not from
#: the stage resource: the stage depends on the routes, the routes on the message handler,
#: and the message handler on ``push`` (another cycle).
FUNCTION_ENVIRONMENT = {
    "websocket_connect": {
        "DELIVER_FUNCTION_NAME": "${aws_lambda_function.deliver.function_name}",
        "MAX_FEED_CONNECTIONS": "${var.max_feed_connections}",
    },
    "websocket_disconnect": {"DELIVER_FUNCTION_NAME": "${aws_lambda_function.deliver.function_name}"},
    "websocket_message": {"FANOUT_FUNCTION_NAME": "${aws_lambda_function.fanout.function_name}"},
    "push": {
        "FANOUT_FUNCTION_NAME": "${aws_lambda_function.fanout.function_name}",
        "API_GATEWAY_ENDPOINT": ENDPOINT_REFERENCE,
    },
    "deliver": {"API_GATEWAY_ENDPOINT": ENDPOINT_REFERENCE},
    "fanout": {"API_GATEWAY_ENDPOINT": ENDPOINT_REFERENCE},
}

#: Chalice's literal copies of the names above; dropped where a function does not use them.
LITERAL_ONLY_VARIABLES = (
    "DELIVER_FUNCTION_NAME",
    "PUSH_FUNCTION_NAME",
    "FANOUT_FUNCTION_NAME",
    "API_GATEWAY_ENDPOINT",
)

_REFERENCE = re.compile(r"\bdata\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)")


class BuildError(Exception):
    """The Chalice output is not what this script knows how to complete."""


# -- 1. chalice package ------------------------------------------------------


def chalice_package(out: Path, stage: str) -> None:
    """Run ``chalice package`` into an empty ``out``."""
    if out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-c",
        "import sys; from chalice.cli import main; sys.exit(main())",
        "--project-dir",
        str(ROOT),
        "package",
        "--stage",
        stage,
        "--pkg-format",
        "terraform",
        str(out),
    ]
    subprocess.run(command, check=True, cwd=ROOT)


# -- 3. generated files ------------------------------------------------------


def table_resource(request: dict[str, Any]) -> dict[str, Any]:
    """The ``aws_dynamodb_table`` for a boto3 ``create_table`` request (the schema's)."""
    if request.get("BillingMode") != "PAY_PER_REQUEST":
        raise BuildError("the table generator supports PAY_PER_REQUEST tables only")
    keys = {k["KeyType"]: k["AttributeName"] for k in request["KeySchema"]}
    table: dict[str, Any] = {
        "name": "${local.connections_table_name}",
        "billing_mode": "PAY_PER_REQUEST",
        "hash_key": keys["HASH"],
        "range_key": keys["RANGE"],
        "attribute": [
            {"name": a["AttributeName"], "type": a["AttributeType"]} for a in request["AttributeDefinitions"]
        ],
        "global_secondary_index": [],
        "ttl": {"attribute_name": TTL_ATTRIBUTE, "enabled": True},
        "server_side_encryption": {"enabled": True, "kms_key_arn": "${var.table_kms_key_arn}"},
        "point_in_time_recovery": {"enabled": "${var.table_point_in_time_recovery}"},
        "deletion_protection_enabled": "${var.table_deletion_protection}",
        "tags": "${var.tags}",
    }
    for index in request.get("GlobalSecondaryIndexes", []):
        index_keys = {k["KeyType"]: k["AttributeName"] for k in index["KeySchema"]}
        gsi: dict[str, Any] = {
            "name": index["IndexName"],
            "hash_key": index_keys["HASH"],
            "projection_type": index["Projection"]["ProjectionType"],
        }
        if "RANGE" in index_keys:
            gsi["range_key"] = index_keys["RANGE"]
        if index["Projection"].get("NonKeyAttributes"):
            gsi["non_key_attributes"] = index["Projection"]["NonKeyAttributes"]
        table["global_secondary_index"].append(gsi)
    return table


def table_file(app_name: str, stage: str) -> dict[str, Any]:
    """``connections_table.tf.json``: the table, and its default name for this stage."""
    table = table_resource(create_table_request("${local.connections_table_name}"))
    default_name = f"{app_name}-{stage}-websocket-connections"
    return {
        "//": "Generated by infra/build.py from chalicelib.schema.create_table_request; do not edit.",
        "locals": {
            "connections_table_name": f'${{coalesce(var.connections_table_name, "{default_name}")}}',
        },
        "resource": {"aws_dynamodb_table": {"connections": table}},
    }


def functions_file(functions: list[str]) -> dict[str, Any]:
    """``functions.tf.json``: every function Chalice generated, by reference."""
    return {
        "//": "Generated by infra/build.py from the functions in chalice.tf.json; do not edit.",
        "locals": {
            "function_names": {name: f"${{aws_lambda_function.{name}.function_name}}" for name in functions},
            "function_arns": {name: f"${{aws_lambda_function.{name}.arn}}" for name in functions},
        },
    }


# -- 4. edits to chalice.tf.json -----------------------------------------------


def move_version_constraints(doc: dict[str, Any]) -> None:
    """Drop Chalice's ``terraform`` block (``< 1.4.0``, AWS provider ``< 5``, the null provider).

    infra/versions.tf replaces it, in HCL: checkov's terraform_json parser cannot read a
    ``terraform`` block written in JSON and would then report zero checks.
    """
    doc.pop("terraform", None)


def drop_null_data_source(doc: dict[str, Any]) -> None:
    """Drop ``data.null_data_source.chalice``: deprecated, unused, and it needs the null provider."""
    data = doc.get("data", {})
    data.pop("null_data_source", None)


def wire_region_free_arns(doc: dict[str, Any]) -> None:
    """Build ARNs from resource attributes, not ``data.aws_region...name``.

    AWS provider 6 deprecates ``data.aws_region.name`` (in favour of ``region``, which
    provider 5 lacks). The integration URI is exactly the function's ``invoke_arn``;
    the permission's source is the API's ``execution_arn``; the endpoint URL is the
    stage's ``invoke_url`` (with the stage name wired to the variable below).
    """
    resources = doc["resource"]
    for integration in resources.get("aws_apigatewayv2_integration", {}).values():
        uri = integration["integration_uri"]
        match = re.search(r"aws_lambda_function\.([A-Za-z0-9_-]+)\.function_name", uri)
        if not match:
            raise BuildError(f"unexpected integration_uri {uri!r}")
        integration["integration_uri"] = f"${{aws_lambda_function.{match.group(1)}.invoke_arn}}"
    for permission in resources.get("aws_lambda_permission", {}).values():
        if permission.get("principal") == "apigateway.amazonaws.com":
            permission["source_arn"] = f"${{aws_apigatewayv2_api.{API_RESOURCE}.execution_arn}}/*"
    for output in doc.get("output", {}).values():
        if "data.aws_region" in str(output.get("value", "")):
            output["value"] = f"${{aws_apigatewayv2_stage.{STAGE_RESOURCE}.invoke_url}}/"


def drop_unused_data_sources(doc: dict[str, Any], additions: list[dict[str, Any]]) -> None:
    """Drop Chalice's data sources that nothing references any more (no needless API calls)."""
    texts = [json.dumps(part) for part in (doc, *additions)]
    used = {match.groups() for text in texts for match in _REFERENCE.finditer(text)}
    data = doc.get("data", {})
    for kind in list(data):
        for name in list(data[kind]):
            if (kind, name) not in used:
                del data[kind][name]
        if not data[kind]:
            del data[kind]
    if not data:
        doc.pop("data", None)


def wire_environment(doc: dict[str, Any]) -> None:
    """Every function's environment by reference: table, backend URL, function names, endpoint."""
    for name, function in doc["resource"]["aws_lambda_function"].items():
        variables = function.setdefault("environment", {}).setdefault("variables", {})
        for key in LITERAL_ONLY_VARIABLES:
            variables.pop(key, None)
        variables.update(COMMON_ENVIRONMENT)
        variables.update(FUNCTION_ENVIRONMENT.get(name, {}))


def wire_dead_letter_queues(doc: dict[str, Any]) -> None:
    """Failed asynchronous invocations go to the encrypted DLQ (dlq.tf.json).

    Each asynchronously invoked function gets ``dead_letter_config`` and a role policy
    allowing ``sqs:SendMessage`` on that queue (Lambda sends with the function's role).
    """
    functions = doc["resource"]["aws_lambda_function"]
    role_policies = doc["resource"].setdefault("aws_iam_role_policy", {})
    for name in ASYNC_FUNCTIONS:
        if name not in functions:
            if name in REQUIRED_ASYNC_FUNCTIONS:
                raise BuildError(f"Chalice generated no function {name!r}")
            continue
        functions[name]["dead_letter_config"] = {"target_arn": "${aws_sqs_queue.async_dlq.arn}"}
        role_policies[f"{name}_dlq"] = {
            "name": f"{name}_dead_letter_queue",
            "role": f"${{aws_iam_role.{name}_role.id}}",
            "policy": "${data.aws_iam_policy_document.async_dlq_send.json}",
        }
        # Lambda checks at create time that the role may send to the queue.
        functions[name]["depends_on"] = [f"aws_iam_role_policy.{name}_dlq"]


def require_tracing(doc: dict[str, Any]) -> None:
    """X-Ray comes from ``"xray": true`` in .chalice/config.json; fail if it is lost."""
    for name, function in doc["resource"]["aws_lambda_function"].items():
        if function.get("tracing_config", {}).get("mode") != "Active":
            raise BuildError(f"function {name!r} lacks active X-Ray tracing (xray in .chalice/config.json)")


def wire_iam(doc: dict[str, Any]) -> None:
    """Replace each role's policy (its chalice-deploy policy file) with its own document in iam.tf.json.

    .chalice/policy-<stage>-<function>.json must use wildcards for what ``chalice deploy``
    cannot know (account, region, API id); here every resource is a reference instead.
    Both come from infra/aws_operations.json (infra/iam.py).
    """
    policies = doc["resource"]["aws_iam_role_policy"]
    for name in doc["resource"]["aws_lambda_function"]:
        policies[f"{name}_role"]["policy"] = f"${{data.aws_iam_policy_document.{name}.json}}"


def wire_stage(doc: dict[str, Any]) -> None:
    """The stage: name from the variable, access logs, default route throttling.

    The access log format (infra/logs.tf.json) holds no query string: it carries tokens.
    Data tracing stays off for the same reason (it would log whole frames).
    """
    stage = doc["resource"]["aws_apigatewayv2_stage"][STAGE_RESOURCE]
    stage["name"] = "${var.websocket_stage_name}"
    stage["access_log_settings"] = {
        "destination_arn": "${aws_cloudwatch_log_group.websocket_access.arn}",
        "format": "${jsonencode(local.websocket_access_log_format)}",
    }
    stage["default_route_settings"] = {
        "throttling_burst_limit": "${var.websocket_throttling_burst_limit}",
        "throttling_rate_limit": "${var.websocket_throttling_rate_limit}",
        "logging_level": "ERROR",
        "data_trace_enabled": False,
        "detailed_metrics_enabled": False,
    }
    stage["tags"] = "${var.tags}"
    # API Gateway refuses stage logging until the account's CloudWatch role is set, and
    # creates the execution log group itself (without retention) unless it exists.
    stage["depends_on"] = [
        "aws_api_gateway_account.cloudwatch",
        "aws_cloudwatch_log_group.websocket_execution",
    ]


# -- the whole build -----------------------------------------------------------


def _load(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def _write(path: Path, doc: dict[str, Any]) -> None:
    path.write_text(json.dumps(doc, indent=2) + "\n")


def complete(out: Path, stage: str) -> None:
    """Complete the Chalice export in ``out`` into one Terraform configuration."""
    chalice_path = out / CHALICE_FILE
    doc = _load(chalice_path)
    app_name = _load(ROOT / ".chalice" / "config.json")["app_name"]

    for name in STATIC_FILES:
        shutil.copyfile(INFRA / name, out / name)
    functions = sorted(doc["resource"]["aws_lambda_function"])
    generated = {
        "connections_table.tf.json": table_file(app_name, stage),
        "functions.tf.json": functions_file(functions),
        "monitoring.tf.json": monitoring_file(app_name, stage, functions),
        "iam.tf.json": iam_file(functions),
    }
    for name, content in generated.items():
        _write(out / name, content)

    move_version_constraints(doc)
    drop_null_data_source(doc)
    wire_region_free_arns(doc)
    wire_environment(doc)
    wire_dead_letter_queues(doc)
    require_tracing(doc)
    wire_iam(doc)
    wire_stage(doc)
    additions = [_load(out / name) for name in STATIC_FILES if name.endswith(".json")]
    drop_unused_data_sources(doc, additions + list(generated.values()))
    if not doc.get("locals"):
        doc.pop("locals", None)  # Chalice writes an empty one
    _write(chalice_path, doc)


def build(out: Path, stage: str = "dev") -> Path:
    chalice_package(out, stage)
    complete(out, stage)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--stage", default="dev", help="the chalice stage (.chalice/config.json)")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "terraform")
    args = parser.parse_args(argv)
    out = build(args.out, args.stage)
    print(f"Terraform configuration for stage {args.stage!r} in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
