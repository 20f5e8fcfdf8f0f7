"""The Dockerfile and compose file, checked without a Docker engine (none runs here).

Structure is read from the files; the image's install steps are replayed in a fresh virtual
environment exactly as the Dockerfile runs them, so a packaging mistake (a migration left out
of the wheel, a missing dependency) fails here rather than in someone's deployment.
"""

import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.core.migrations import head_revision

ROOT = Path(__file__).resolve().parent.parent


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) pairs, with continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return document


def test_dockerfile_is_multi_stage_non_root_with_a_healthcheck() -> None:
    steps = dockerfile()
    froms = [args for op, args in steps if op == "FROM"]
    assert len(froms) == 2 and froms[0].endswith("AS build")
    assert any(op == "COPY" and "--from=build" in args for op, args in steps)
    users = [args for op, args in steps if op == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert any(op == "HEALTHCHECK" and "/healthz" in args for op, args in steps)
    cmd = next(args for op, args in reversed(steps) if op == "CMD")
    assert '"balances", "serve"' in cmd and '"0.0.0.0"' in cmd


def test_dockerfile_copies_only_files_that_exist() -> None:
    for op, args in dockerfile():
        if op == "COPY" and "--from" not in args:
            *sources, _ = shlex.split(args)
            for source in sources:
                assert (ROOT / source).exists(), source


def test_compose_wires_postgres_migrate_and_service(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"postgres", "migrate", "balances"}
    postgres, migrate, balances = services["postgres"], services["migrate"], services["balances"]
    assert postgres["image"].startswith("postgres:18")
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert migrate["command"] == ["balances", "migrate"]
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert balances["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert balances["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert "/healthz" in " ".join(balances["healthcheck"]["test"])
    for service in (migrate, balances):
        url = service["environment"]["DATABASE_URL"]
        assert url.startswith("postgresql://") and "@postgres:5432/" in url


def test_compose_keeps_data_in_a_named_volume(compose: dict[str, Any]) -> None:
    mounts = compose["services"]["postgres"]["volumes"]
    named = {mount.split(":", 1)[0] for mount in mounts}
    assert named <= set(compose["volumes"]) and named


def test_image_install_steps_build_a_working_service(tmp_path: Path) -> None:
    """`pip install .` from exactly what the Dockerfile copies, into a fresh venv."""
    source = tmp_path / "src"
    source.mkdir()
    for op, args in dockerfile():
        if op == "COPY" and "--from" not in args:
            *sources, _ = shlex.split(args)
            for name in sources:
                path = ROOT / name
                target = source / name
                if path.is_dir():
                    shutil.copytree(path, target, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy(path, target)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    install = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", str(source)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    help_text = subprocess.run(
        [str(venv / "bin" / "balances"), "--help"], capture_output=True, text=True, check=True
    )
    assert "serve" in help_text.stdout and "migrate" in help_text.stdout
    # The migrations must ship inside the wheel: the image has no source tree.
    probe = subprocess.run(
        [str(venv / "bin" / "python"), "-c",
         "from app.core.migrations import head_revision, MIGRATIONS_DIR; "
         "print(head_revision(), MIGRATIONS_DIR)"],
        capture_output=True, text=True, check=True, cwd=tmp_path,
    )  # fmt: skip
    head, location = probe.stdout.split()
    assert head == head_revision() and str(venv) in location
