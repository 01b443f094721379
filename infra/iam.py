"""One IAM policy per function, from infra/aws_operations.json (the single list of what the code calls).

    python -m infra.iam --write     regenerate .chalice/policy-<stage>-<function>.json
    python -m infra.iam --check     fail if any of them differs from the list (tests/infra does this)

Each operation in the list names the functions whose handlers reach it; a function's
policy grants exactly those operations, grouped by resource:

- for ``chalice deploy`` (``.chalice/policy-<stage>-<function>.json``, wired per function
  through ``lambda_functions.<function>.iam_policy_file`` in .chalice/config.json; chalice
  scopes its configuration per function, the WebSocket handlers included, as
  ``websocket_connect``, ``websocket_message`` and ``websocket_disconnect``): region,
  account and API id are wildcards, as chalice deploy cannot fill them in;
- for the Terraform export (``aws_iam_policy_document.<function>`` in ``iam.tf.json``,
  written by infra/build.py): every resource is a reference, and a function that is
  not in the export is skipped, as is a grant on such a function.

Resource kinds (``resource`` in the list): ``table``, ``feed-count`` (the table, for a
Query that counts the feed's partition and reads no item: ``dynamodb:Select`` COUNT and
``dynamodb:LeadingKeys`` the feed's key), ``index`` (the connection_id-index
GSI), ``connections:POST`` (POST @connections/* of this API stage), ``function:<name>``,
``function-logs`` (the function's own log streams), ``function-log-groups`` (its own
log group; chalice deploy only: Terraform creates the groups) and ``*`` (X-Ray, which
has no resource-level permissions).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from chalicelib.routes import channel_key
from chalicelib.schema import CONNECTION_INDEX

ROOT = Path(__file__).resolve().parent.parent
OPERATIONS_FILE = Path(__file__).resolve().parent / "aws_operations.json"
CHALICE_DIR = ROOT / ".chalice"

#: Statement ids by resource kind (function:<name> gets ``Invoke<Name>``).
SIDS = {
    "table": "ConnectionsTable",
    "feed-count": "CountFeed",
    "index": "ConnectionsIndex",
    "connections:POST": "ManageConnections",
    "function-logs": "FunctionLogs",
    "function-log-groups": "FunctionLogGroup",
    "*": "XRayTraces",
}


#: The conditions a resource kind's statement carries (IAM's JSON form).
CONDITIONS: dict[str, dict[str, dict[str, list[str]]]] = {
    "feed-count": {
        "StringEquals": {"dynamodb:Select": ["COUNT"]},
        "ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [channel_key("feed")]},
    },
}


class PolicyError(Exception):
    """The operations list names something this module cannot express."""


def load(path: Path = OPERATIONS_FILE) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def function_names(doc: dict[str, Any] | None = None) -> list[str]:
    return list((doc or load())["functions"]["names"])


def grants(function: str, doc: dict[str, Any] | None = None, path: str = "terraform") -> list[dict[str, Any]]:
    """The operations granted to ``function`` on a deploy path (``terraform`` or ``chalice deploy``)."""
    doc = doc or load()
    if function not in function_names(doc):
        raise PolicyError(f"{function!r} is not in the list's functions")
    return [op for op in doc["operations"] if function in op["functions"] and op.get("only", path) == path]


def _by_resource(operations: list[dict[str, Any]]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for op in operations:
        actions = grouped.setdefault(op["resource"], [])
        if op["action"] not in actions:
            actions.append(op["action"])
    return grouped


def _sid(kind: str) -> str:
    if kind.startswith("function:"):
        return "Invoke" + "".join(part.capitalize() for part in kind.split(":", 1)[1].split("_"))
    if kind not in SIDS:
        raise PolicyError(f"unknown resource kind {kind!r}")
    return SIDS[kind]


# -- chalice deploy ------------------------------------------------------------------------------


def chalice_resource(kind: str, function: str, *, app: str, stage: str, api_stage: str, table: str) -> str:
    prefix = f"{app}-{stage}"
    if kind in ("table", "feed-count"):
        return f"arn:aws:dynamodb:*:*:table/{table}"
    if kind == "index":
        return f"arn:aws:dynamodb:*:*:table/{table}/index/{CONNECTION_INDEX}"
    if kind == "connections:POST":
        return f"arn:aws:execute-api:*:*:*/{api_stage}/POST/@connections/*"
    if kind.startswith("function:"):
        return f"arn:aws:lambda:*:*:function:{prefix}-{kind.split(':', 1)[1]}"
    if kind == "function-logs":
        return f"arn:aws:logs:*:*:log-group:/aws/lambda/{prefix}-{function}:log-stream:*"
    if kind == "function-log-groups":
        return f"arn:aws:logs:*:*:log-group:/aws/lambda/{prefix}-{function}"
    if kind == "*":
        return "*"
    raise PolicyError(f"unknown resource kind {kind!r}")


def chalice_policy(function: str, *, app: str, stage: str, api_stage: str, table: str) -> dict[str, Any]:
    statements = []
    for kind, actions in _by_resource(grants(function, path="chalice deploy")).items():
        resource = chalice_resource(kind, function, app=app, stage=stage, api_stage=api_stage, table=table)
        statement: dict[str, Any] = {
            "Sid": _sid(kind),
            "Effect": "Allow",
            "Action": actions,
            "Resource": resource,
        }
        if kind in CONDITIONS:
            statement["Condition"] = CONDITIONS[kind]
        statements.append(statement)
    return {"Version": "2012-10-17", "Statement": statements}


def policy_file_name(stage: str, function: str) -> str:
    return f"policy-{stage}-{function}.json"


def chalice_files(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every per-function policy file, by name, for every stage of .chalice/config.json."""
    files: dict[str, dict[str, Any]] = {}
    for stage, settings in config["stages"].items():
        variables = {**config.get("environment_variables", {}), **settings.get("environment_variables", {})}
        for function in function_names():
            files[policy_file_name(stage, function)] = chalice_policy(
                function,
                app=config["app_name"],
                stage=stage,
                api_stage=settings.get("api_gateway_stage", config.get("api_gateway_stage", "api")),
                table=variables["CONNECTIONS_TABLE"],
            )
    return files


