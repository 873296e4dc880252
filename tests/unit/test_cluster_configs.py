"""The deployment files in cluster/: they parse, carry the fields their tools need, and run ser commands that exist.

Every ``ser ...`` / ``python -m jobs.cli ...`` command line in the manifests, the launcher config and the
operator README is parsed by the real click CLI (options, required options, value types), with shell variables
replaced by a sample date.
"""

from __future__ import annotations

import copy
import re
import shlex
import tomllib
from pathlib import Path

import click
import pytest
import yaml

from jobs.cli import main

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
RAY_PIN = next(d for d in PYPROJECT["project"]["dependencies"] if d.startswith("ray[")).split("==")[1]
SHELL_VARIABLE = re.compile(r"\$\{?\w+\}?")
SAMPLE_DATE = "2024-05-01"


def ser_command_lines(shell: str) -> list[list[str]]:
    """The argument lists of every ``ser`` or ``python -m jobs.cli`` command in a piece of shell."""
    found = []
    for line in shell.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        tokens = list(lexer)
        for i, token in enumerate(tokens):
            at_command_start = i == 0 or is_operator(tokens[i - 1]) or tokens[i - 1] in ("do", "then", "else") or (
                re.fullmatch(r"\w+=\S*", tokens[i - 1]) is not None)
            if not at_command_start:
                continue
            if token == "ser":
                start = i + 1
            elif tokens[i : i + 3] == ["python", "-m", "jobs.cli"]:
                start = i + 3
            else:
                continue
            args = []
            for arg in tokens[start:]:
                if is_operator(arg):
                    break
                args.append(SHELL_VARIABLE.sub(SAMPLE_DATE, arg))
            found.append(args)
    return found


def is_operator(token: str) -> bool:
    return set(token) <= set("();<>|&")


def check_ser_command(args: list[str]) -> str:
    """Parse ``args`` with the real CLI (raises on an unknown command or option, a missing or bad value).

    ``ser submit ... -- COMMAND ...`` checks the submitted command too. Returns the command path, e.g. ``submit score``.
    """
    command: click.Command = main
    path = []
    while isinstance(command, click.Group):
        assert args and args[0] in command.commands, f"no ser command {' '.join(path + args[:1])!r}"
        path.append(args[0])
        command, args = command.commands[args[0]], args[1:]
    context = command.make_context(" ".join(path), list(args))
    if path == ["submit"]:
        path.append(check_ser_command(list(context.params["command"])))
    return " ".join(path)


def load_yaml_documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def test_the_command_checker_rejects_what_the_cli_would():
    assert check_ser_command(["submit", "--address", "http://h:8265", "--", "score", "--archive", "a", "--out", "b"]) == "submit score"
    for bad in (["scor", "--archive", "a"], ["score", "--archive", "a"], ["score", "--archive", "a", "--out", "b", "--wrkers", "2"],
                ["score", "--archive", "a", "--out", "b", "--date", "yesterday"], ["submit", "--", "extract", "--bogus"]):
        with pytest.raises((AssertionError, click.ClickException)):
            check_ser_command(bad)


# ------------------------------------------------------------------------------------------------ KubeRay


@pytest.fixture(scope="module")
def kuberay() -> dict[str, dict]:
    """Every KubeRay manifest document by kind."""
    documents = [doc for path in sorted((CLUSTER / "kuberay").glob("*.yaml")) for doc in load_yaml_documents(path)]
    by_kind = {doc["kind"]: doc for doc in documents}
    assert len(by_kind) == len(documents), "one document per kind"
    return by_kind


def pod_specs(cluster_spec: dict) -> list[dict]:
    return [cluster_spec["headGroupSpec"]["template"]["spec"]] + [g["template"]["spec"] for g in cluster_spec["workerGroupSpecs"]]


def test_raycluster_runs_the_ser_image_with_token_auth_sized_pods_and_autoscaling(kuberay):
    cluster = kuberay["RayCluster"]
    assert cluster["apiVersion"] == "ray.io/v1"
    spec = cluster["spec"]
    assert spec["rayVersion"] == RAY_PIN
    assert spec["authOptions"]["mode"] == "token" and spec["authOptions"]["secretName"]
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    for group in spec["workerGroupSpecs"]:
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"] and group["maxReplicas"] >= 1
    images = set()
    for pod in pod_specs(spec):
        assert pod["serviceAccountName"] == kuberay["ServiceAccount"]["metadata"]["name"]
        for container in pod["containers"]:
            images.add(container["image"])
            assert {"cpu", "memory"} <= set(container["resources"]["requests"])
            assert container["resources"]["limits"] == container["resources"]["requests"]
    assert len(images) == 1, "head and workers run the same image"
    assert "eks.amazonaws.com/role-arn" in kuberay["ServiceAccount"]["metadata"]["annotations"]


