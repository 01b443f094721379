"""Validate the Terraform export with the real AWS provider, and apply it to a moto server.

    python -m infra.validate [--export build/terraform] [--mirror DIR]     (``make validate``)

Steps, in a temporary directory (the export itself is never written to):

1. The export is copied to ``modules/ws-proxy`` and called from a root module,
   as the README shows: the provider is configured by the root module with
   every endpoint the export's resource types need pointed at a moto server,
   fake credentials and AWS's account and credential checks skipped. The root
   module also creates an SNS topic and passes it as ``alarm_topic_arn``, so
   the alarms' actions are exercised too.
2. ``terraform init`` installs the AWS provider from a local filesystem mirror
   only (a CLI configuration with ``provider_installation { filesystem_mirror
   {...} }``; nothing is downloaded). The mirror is ``--mirror``, else
   ``$TF_PROVIDER_MIRROR``, else the first of :data:`MIRROR_CANDIDATES` that holds
   an AWS provider for this platform.
3. ``terraform validate``: the provider's schema checks every attribute.
4. ``terraform apply`` against a moto server started here on a free loopback
   port, then ``terraform destroy``. moto cannot create everything: the
   resources it cannot create are :data:`KNOWN_UNSUPPORTED`, each with the
   reason. The run fails when anything else is not created, when a known
   resource is created after all (moto learned it: shorten the list), or when
   destroy fails or leaves state behind.

The terraform CLI is ``$TERRAFORM`` or ``terraform`` on ``PATH``. Without the CLI or
a provider mirror the run stops with :class:`Missing`, naming what to install.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MODULE_NAME = "websocket_proxy"
MODULE_DIR = "modules/ws-proxy"
PROVIDER = "registry.terraform.io/hashicorp/aws"

#: Where a provider mirror is looked for when neither --mirror nor $TF_PROVIDER_MIRROR is given:
#: this project's CI machines, then Terraform's own implied local mirror directories.
MIRROR_CANDIDATES = (
    Path("/opt/tf-plugins"),
    Path.home() / ".terraform.d" / "plugins",
    Path("/usr/local/share/terraform/plugins"),
    Path("/usr/share/terraform/plugins"),
)

#: Resources of the export that moto cannot create, by address inside the module (no index).
#: Keep it exact: a resource listed here that moto does create fails the run too.
KNOWN_UNSUPPORTED = {
    "aws_apigatewayv2_deployment.websocket_api_deployment": (
        "moto answers 404 to API Gateway v2 CreateDeployment"
    ),
    "aws_apigatewayv2_stage.websocket_api_stage": "needs the deployment above (deployment_id)",
}

#: Resource and data source types -> the provider endpoint (service) that serves them.
#: ``None``: the provider computes it without a call. A type missing here stops the run:
#: its endpoint would otherwise go to real AWS.
SERVICES = {
    "aws_apigatewayv2_": "apigatewayv2",
    "aws_api_gateway_": "apigateway",
    "aws_cloudwatch_log_": "logs",
    "aws_cloudwatch_metric_alarm": "cloudwatch",
    "aws_cloudwatch_composite_alarm": "cloudwatch",
    "aws_cloudwatch_dashboard": "cloudwatch",
    "aws_dynamodb_": "dynamodb",
    "aws_iam_policy_document": None,
    "aws_iam_": "iam",
    "aws_lambda_": "lambda",
    "aws_sqs_": "sqs",
    "aws_sns_": "sns",
    "aws_partition": None,
    "aws_region": None,
    "aws_caller_identity": "sts",
}

#: Seconds any one terraform command may take (apply waits on moto; a hang must not stall CI).
TIMEOUT = 900
FAKE_CREDENTIALS = {"access_key": "testing", "secret_key": "testing"}
REGION = "us-east-1"
INSTALL_TERRAFORM = (
    "install the terraform CLI (>= 1.5, https://developer.hashicorp.com/terraform/install) "
    "or set TERRAFORM to its path"
)
INSTALL_MIRROR = (
    "put the AWS provider in a filesystem mirror (on a machine with network access, run "
    "`terraform providers mirror DIR` in a configuration that requires hashicorp/aws) and set "
    "TF_PROVIDER_MIRROR=DIR"
)


class Missing(Exception):
    """A prerequisite (the terraform CLI, a provider mirror) is not on this machine."""


class ValidationError(Exception):
    """The export failed a step: init, validate, apply beyond what moto lacks, or destroy."""


# -- prerequisites --------------------------------------------------------------------------


def platform_dir() -> str:
    """Terraform's ``os_arch`` name for this machine, e.g. ``linux_amd64``."""
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)
    return f"{platform.system().lower()}_{arch}"


