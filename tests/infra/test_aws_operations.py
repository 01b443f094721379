"""infra/aws_operations.json keeps up with the AWS calls in the deployed code.

A static scan of ``app.py`` and ``chalicelib/``:

- AWS clients: every ``boto3.client("<service>")``, and every thin client of
  ``chalicelib/aws.py`` built (``aws.DynamoDB(...)``, ``aws.LambdaClient(...)``, which
  take botocore's operation names), names a service the list knows; every attribute
  call or string literal that names one of those services' API operations,
  by botocore's method name, the API's own or the operation's own REST path
  (``put_item`` or ``PutItem``, ``query``,
  ``/2015-03-31/functions/{FunctionName}/invocations``...), must be in the list
  (by method name), or listed as not made at runtime. String literals count because
  the registry dispatches by name (``self._call("PutItem", ...)``) and the Lambda
  client addresses ``Invoke`` by its path.
- signed HTTP: in a module that signs requests with SigV4 (it imports
  ``botocore.auth``, or its code, not its comments, holds the algorithm's name
  ``AWS4-HMAC-SHA256`` in a string), every HTTP method literal (``"POST"``,
  ``"DELETE"``) must be in the list as an ``execute-api`` call, and the module
  must address ``@connections``.
- the other way round: every call the list names is still found in the code.

What it cannot see: which object a method is called on (a method that happens
to share an operation's name counts, which errs on the safe side); whether a
call is reachable from a handler; names computed at runtime; AWS calls made
inside third-party packages (Powertools writes metrics and logs to stdout, which
the Lambda runtime ships; it makes no AWS call here); clients built with
``boto3.resource`` or a ``Session`` (the scan fails on those rather than
guessing). The IAM side of the list is checked in test_iam.py.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import botocore.session
from botocore import xform_name

ROOT = Path(__file__).resolve().parents[2]
LIST = json.loads((ROOT / "infra" / "aws_operations.json").read_text())
LISTED = {op["call"] for op in LIST["operations"] if op["call"] != "runtime"}
NOT_AT_RUNTIME = {k for k in LIST["not_at_runtime"] if k != "//"}
COLLISIONS = {k for k in LIST["name_collisions"] if k != "//"}
HTTP_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"}
#: The thin clients of chalicelib/aws.py and the service each calls.
THIN_CLIENTS = {"DynamoDB": "dynamodb", "LambdaClient": "lambda"}


def deployed_sources() -> dict[str, ast.Module]:
    paths = [ROOT / "app.py", *sorted((ROOT / "chalicelib").glob("**/*.py"))]
    return {str(p.relative_to(ROOT)): ast.parse(p.read_text(), filename=str(p)) for p in paths}


def boto3_services(tree: ast.Module) -> set[str]:
    services: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if called in THIN_CLIENTS:
                services.add(THIN_CLIENTS[called])
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        owner = node.func.value
        if isinstance(owner, ast.Name) and owner.id == "boto3":
            assert node.func.attr == "client", f"boto3.{node.func.attr}: the scan only understands clients"
            first = node.args[0] if node.args else None
            assert isinstance(first, ast.Constant), ast.dump(node)
            assert isinstance(first.value, str), ast.dump(node)
            services.add(first.value)
        if node.func.attr == "client" and not (isinstance(owner, ast.Name) and owner.id == "boto3"):
            assert not (isinstance(owner, ast.Name) and owner.id.lower().endswith("session")), ast.dump(node)
    return services


def code_strings(tree: ast.Module) -> list[str]:
    """Every string constant of the code, docstrings left out (f-string parts included)."""
    docstrings: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


def signs_requests(tree: ast.Module) -> bool:
    """Whether a module signs HTTP requests with SigV4, judged by its code alone."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("botocore.auth"):
            return True
        if isinstance(node, ast.Import) and any(a.name.startswith("botocore.auth") for a in node.names):
            return True
    return any("AWS4-HMAC-SHA256" in text for text in code_strings(tree))