def test_nightly_scoring_is_a_scheduled_rayjob_scoring_yesterdays_prefix_on_the_cluster(kuberay):
    cron = kuberay["RayCronJob"]
    assert cron["apiVersion"] == "ray.io/v1"
    fields = cron["spec"]["schedule"].split()
    assert len(fields) == 5 and all(re.fullmatch(r"[\d*/,-]+", f) for f in fields)
    job = cron["spec"]["jobTemplate"]
    assert job["clusterSelector"] == {"ray.io/cluster": kuberay["RayCluster"]["metadata"]["name"]}
    assert job["submissionMode"] == "HTTPMode" and job["activeDeadlineSeconds"] < 24 * 3600
    yaml.safe_load(job["runtimeEnvYAML"])
    [command] = ser_command_lines(job["entrypoint"])
    assert check_ser_command(command) == "score"
    assert "date -u -d yesterday +%F" in job["entrypoint"]
    assert f"/archive/{SAMPLE_DATE}/" in command[command.index("--archive") + 1]
    assert command[command.index("--date") + 1] == SAMPLE_DATE
    assert command[command.index("--out") + 1].startswith("s3://")


# ------------------------------------------------------------------------------------------ cluster launcher


@pytest.fixture(scope="module")
def launcher() -> dict:
    [config] = load_yaml_documents(CLUSTER / "aws" / "ser-cluster.yaml")
    return config


def test_launcher_config_passes_rays_own_validation(launcher):
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(launcher)))
    broken = copy.deepcopy(launcher)
    broken["available_node_types"]["cpu_worker"]["max_worker"] = 3  # a typo Ray must refuse
    with pytest.raises(Exception, match="max_worker"):
        validate_config(prepare_config(broken))


def test_launcher_config_has_head_and_worker_types_bounds_and_installs_this_package(launcher):
    assert launcher["provider"]["type"] == "aws"
    types = launcher["available_node_types"]
    head = types[launcher["head_node_type"]]
    assert head["resources"] == {"CPU": 0}
    workers = {name: t for name, t in types.items() if name != launcher["head_node_type"]}
    assert workers and all(0 <= t["min_workers"] <= t["max_workers"] <= launcher["max_workers"] for t in workers.values())
    assert launcher["docker"]["image"].startswith(f"rayproject/ray:{RAY_PIN}-py311")
    assert launcher["file_mounts"]["~/ser"] == "."
    assert {".venv", ".git"} <= set(launcher["rsync_exclude"])
    assert any(re.fullmatch(r"pip install .*~/ser", c) for c in launcher["setup_commands"])
    for command in launcher["head_start_ray_commands"] + launcher["worker_start_ray_commands"]:
        if "ray start" in command:
            assert "RAY_AUTH_MODE=token" in command
    assert launcher["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"


# ------------------------------------------------------------------------------------------ image and README


def test_dockerfile_builds_on_the_pinned_ray_image_and_installs_the_project():
    text = (CLUSTER / "Dockerfile").read_text()
    image = re.search(r"^ARG RAY_IMAGE=(\S+)$", text, re.M).group(1)
    python = PYPROJECT["project"]["requires-python"].split(",")[0].removeprefix(">=").replace(".", "")
    assert image == f"rayproject/ray:{RAY_PIN}-py{python}-cpu"
    assert re.search(r"^FROM \$\{RAY_IMAGE\}$", text, re.M)
    for source in re.findall(r"^COPY (?:--\S+ )*(.+) \S+$", text, re.M):
        for name in source.split():
            assert (ROOT / name).exists(), f"COPY {name}: not in the project"
    assert re.search(r"pip install --no-cache-dir \.", text)
    assert not re.search(r"AWS_(SECRET_ACCESS_KEY|ACCESS_KEY_ID|SESSION_TOKEN)", text)


def test_no_credentials_in_any_deployment_file():
    for path in CLUSTER.rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert not re.search(r"AWS_(SECRET_ACCESS_KEY|SESSION_TOKEN)\s*[:=]\s*\S", text), path
            assert not re.search(r"\bAKIA[0-9A-Z]{16}\b", text), path


def test_every_ser_command_in_the_operator_readme_exists():
    readme = (CLUSTER / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh|shell)\n(.*?)```", readme, re.S)
    commands = [check_ser_command(args) for block in blocks for args in ser_command_lines(block)]
    for expected in ("submit score", "jobs list", "jobs logs", "score", "report"):
        assert expected in commands, f"README shows no `ser {expected}`"