def mirror_versions(mirror: Path, os_arch: str | None = None) -> list[str]:
    """AWS provider versions a filesystem mirror holds for this platform (both layouts)."""
    os_arch = os_arch or platform_dir()
    base = mirror / PROVIDER
    if not base.is_dir():
        return []
    versions = set()
    for entry in base.iterdir():
        if entry.is_dir() and any((entry / os_arch).glob("terraform-provider-aws*")):  # unpacked
            versions.add(entry.name)
        match = re.fullmatch(rf"terraform-provider-aws_(.+)_{re.escape(os_arch)}\.zip", entry.name)
        if match and entry.is_file():  # packed
            versions.add(match.group(1))
    return sorted(versions)


def find_terraform(environ: Mapping[str, str] = os.environ) -> Path:
    given = environ.get("TERRAFORM")
    found = given or shutil.which("terraform", path=environ.get("PATH"))
    if not found or not Path(found).is_file() or not os.access(found, os.X_OK):
        where = f"TERRAFORM={given} is not an executable" if given else "no terraform on PATH"
        raise Missing(f"{where}: {INSTALL_TERRAFORM}")
    return Path(found)


def find_mirror(
    given: Path | None = None,
    environ: Mapping[str, str] = os.environ,
    candidates: tuple[Path, ...] = MIRROR_CANDIDATES,
    os_arch: str | None = None,
) -> Path:
    """The provider mirror: ``given``, else $TF_PROVIDER_MIRROR, else the first candidate with one."""
    explicit = given or (Path(environ["TF_PROVIDER_MIRROR"]) if environ.get("TF_PROVIDER_MIRROR") else None)
    if explicit is not None:
        if not mirror_versions(explicit, os_arch):
            raise Missing(
                f"{explicit} holds no {PROVIDER} provider for {os_arch or platform_dir()}: {INSTALL_MIRROR}"
            )
        return explicit
    for candidate in candidates:
        if mirror_versions(candidate, os_arch):
            return candidate
    looked = ", ".join(str(c) for c in candidates)
    raise Missing(f"no AWS provider mirror found (looked in {looked}): {INSTALL_MIRROR}")


@dataclass(frozen=True)
class Tools:
    terraform: Path
    mirror: Path


def prerequisites(mirror: Path | None = None, environ: Mapping[str, str] = os.environ) -> Tools:
    return Tools(find_terraform(environ), find_mirror(mirror, environ))


# -- the root module ----------------------------------------------------------------------------


def resource_types(export: Path) -> set[str]:
    types: set[str] = set()
    for path in export.glob("*.tf.json"):
        doc = json.loads(path.read_text())
        for kind in ("resource", "data"):
            types |= set(doc.get(kind, {}))
    for path in export.glob("*.tf"):  # HCL: the export's only one is versions.tf
        types |= set(re.findall(r'^\s*(?:resource|data)\s+"([a-z0-9_]+)"', path.read_text(), re.MULTILINE))
    return types


def endpoints_for(types: set[str]) -> list[str]:
    """The provider endpoints the resource and data source types need (plus sts, always)."""
    services = {"sts", "sns"}  # sts: the provider; sns: the root module's alarm topic
    for rtype in sorted(types):
        prefix = next((p for p in SERVICES if rtype == p or (p.endswith("_") and rtype.startswith(p))), None)
        if prefix is None:
            raise ValidationError(
                f"{rtype}: infra/validate.py does not know which endpoint serves it; add it to SERVICES"
            )
        service = SERVICES[prefix]
        if service:
            services.add(service)
    return sorted(services)


def root_module(endpoint: str, services: list[str], alarm_topic: bool = True) -> dict[str, Any]:
    module: dict[str, Any] = {
        "source": f"./{MODULE_DIR}",
        "websocket_backend_url": "https://api.example.com",
        "allowed_origins": ["https://app.example.com"],
        "manage_api_gateway_account_logging": True,
        "tags": {"service": "ws-proxy"},
    }
    if alarm_topic:
        module["alarm_topic_arn"] = "${aws_sns_topic.alarms.arn}"
    return {
        "provider": {
            "aws": {
                "region": REGION,
                **FAKE_CREDENTIALS,
                "skip_credentials_validation": True,
                "skip_requesting_account_id": True,
                "skip_metadata_api_check": True,
                "skip_region_validation": True,
                "endpoints": [dict.fromkeys(services, endpoint)],
            }
        },
        "resource": {"aws_sns_topic": {"alarms": {"name": "ws-proxy-validate-alarms"}}},
        "module": {MODULE_NAME: module},
    }