def names_used(tree: ast.Module) -> set[str]:
    """Attribute calls (``x.put_item(...)``) and string literals (``"put_item"``)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            found.add(node.func.attr)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.add(node.value)
    return found


def operations(service: str) -> dict[str, set[str]]:
    """The service's operations (botocore's method names) by each way code may name them:
    ``put_item``, ``PutItem``, or a REST path (botocore's ``requestUri``) other than ``/``."""
    model = botocore.session.get_session().get_service_model(service)
    named: dict[str, set[str]] = {}
    for name in model.operation_names:
        path = model.operation_model(name).http["requestUri"]
        for spelt in {name, xform_name(name), path} - {"/"}:
            named.setdefault(spelt, set()).add(xform_name(name))
    return named


def operations_named(tree: ast.Module, service: str) -> set[str]:
    """The operations of ``service`` that ``tree`` names (botocore's method names)."""
    ops = operations(service)
    return {op for name in names_used(tree) & ops.keys() for op in ops[name]}


def scan() -> set[str]:
    sources = deployed_sources()
    services = set().union(*(boto3_services(tree) for tree in sources.values()))
    calls: set[str] = set()
    for service in services:
        for tree in sources.values():
            calls |= {f"{service}.{op}" for op in operations_named(tree, service)}
    addressed = [text for tree in sources.values() for text in code_strings(tree) if "@connections" in text]
    for path, tree in sources.items():
        if not signs_requests(tree):
            continue
        assert addressed, f"{path} signs requests, but nothing addresses @connections"
        calls |= {f"execute-api.{m}" for m in names_used(tree) & HTTP_METHODS}
    return calls


def test_signing_is_recognised_by_code_not_by_words() -> None:
    """A docstring naming SigV4 does not make a module a signer; code that signs does."""
    described = ast.parse('"""Signs like SigV4Auth: AWS4-HMAC-SHA256."""\nX = 1\n')
    assert not signs_requests(described)
    hand_written = ast.parse('def sign(scope):\n    return f"AWS4-HMAC-SHA256 Credential=k/{scope}"\n')
    assert signs_requests(hand_written)
    with_botocore = ast.parse("from botocore.auth import SigV4Auth\n")
    assert signs_requests(with_botocore)
    signers = [path for path, tree in deployed_sources().items() if signs_requests(tree)]
    assert signers == ["chalicelib/signing.py"]


def test_every_aws_call_in_the_deployed_code_is_listed() -> None:
    found = scan()
    assert found, "the scan found no AWS call at all: it is broken"
    assert found - LISTED - NOT_AT_RUNTIME - COLLISIONS == set()


def test_every_listed_call_is_still_in_the_code() -> None:
    assert scan() == LISTED | NOT_AT_RUNTIME | COLLISIONS


def test_the_clients_are_the_services_the_list_knows() -> None:
    services = set().union(*(boto3_services(tree) for tree in deployed_sources().values()))
    listed = {call.split(".")[0] for call in LISTED} - {"execute-api"}
    assert services == listed == {"dynamodb", "lambda"}


def test_the_scan_sees_dispatch_by_name_and_signed_methods() -> None:
    tree = ast.parse(
        "import boto3\n"
        "c = boto3.client('dynamodb')\n"
        "def f(self):\n"
        "    self._call('BatchWriteItem')\n"
        "    self._call('delete_item')\n"
        "    c.scan(TableName='t')\n"
        "PATH = '/2015-03-31/functions/{FunctionName}/invocations'\n"
    )
    assert operations_named(tree, "dynamodb") == {"batch_write_item", "delete_item", "scan"}
    assert operations_named(tree, "lambda") == {"invoke"}
    assert boto3_services(tree) == {"dynamodb"}


def test_every_listed_operation_names_an_iam_action_and_a_resource_kind() -> None:
    for op in LIST["operations"]:
        service, _, action = op["action"].partition(":")
        assert service, op
        assert action, op
        assert op["resource"], op
        assert op["where"], op
        if op["call"] != "runtime":
            assert op["call"].split(".")[0] == service, op
