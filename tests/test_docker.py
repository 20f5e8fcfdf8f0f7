"""The Dockerfile, compose file, .env.example and lock files, checked without a Docker engine
(none runs here).

Structure is read from the files; the image's install steps are replayed in a fresh virtual
environment exactly as the Dockerfile runs them, so a packaging mistake (a migration left out
of the wheel, a dependency missing from the lock) fails here rather than in someone's deployment.
"""

import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement

from app.cli import DRAIN_SECONDS
from app.core.config import Settings, environment_names
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


def test_compose_wires_postgres_and_the_service(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"postgres", "balances"}  # serve migrates, under an advisory lock
    postgres, balances = services["postgres"], services["balances"]
    assert postgres["image"].startswith("postgres:18")
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert balances["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "/healthz" in " ".join(balances["healthcheck"]["test"])
    url = balances["environment"]["DATABASE_URL"]
    assert url.startswith("postgresql://") and "@postgres:5432/" in url


def test_compose_builds_one_image_for_every_service_that_runs_it(compose: dict[str, Any]) -> None:
    services = compose["services"].values()
    builders = [service for service in services if "build" in service]
    assert len(builders) == 1
    ours = {service["image"] for service in services if not service["image"].startswith("postgres")}
    assert ours == {builders[0]["image"]}


def _seconds(duration: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert "".join(n + u for n, u in parts) == duration, duration
    return sum(float(number) * units[unit] for number, unit in parts)


def test_compose_lets_the_drain_finish_before_killing(compose: dict[str, Any]) -> None:
    grace = compose["services"]["balances"]["stop_grace_period"]
    assert _seconds(grace) > DRAIN_SECONDS


def test_compose_keeps_the_idempotency_purge_running(compose: dict[str, Any]) -> None:
    environment = compose["services"]["balances"]["environment"]
    interval = environment.get("BALANCES_IDEMPOTENCY_PURGE_INTERVAL_SECONDS")
    assert (
        interval is None and Settings.model_fields["idempotency_purge_interval_seconds"].default > 0
    )


def test_compose_keeps_data_in_a_named_volume(compose: dict[str, Any]) -> None:
    mounts = compose["services"]["postgres"]["volumes"]
    named = {mount.split(":", 1)[0] for mount in mounts}
    assert named <= set(compose["volumes"]) and named


def test_image_install_steps_build_a_working_service(tmp_path: Path) -> None:
    """The Dockerfile's `pip install` steps (the lock, then the package), from exactly what it
    copies, into a fresh venv."""
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
    installs = [
        shlex.split(args) for op, args in dockerfile() if op == "RUN" and args.startswith("pip ")
    ]
    assert [step[:2] for step in installs] == [["pip", "install"]] * 2
    assert "--require-hashes" in installs[0] and "--no-deps" in installs[1]
    for step in installs:
        install = subprocess.run(
            [str(venv / "bin" / "pip"), *step[1:], "-q"],
            capture_output=True,
            text=True,
            check=False,
            cwd=source,
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


def _example_lines() -> dict[str, str]:
    """NAME -> value of every ``NAME=value`` line in .env.example, commented out or not."""
    text = (ROOT / ".env.example").read_text()
    return dict(re.findall(r"^#? ?([A-Z][A-Z0-9_]*)=(.*)$", text, re.MULTILINE))


def test_env_example_lists_every_setting_and_nothing_else() -> None:
    listed = set(_example_lines())
    assert listed - {"POSTGRES_PASSWORD"} == set(environment_names().values())


def test_env_example_shows_the_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Uncommented, the example changes nothing (placeholders and empty values aside)."""
    for name in environment_names().values():
        monkeypatch.delenv(name, raising=False)
    placeholders = {"DATABASE_URL", "POSTGRES_PASSWORD"}
    env_file = tmp_path / ".env"
    env_file.write_text(
        "".join(
            f"{name}={value}\n"
            for name, value in _example_lines().items()
            if value and name not in placeholders
        )
    )
    from_example = Settings(_env_file=env_file)
    assert from_example == Settings(_env_file=None)


def _locked(path: Path) -> dict[str, str]:
    pins = re.findall(r"^([A-Za-z0-9._-]+)==([^ ;\\]+)", path.read_text(), re.MULTILINE)
    return {name.lower().replace("_", "-"): version for name, version in pins}


@pytest.mark.parametrize(
    ("lock", "extras"), [("requirements.lock", ()), ("requirements-dev.lock", ("test", "dev"))]
)
def test_lock_file_pins_every_declared_dependency(lock: str, extras: tuple[str, ...]) -> None:
    """A dependency added to pyproject.toml without relocking fails here, not in the image."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = list(project["dependencies"])
    for extra in extras:
        declared += project["optional-dependencies"][extra]
    pinned = _locked(ROOT / lock)
    assert "--hash=sha256:" in (ROOT / lock).read_text()
    for requirement in map(Requirement, declared):
        if requirement.name == project["name"]:
            continue
        name = requirement.name.lower().replace("_", "-")
        assert name in pinned, f"{name} is not in {lock}: regenerate it (see its header)"
        assert requirement.specifier.contains(pinned[name], prereleases=True), name