def cli_config(mirror: Path) -> str:
    """A CLI configuration that installs hashicorp/aws from the mirror and nothing from the network."""
    return (
        "provider_installation {\n"
        "  filesystem_mirror {\n"
        f"    path    = {json.dumps(str(mirror))}\n"
        f'    include = ["{PROVIDER}"]\n'
        "  }\n"
        "}\n"
    )


def uses_alarm_topic(export: Path) -> bool:
    for path in export.glob("*.tf.json"):
        if "alarm_topic_arn" in json.loads(path.read_text()).get("variable", {}):
            return True
    return False


# -- moto --------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def moto_server(log: Path, attempts: int = 3) -> Iterator[str]:
    """A moto server on a free loopback port, stopped on exit; yields its URL."""
    env = {**os.environ, "MOTO_IAM_LOAD_MANAGED_POLICIES": "true"}  # AmazonAPIGatewayPushToCloudWatchLogs
    for _ in range(attempts):
        port = free_port()
        with log.open("ab") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
        url = f"http://127.0.0.1:{port}"
        try:
            if _wait_ready(url, process):
                yield url
                return
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    raise ValidationError(f"moto server did not start (see {log})")


def _wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False  # e.g. the port was taken in between
        try:
            with urllib.request.urlopen(f"{url}/moto-api/", timeout=2):  # noqa: S310 (loopback)
                return True
        except OSError:
            time.sleep(0.2)
    return False


# -- terraform's machine-readable output --------------------------------------------------------


def module_address(addr: str) -> str:
    """``module.websocket_proxy.aws_x.y["k"]`` -> ``aws_x.y`` (root resources keep their prefix-less form)."""
    addr = addr.removeprefix(f"module.{MODULE_NAME}.")
    return re.sub(r"\[[^\]]*\]$", "", addr)


@dataclass
class ApplyResult:
    planned: set[str] = field(default_factory=set)  # full addresses, with index
    created: set[str] = field(default_factory=set)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (address or "", summary + detail)

    def not_created(self) -> set[str]:
        return self.planned - self.created


def read_apply(lines: list[str]) -> ApplyResult:
    """Read ``terraform apply -json`` output: what was planned, created, and every error."""
    result = ApplyResult()
    for line in lines:
        try:
            message = json.loads(line)
        except json.JSONDecodeError:
            continue
        kind = message.get("type")
        if kind == "planned_change":
            change = message["change"]
            if change.get("action") == "create":
                result.planned.add(change["resource"]["addr"])
        elif kind == "apply_complete":
            hook = message["hook"]
            if hook.get("action") == "create":
                result.created.add(hook["resource"]["addr"])
        elif kind == "diagnostic" and message["diagnostic"].get("severity") == "error":
            diagnostic = message["diagnostic"]
            text = f"{diagnostic.get('summary', '')}: {diagnostic.get('detail', '')}".strip(": ")
            result.errors.append((diagnostic.get("address", ""), text))
    return result


@dataclass
class Verdict:
    ok: bool
    lines: list[str]


def judge(result: ApplyResult, known: Mapping[str, str] = KNOWN_UNSUPPORTED) -> Verdict:
    """Pass only when exactly the known-unsupported resources are missing, and nothing else failed."""
    lines: list[str] = []
    ok = True
    if not result.planned:
        return Verdict(False, ["apply planned nothing: the run is broken"])
    missing = {module_address(a) for a in result.not_created()}
    for address in sorted(missing & set(known)):
        lines.append(f"not created (moto cannot): {address}: {known[address]}")
    for address in sorted(missing - set(known)):
        ok = False
        lines.append(f"FAILED, not created: {address}")
    for address in sorted(set(known) - missing):
        ok = False
        lines.append(
            f"FAILED, known as unsupported but created (or not planned): {address}: "
            "update KNOWN_UNSUPPORTED in infra/validate.py"
        )
    for address, text in result.errors:
        if not address or module_address(address) not in known:
            ok = False
            lines.append(f"FAILED, error at {address or '(no resource)'}: {text}")
    lines.append(f"created {len(result.created)} of {len(result.planned)} planned resources")
    return Verdict(ok, lines)


# -- the run -----------------------------------------------------------------------------------


@dataclass
class Report:
    ok: bool
    lines: list[str]
    apply: ApplyResult | None = None
    seconds: float = 0.0

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