# -- Terraform --------------------------------------------------------------------------------


def terraform_resources(kind: str, function: str, present: set[str]) -> list[str] | str:
    if kind in ("table", "feed-count"):
        return ["${aws_dynamodb_table.connections.arn}"]
    if kind == "index":
        return [f"${{aws_dynamodb_table.connections.arn}}/index/{CONNECTION_INDEX}"]
    if kind == "connections:POST":
        return [
            "${aws_apigatewayv2_api.websocket_api.execution_arn}/${var.websocket_stage_name}/POST/@connections/*"
        ]
    if kind.startswith("function:"):
        target = kind.split(":", 1)[1]
        return [f"${{aws_lambda_function.{target}.arn}}"] if target in present else []
    if kind == "function-logs":
        return [f'${{aws_cloudwatch_log_group.function["{function}"].arn}}:log-stream:*']
    if kind == "*":
        return ["*"]
    raise PolicyError(f"unknown resource kind {kind!r} (or not for the Terraform export)")


def terraform_documents(functions: list[str]) -> dict[str, Any]:
    """``aws_iam_policy_document.<function>`` for each function of the export."""
    present = set(functions)
    unknown = present - set(function_names())
    if unknown:
        raise PolicyError(
            f"functions without a list of operations: {sorted(unknown)} (infra/aws_operations.json)"
        )
    documents = {}
    for function in sorted(present):
        statements = []
        for kind, actions in _by_resource(grants(function)).items():
            resources = terraform_resources(kind, function, present)
            if resources:
                statement: dict[str, Any] = {"sid": _sid(kind), "actions": actions, "resources": resources}
                if kind in CONDITIONS:
                    statement["condition"] = [
                        {"test": test, "variable": variable, "values": values}
                        for test, pairs in CONDITIONS[kind].items()
                        for variable, values in pairs.items()
                    ]
                statements.append(statement)
        documents[function] = {"statement": statements}
    return documents


def iam_file(functions: list[str]) -> dict[str, Any]:
    return {
        "//": (
            "Generated by infra/build.py (infra/iam.py) from infra/aws_operations.json; do not edit. One "
            "policy per function: only the operations its handler reaches, on this deployment's resources. "
            'X-Ray\'s two actions have no resource-level permissions, hence their "*". The dead-letter '
            "queue's SendMessage is in infra/dlq.tf.json, for the asynchronously invoked functions."
        ),
        "data": {"aws_iam_policy_document": terraform_documents(functions)},
    }


# -- the command ------------------------------------------------------------------------------------


def _render(policy: dict[str, Any]) -> str:
    return json.dumps(policy, indent=2) + "\n"


def stale_files(directory: Path = CHALICE_DIR) -> list[str]:
    config = json.loads((directory / "config.json").read_text())
    out = []
    for name, policy in chalice_files(config).items():
        path = directory / name
        if not path.exists() or path.read_text() != _render(policy):
            out.append(name)
    return out


def write_files(directory: Path = CHALICE_DIR) -> list[str]:
    config = json.loads((directory / "config.json").read_text())
    written = []
    for name, policy in chalice_files(config).items():
        path = directory / name
        if not path.exists() or path.read_text() != _render(policy):
            path.write_text(_render(policy))
            written.append(name)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument(
        "--write", action="store_true", help="regenerate .chalice/policy-<stage>-<function>.json"
    )
    action.add_argument("--check", action="store_true", help="fail if a policy file differs from the list")
    args = parser.parse_args(argv)
    if args.write:
        written = write_files()
        print(f"wrote {len(written)} file(s): {', '.join(written) or 'all up to date'}")
        return 0
    stale = stale_files()
    if stale:
        print(f"out of date (run python -m infra.iam --write): {', '.join(stale)}", file=sys.stderr)
        return 1
    print("every policy file matches infra/aws_operations.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
