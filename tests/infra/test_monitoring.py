"""The export's CloudWatch alarms and dashboard watch metrics that exist, on this deployment's resources.

Each metric row (an alarm's metric, a metric-math query, a dashboard line) is held to
what publishes it: AWS/Lambda by the function names of the export, AWS/SQS by the
dead-letter queue the functions use, AWS/ApiGateway by this API's id and stage name,
AWS/DynamoDB by the table and the operations the code makes, and the proxy's own
namespace by what app.py configures and chalicelib emits.
"""

from __future__ import annotations

import ast
import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from infra import build, monitoring
from tests.infra.tf import Config

ROOT = Path(__file__).resolve().parents[2]

#: Metric names each AWS namespace publishes for these resources (AWS's metric references).
AWS_METRICS = {
    "AWS/Lambda": {"Errors", "Throttles", "Duration", "Invocations", "ConcurrentExecutions"},
    "AWS/SQS": {"ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage"},
    "AWS/ApiGateway": {
        "ConnectCount",
        "MessageCount",
        "IntegrationError",
        "ClientError",
        "ExecutionError",
        "IntegrationLatency",
    },
    "AWS/DynamoDB": {"ThrottledRequests", "ReadThrottleEvents", "WriteThrottleEvents"},
}


def app_metrics_settings() -> tuple[str, str]:
    """(namespace, service) of the Powertools ``Metrics`` app.py creates."""
    tree = ast.parse((ROOT / "app.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Metrics":
            kwargs = {k.arg: k.value for k in node.keywords}
            namespace, service = kwargs["namespace"], kwargs["service"]
            assert isinstance(namespace, ast.Constant)
            assert isinstance(service, ast.Constant)
            return str(namespace.value), str(service.value)
    raise AssertionError("app.py creates no Metrics")


def emitted_metrics() -> set[str]:
    """Metric names chalicelib passes to its metric callback (``self._metric("Name", n)``)."""
    names: set[str] = set()
    for path in (ROOT / "chalicelib").glob("**/*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("_metric", "metric")
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                names.add(node.args[0].value)
    return names


class Expected:
    """What a metric's dimensions must be in this export."""

    def __init__(self, tf: Config) -> None:
        self.functions = {
            f"${{aws_lambda_function.{n}.function_name}}" for n in tf.resources("aws_lambda_function")
        }
        self.namespace, self.service = app_metrics_settings()
        self.emitted = emitted_metrics()
        self.operations = set(monitoring.dynamodb_operations())
        queues = {
            f["dead_letter_config"]["target_arn"]
            for f in tf.resources("aws_lambda_function").values()
            if "dead_letter_config" in f
        }
        assert queues == {"${aws_sqs_queue.async_dlq.arn}"}
        stage = tf.resources("aws_apigatewayv2_stage")["websocket_api_stage"]
        self.stage_name = stage["name"]
        self.api_id = f"${{{stage['api_id'][2:-1].rsplit('.', 1)[0]}.id}}"

    def problems(self, namespace: str, name: str, dims: dict[str, str], for_each: Any = None) -> list[str]:
        where = f"{namespace}/{name} {dims}"
        if namespace == self.namespace:
            out = [] if name in self.emitted else [f"{where}: chalicelib never emits {name}"]
            if dims != {"service": self.service}:
                out.append(f"{where}: the proxy's metrics have the one dimension service={self.service}")
            return out
        if name not in AWS_METRICS.get(namespace, set()):
            return [f"{where}: not a metric of {namespace}"]
        if namespace == "AWS/Lambda":
            value = dims.get("FunctionName")
            per_function = value == "${each.value}" and for_each == "${local.function_names}"
            ok = set(dims) == {"FunctionName"} and (value in self.functions or per_function)
            return [] if ok else [f"{where}: not one of the export's functions"]
        if namespace == "AWS/SQS":
            ok = dims == {"QueueName": "${aws_sqs_queue.async_dlq.name}"}
            return [] if ok else [f"{where}: not the functions' dead-letter queue"]
        if namespace == "AWS/ApiGateway":
            ok = dims == {"ApiId": self.api_id, "Stage": self.stage_name}
            return [] if ok else [f"{where}: not this API's stage ({self.api_id}, {self.stage_name})"]
        if namespace == "AWS/DynamoDB":
            ok = (
                dims.get("TableName") == "${aws_dynamodb_table.connections.name}"
                and set(dims) <= {"TableName", "Operation"}
                and (name != "ThrottledRequests" or dims.get("Operation") in self.operations)
            )
            return [] if ok else [f"{where}: not the connections table / an operation the code makes"]
        return [f"{where}: unknown namespace"]


def alarm_problems(name: str, alarm: dict[str, Any], expected: Expected) -> list[str]:
    out: list[str] = []
    for key in ("alarm_name", "alarm_description", "comparison_operator", "threshold", "evaluation_periods"):
        if key not in alarm:
            out.append(f"{name}: no {key}")
    if len(alarm.get("alarm_description", "")) < 80:
        out.append(f"{name}: the description must say what it means and what to do")
    if (
        alarm.get("alarm_actions") != "${local.alarm_actions}"
        or alarm.get("ok_actions") != "${local.alarm_actions}"
    ):
        out.append(f"{name}: actions are not the alarm topic's")
    if "metric_name" in alarm:
        out += expected.problems(
            alarm["namespace"], alarm["metric_name"], alarm["dimensions"], alarm.get("for_each")
        )
        if "metric_query" in alarm:
            out.append(f"{name}: a metric and a query")
    else:
        queries = alarm.get("metric_query", [])
        ids = {q["id"] for q in queries}
        if [q for q in queries if q.get("return_data")] != [queries[-1]]:
            out.append(f"{name}: exactly the last query returns data")
        for query in queries:
            if "metric" in query:
                m = query["metric"]
                out += expected.problems(m["namespace"], m["metric_name"], m["dimensions"])
            else:
                expression = re.sub(r"\$\{[^}]*\}", "0", query["expression"])
                words = set(re.findall(r"\b[a-z][A-Za-z0-9_]*\b", expression))
                if words - ids:
                    out.append(f"{name}: {query['id']} uses unknown ids {sorted(words - ids)}")
    return out


@pytest.fixture(scope="module")
def expected(tf: Config) -> Expected:
    return Expected(tf)


def alarms(tf: Config) -> dict[str, Any]:
    return tf.resources("aws_cloudwatch_metric_alarm")


def test_every_alarm_watches_a_metric_of_this_deployment(tf: Config, expected: Expected) -> None:
    found = alarms(tf)
    assert set(found) == {"function_errors", "function_throttles", *monitoring.SINGLE_ALARMS}
    problems = [p for name, alarm in found.items() for p in alarm_problems(name, alarm, expected)]
    assert problems == []


def test_the_checks_catch_a_wrong_dimension_metric_or_expression(tf: Config, expected: Expected) -> None:
    broken = copy.deepcopy(alarms(tf))
    broken["dead_letter_queue"]["dimensions"] = {"QueueName": "other-queue"}
    broken["api_execution_errors"]["dimensions"]["Stage"] = "development"  # a literal, not the variable
    broken["delivery_failures"]["metric_name"] = "DeliveryFailure"
    broken["function_errors"]["for_each"] = '${toset(["x"])}'
    broken["table_throttles"]["metric_query"][0]["metric"]["dimensions"]["Operation"] = "Scan"
    broken["backend_error_rate"]["metric_query"][-1]["expression"] = "100 * errors / requests"
    broken["api_client_errors"]["ok_actions"] = []
    flagged = {name for name, alarm in broken.items() if alarm_problems(name, alarm, expected)}
    assert flagged == {
        "dead_letter_queue",
        "api_execution_errors",
        "delivery_failures",
        "function_errors",
        "table_throttles",
        "backend_error_rate",
        "api_client_errors",
    }


def test_each_function_gets_error_and_throttle_alarms_from_the_function_list(tf: Config) -> None:
    assert set(tf.blocks["local.function_names"].body) == set(tf.resources("aws_lambda_function"))
    for name in ("function_errors", "function_throttles"):
        alarm = alarms(tf)[name]
        assert alarm["for_each"] == "${local.function_names}"
        assert alarm["alarm_name"].startswith("${each.value}-")


def test_a_sixth_function_is_watched_without_any_change_here() -> None:
    functions = [
        "deliver",
        "fanout",
        "push",
        "websocket_connect",
        "websocket_disconnect",
        "websocket_message",
    ]
    listed = build.functions_file(functions)["locals"]["function_names"]
    assert listed["fanout"] == "${aws_lambda_function.fanout.function_name}"
    body = json.dumps(monitoring.monitoring_file("ws-proxy", "dev", functions)["locals"]["dashboard"])
    assert body.count("${aws_lambda_function.fanout.function_name}") == 3  # duration, errors, throttles


def test_the_proxy_metrics_are_what_app_py_and_chalicelib_publish() -> None:
    assert app_metrics_settings() == (monitoring.NAMESPACE, monitoring.SERVICE)
    assert set(monitoring.PROXY_METRICS) == emitted_metrics()


def test_the_table_alarm_sums_the_operations_of_the_operations_list(tf: Config) -> None:
    queries = alarms(tf)["table_throttles"]["metric_query"]
    operations = [q["metric"]["dimensions"]["Operation"] for q in queries if "metric" in q]
    assert operations == monitoring.dynamodb_operations()
    assert {"PutItem", "DeleteItem", "Query"} <= set(operations)
    assert queries[-1]["expression"] == "SUM(METRICS())"


def test_alarm_names_are_unique_and_prefixed_by_the_stage(tf: Config) -> None:
    names = [a["alarm_name"] for a in alarms(tf).values()]
    assert len(names) == len(set(names))
    for name in names:
        assert name.startswith(("ws-proxy-dev-", "${each.value}-")), name


# -- variables and outputs ----------------------------------------------------------------------


def test_every_alarm_variable_has_a_default_a_description_and_a_use(tf: Config) -> None:
    variables = {a[4:]: b.body for a, b in tf.blocks.items() if a.startswith("var.alarm_")}
    assert variables["alarm_topic_arn"]["default"] is None
    assert variables["alarm_topic_arn"]["nullable"]
    text = json.dumps(tf.documents["monitoring.tf.json"])
    for name, variable in variables.items():
        assert "default" in variable, name
        assert len(variable["description"]) > 20, name
        assert f"var.{name}" in text, f"{name} is declared but no alarm uses it"
        if name != "alarm_topic_arn":
            assert variable["type"] == "number", name
            assert variable["default"] >= 0, name
    for alarm in alarms(tf).values():
        threshold = alarm["threshold"]
        assert threshold == 0 or re.fullmatch(r"\$\{var\.alarm_\w+\}", threshold), threshold


def test_the_outputs_name_every_alarm_and_the_dashboard(tf: Config) -> None:
    value = tf.outputs["websocket_alarm_arns"].body["value"]
    for name in alarms(tf):
        assert f"aws_cloudwatch_metric_alarm.{name}" in value, name
    assert tf.outputs["websocket_dashboard_name"].body["value"] == (
        "${aws_cloudwatch_dashboard.websocket.dashboard_name}"
    )


# -- the dashboard ------------------------------------------------------------------------------


def dashboard(tf: Config) -> dict[str, Any]:
    resource = tf.resources("aws_cloudwatch_dashboard")["websocket"]
    assert resource["dashboard_body"] == "${jsonencode(local.dashboard)}"
    return dict(tf.blocks["local.dashboard"].body)


def metric_rows(body: dict[str, Any]) -> list[tuple[str, str, dict[str, str]]]:
    rows = []
    for widget in body["widgets"]:
        for row in widget["properties"]["metrics"]:
            fields = row[:-1] if isinstance(row[-1], dict) else row
            assert len(fields) % 2 == 0, row  # namespace, name, then dimension name/value pairs
            rows.append((fields[0], fields[1], dict(zip(fields[2::2], fields[3::2], strict=True))))
    return rows


def test_the_dashboard_shows_what_operators_need_from_real_resources(tf: Config, expected: Expected) -> None:
    body = dashboard(tf)
    rows = metric_rows(body)
    problems = [p for namespace, name, dims in rows for p in expected.problems(namespace, name, dims)]
    assert problems == []
    shown = {(namespace, name) for namespace, name, _ in rows}
    for metric in monitoring.PROXY_METRICS:
        assert (monitoring.NAMESPACE, metric) in shown, metric
    for metric in ("Duration", "Errors", "Throttles"):
        functions = {dims["FunctionName"] for ns, name, dims in rows if (ns, name) == ("AWS/Lambda", metric)}
        assert functions == expected.functions, metric
    assert {("AWS/ApiGateway", m) for m in ("IntegrationError", "ExecutionError", "ClientError")} <= shown
    assert ("AWS/SQS", "ApproximateNumberOfMessagesVisible") in shown


def test_the_dashboard_body_is_valid_cloudwatch_json_laid_out_without_overlap(tf: Config) -> None:
    body = dashboard(tf)
    rendered = re.sub(r"\$\{[^}]*\}", "x", json.dumps(body))  # what jsonencode yields, values aside
    assert json.loads(rendered)["widgets"]
    cells: set[tuple[int, int]] = set()
    for widget in body["widgets"]:
        assert widget["type"] == "metric"
        props = widget["properties"]
        assert props["region"] == "${local.monitoring_region}"
        assert props["title"]
        assert props["period"] >= 60
        assert widget["x"] + widget["width"] <= 24
        for x in range(widget["x"], widget["x"] + widget["width"]):
            for y in range(widget["y"], widget["y"] + widget["height"]):
                assert (x, y) not in cells, (widget["properties"]["title"], x, y)
                cells.add((x, y))
    assert tf.blocks["local.monitoring_region"].body == '${split(":", aws_dynamodb_table.connections.arn)[3]}'
