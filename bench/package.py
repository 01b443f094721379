"""Package: the size of ``deployment.zip`` from ``chalice package``."""

from __future__ import annotations

import os
import subprocess
import tempfile
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

from bench.part import Target, part_main
from bench.servers import DUMMY_AWS_ENV, ROOT


def run() -> dict[str, Any]:
    chalice = str(Path(ROOT, ".venv", "bin", "chalice"))
    if not os.path.exists(chalice):
        chalice = "chalice"
    with tempfile.TemporaryDirectory(prefix="bench-package-") as out:
        completed = subprocess.run(
            [chalice, "package", out],
            cwd=ROOT,
            env={**os.environ, **DUMMY_AWS_ENV, "AWS_DEFAULT_REGION": "us-east-1"},
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if completed.returncode != 0:
            raise RuntimeError(f"chalice package failed: {(completed.stderr or completed.stdout)[-1500:]}")
        path = Path(out, "deployment.zip")
        size = path.stat().st_size
        by_top: Counter[str] = Counter()
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            for info in infos:
                by_top[info.filename.split("/", 1)[0]] += info.compress_size
            uncompressed = sum(i.file_size for i in infos)
    return {
        "command": "AWS_DEFAULT_REGION=us-east-1 .venv/bin/chalice package <dir>",
        "zip_bytes": size,
        "uncompressed_bytes": uncompressed,
        "files": len(infos),
        "largest": [(name, n) for name, n in by_top.most_common(6)],
        "reused_cached_dependencies": "Reusing existing deployment package" in completed.stdout,
    }


def lines(res: dict[str, Any]) -> list[str]:
    largest = ", ".join(f"{name} {size / 1024:.0f} KB" for name, size in res["largest"])
    cached = " (chalice reused its cached dependency layer)" if res["reused_cached_dependencies"] else ""
    return [
        (
            f"Package: deployment.zip {res['zip_bytes'] / 1024 / 1024:.2f} MiB ({res['zip_bytes']:,} bytes), "
            f"{res['uncompressed_bytes'] / 1024 / 1024:.1f} MiB unpacked, {res['files']} files{cached}"
        ),
        f"  largest (compressed): {largest}",
    ]


def targets(res: dict[str, Any]) -> list[Target]:
    return []


NOTE = (
    "- **Package**: `AWS_DEFAULT_REGION=us-east-1 .venv/bin/chalice package <tmpdir>`, size of "
    "`deployment.zip` (boto3/botocore are not in it: the Lambda runtime has them)."
)

if __name__ == "__main__":
    part_main(__name__)