class Runner:
    def __init__(self, tools: Tools, workdir: Path, echo: bool = False) -> None:
        self.tools = tools
        self.workdir = workdir
        self.echo = echo
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("TF_", "AWS_"))},
            "TF_CLI_CONFIG_FILE": str(workdir / "cli.tfrc"),
            "TF_IN_AUTOMATION": "1",
            "TF_INPUT": "0",
            "CHECKPOINT_DISABLE": "1",
        }

    def terraform(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(self.tools.terraform), *args]
        try:
            result = subprocess.run(
                command,
                cwd=self.workdir,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise ValidationError(f"terraform {args[0]} took over {TIMEOUT} s") from exc
        (self.workdir / f"{args[0]}.out").write_text(result.stdout + result.stderr)
        if self.echo:
            print(f"$ terraform {' '.join(args)}  -> exit {result.returncode}", flush=True)
        if check and result.returncode != 0:
            raise ValidationError(
                f"terraform {args[0]} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
            )
        return result


def run(export: Path, tools: Tools, *, echo: bool = False, keep: Path | None = None) -> Report:
    """Every step above on a copy of ``export``; the report says what passed and what moto lacks."""
    started = time.monotonic()
    lines: list[str] = []

    def say(line: str) -> None:
        lines.append(line)
        if echo:
            print(line, flush=True)

    if not (export / "chalice.tf.json").is_file():
        raise ValidationError(f"{export} is not the Terraform export (run `make package`)")
    with tempfile.TemporaryDirectory(prefix="ws-proxy-validate-") as tmp:
        workdir = keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        shutil.copytree(export, workdir / MODULE_DIR, dirs_exist_ok=True)
        (workdir / "cli.tfrc").write_text(cli_config(tools.mirror))
        runner = Runner(tools, workdir, echo)
        services = endpoints_for(resource_types(export))
        topic = uses_alarm_topic(export)

        say(f"terraform: {tools.terraform}; provider mirror: {tools.mirror}")
        (workdir / "main.tf.json").write_text(
            json.dumps(root_module("http://127.0.0.1:1", services, topic), indent=2)
        )
        runner.terraform("init", "-input=false", "-no-color", "-backend=false")
        version = runner.terraform("version", "-json")
        providers = json.loads(version.stdout).get("provider_selections", {})
        say(f"init: {PROVIDER} {providers.get(PROVIDER, '?')} from the mirror")

        validated = json.loads(runner.terraform("validate", "-json", "-no-color", check=False).stdout)
        for diagnostic in validated.get("diagnostics", []):
            say(f"validate {diagnostic['severity']}: {diagnostic['summary']}: {diagnostic.get('detail', '')}")
        if not validated.get("valid"):
            return Report(False, [*lines, "FAILED: terraform validate"], seconds=time.monotonic() - started)
        say(f"validate: valid ({validated.get('warning_count', 0)} warnings)")

        with moto_server(workdir / "moto.log") as url:
            (workdir / "main.tf.json").write_text(json.dumps(root_module(url, services, topic), indent=2))
            say(f"moto server: {url}; endpoints: {', '.join(services)}")
            applied = runner.terraform(
                "apply", "-auto-approve", "-input=false", "-json", "-parallelism=20", check=False
            )
            result = read_apply(applied.stdout.splitlines())
            verdict = judge(result)
            for line in verdict.lines:
                say(f"apply: {line}")
            destroyed = runner.terraform("destroy", "-auto-approve", "-input=false", "-json", check=False)
            destroy_errors = read_apply(destroyed.stdout.splitlines()).errors
            left = runner.terraform("state", "list", check=False).stdout.split()
        ok = verdict.ok
        if destroyed.returncode != 0 or destroy_errors or left:
            ok = False
            for address, text in destroy_errors:
                say(f"destroy: FAILED at {address or '(no resource)'}: {text}")
            if left:
                say(f"destroy: FAILED, left in state: {', '.join(left)}")
        else:
            say("destroy: everything created was destroyed")
    seconds = time.monotonic() - started
    say(f"{'passed' if ok else 'FAILED'} in {seconds:.0f} s")
    return Report(ok, lines, result, seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--export", type=Path, default=ROOT / "build" / "terraform", help="make package's output"
    )
    parser.add_argument("--mirror", type=Path, help="provider mirror (default: $TF_PROVIDER_MIRROR or found)")
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it (for debugging)")
    args = parser.parse_args(argv)
    try:
        tools = prerequisites(args.mirror)
        report = run(args.export, tools, echo=True, keep=args.keep)
    except Missing as exc:
        print(f"make validate cannot run: {exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
