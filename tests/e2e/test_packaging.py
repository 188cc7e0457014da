"""The container's entry command, run in this virtualenv (no Docker engine here):
the Dockerfile's ENV, ENTRYPOINT + CMD and HEALTHCHECK work as written."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.services import free_port, wait_for_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def dockerfile_run_stage() -> str:
    text = (ROOT / "Dockerfile").read_text()
    return text.split("\nFROM ")[-1]  # the last stage is what runs


def json_list(line: str, keyword: str) -> list[str]:
    match = re.search(rf"^{keyword}\s+(\[.*\])\s*$", line)
    assert match, f"{keyword} must use the exec (JSON) form: {line!r}"
    return list(json.loads(match[1]))


def test_dockerfile_is_multi_stage_and_non_root() -> None:
    """Two stages, and the runtime stage switches to an unprivileged user."""
    text = (ROOT / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, re.M)) >= 2
    stage = dockerfile_run_stage()
    user = re.search(r"^USER\s+(\S+)", stage, re.M)
    assert user is not None
    assert user[1] not in {"root", "0"}


def image_environment(stage: str) -> dict[str, str]:
    """This process's environment without SEAT_INVENTORY_*, plus the stage's ENV."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEAT_INVENTORY_")}
    env_block = re.search(r"^ENV\s+((?:.*\\\n)*.*)$", stage, re.M)
    assert env_block is not None
    for item in shlex.split(env_block[1].replace("\\\n", " ")):
        key, _, value = item.partition("=")
        env[key] = value
    return env


def run_entry_until_healthy(
    stage: str, env: dict[str, str], port: int, cwd: Path, stop_timeout_s: float
) -> tuple[subprocess.CompletedProcess[str], str, int]:
    """Start ENTRYPOINT + CMD (from this venv) with ``env``, run the HEALTHCHECK
    (with ``env`` too; a port written in it swapped for ``port``) until it passes
    or 10 s are up, then SIGTERM;
    the last health check, the server's stderr and its exit code."""
    lines = stage.splitlines()
    entry = json_list(next(x for x in lines if x.startswith("ENTRYPOINT")), "ENTRYPOINT")
    cmd = json_list(next(x for x in lines if x.startswith("CMD")), "CMD")
    health_line = stage[stage.index("HEALTHCHECK") :].split("CMD", 1)[1].strip()
    health = [a.replace("50051", str(port)) for a in json.loads(health_line.splitlines()[0])]
    bin_dir = Path(sys.executable).parent
    proc = subprocess.Popen(
        [str(bin_dir / entry[0]), *entry[1:], *cmd],
        cwd=cwd,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_port(port, timeout=30)
        for _ in range(100):
            checked = subprocess.run(
                [str(bin_dir / health[0]), *health[1:]],
                env=env,  # Docker runs the check with the container's environment
                capture_output=True,
                text=True,
                check=False,
            )
            if checked.returncode == 0:
                break
            time.sleep(0.1)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=stop_timeout_s)
    return checked, err, proc.returncode


def test_entry_command_serves_and_passes_its_health_check(tmp_path: Path) -> None:
    """ENTRYPOINT + CMD with the image's ENV serve JSON logs, and the HEALTHCHECK passes."""
    stage = dockerfile_run_stage()
    env = image_environment(stage)
    port = free_port()
    env["SEAT_INVENTORY_PORT"] = str(port)  # the image's 50051 may be taken here
    # The image listens on 0.0.0.0, which needs authentication: mount principals
    # as an operator would (the health check needs no token).
    principals = tmp_path / "principals.toml"
    principals.write_text(
        '[[principals]]\nname = "ops"\nroles = ["admin"]\ntokens = ["sha256:' + "0" * 64 + '"]\n'
    )
    env["SEAT_INVENTORY_PRINCIPALS"] = str(principals)
    checked, err, code = run_entry_until_healthy(stage, env, port, tmp_path, stop_timeout_s=20)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.strip() == "SERVING"
    records = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert any(r.get("event") == "serving" for r in records), err
    assert code == 0


def compose_environment(service: str) -> dict[str, str]:
    """The ``environment:`` mapping of one docker-compose.yml service (a small
    reader for the plain ``KEY: value`` form the file uses)."""
    lines = (ROOT / "docker-compose.yml").read_text().splitlines()
    start = lines.index(f"  {service}:")
    env: dict[str, str] = {}
    inside = False
    for line in lines[start + 1 :]:
        if line.strip().startswith("#"):
            continue
        if line.strip() and not line.startswith("    "):
            break  # the next service
        if line.strip() == "environment:":
            inside = True
        elif inside and line.startswith("      ") and ":" in line:
            key, _, value = line.strip().partition(":")
            env[key] = shlex.split(value, comments=True)[0]
        elif inside:
            inside = line.startswith("      ")
    return env


def test_compose_service_runs_two_workers_that_pass_the_health_check(
    tmp_path: Path, redis_url: str, postgres_url: str
) -> None:
    """The image's ENV plus docker-compose.yml's environment for the service (its Redis
    and PostgreSQL swapped for this test's) start a supervisor with two workers; the
    HEALTHCHECK passes and SIGTERM stops it with exit code 0."""
    stage = dockerfile_run_stage()
    env = image_environment(stage)
    compose = compose_environment("seat-inventory")
    assert compose["SEAT_INVENTORY_WORKERS"] == "2"
    env.update(compose)
    env["SEAT_INVENTORY_REDIS_URL"], env["SEAT_INVENTORY_DATABASE_URL"] = redis_url, postgres_url
    port = free_port()
    env["SEAT_INVENTORY_PORT"] = str(port)
    checked, err, code = run_entry_until_healthy(stage, env, port, tmp_path, stop_timeout_s=40)
    assert checked.returncode == 0, checked.stderr
    records = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert sum(r.get("event") == "worker started" for r in records) >= 2, err
    assert code == 0, err
