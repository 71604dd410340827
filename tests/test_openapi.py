"""/openapi.json describes every route, and schemathesis finds no 5xx and no schema drift."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from starlette.routing import Route

from receiver.app import create_app
from receiver.settings import load_settings
from tests.daemon import ADMIN_TOKEN, SECRET, event, running

pytestmark = pytest.mark.slow


def test_every_route_is_described(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each HTTP route of the app (but the spec itself and the page) appears in the spec."""
    monkeypatch.setenv("RECEIVER_WEBHOOK_SECRETS", SECRET)
    monkeypatch.setenv("RECEIVER_DATABASE_URL", f"sqlite:///{tmp_path}/x.db")
    app = create_app(load_settings())
    with running(tmp_path) as d:
        described = set(httpx.get(d.url + "/openapi.json").json()["paths"])
    for route in app.routes:
        if isinstance(route, Route) and route.path not in ("/openapi.json",):
            path = route.path.replace(":path}", "}").replace(":int}", "}")
            if path in ("/", "/login", "/logout"):
                continue  # the HTML status page is not part of the JSON API
            assert path in described, path


def test_schemathesis_finds_no_server_error(tmp_path: Path) -> None:
    """Generated requests against the live daemon: never a 5xx, every response as documented."""
    cli = shutil.which("schemathesis") or str(Path(sys.executable).parent / "schemathesis")
    with running(tmp_path) as d:
        d.post_event(event("task.created", "st-1", budget="10", currency="USD"))
        d.post_event(event("task.spend", "st-1", spent="11"))
        out = subprocess.run(
            [cli, "run", f"{d.url}/openapi.json",
             "--checks", "not_a_server_error,status_code_conformance,"
             "content_type_conformance,response_schema_conformance",
             "--header", f"Authorization: Bearer {ADMIN_TOKEN}",
             "--max-examples", "40", "--phases", "examples,coverage,fuzzing",
             "--seed", "1", "--workers", "1", "--suppress-health-check", "all",
             "--no-color"],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        log = d.log()
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]
    generated = re.search(r"(\d+) generated, (\d+) passed", out.stdout)
    assert generated and int(generated[1]) >= 200 and generated[1] == generated[2], out.stdout[
        -2000:
    ]
    assert "Traceback" not in log, log[-4000:]
