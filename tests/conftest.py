import os

import pytest

# Tests that are not about the default model run on the tiny one (SmolLM2-135M): the 0.5B
# default would take the suite past CI's time on 2 cores. Tests about the default ask for it.
os.environ["RSTAR_POLICY_MODEL"] = "tiny"

from sandbox import SandboxSettings, create_sandbox
from search.grading import default_grader
from tests.support.jail import SESSION_BASE_UID


@pytest.fixture(scope="session")
def grader():
    return default_grader()


@pytest.fixture(scope="session")
def sandbox():
    """The real nsjail pool (2 warm workers), shared by the whole session."""
    pool = create_sandbox(
        SandboxSettings(backend="nsjail", workers=2, timeout_s=5.0, base_uid=SESSION_BASE_UID)
    )
    pool.start()
    yield pool
    pool.close()


@pytest.fixture(scope="session")
def tiny_model_path():
    from models.default_model import EMBEDDED, ensure_model

    return str(ensure_model(EMBEDDED["tiny"]))


@pytest.fixture(scope="session")
def default_model_path():
    """The real embedded default (Qwen2.5-Coder-0.5B-Instruct), for the tests about it."""
    from models.default_model import ensure_default_model

    return str(ensure_default_model())


@pytest.fixture(scope="session")
def tiny_ppm_path(tiny_model_path, tmp_path_factory):
    """A PPM on the tiny backbone with a random one-label head (its scores differ)."""
    from models.ppm import init_ppm_from_backbone

    out = tmp_path_factory.mktemp("ppm")
    return str(init_ppm_from_backbone(tiny_model_path, out, zero_head=False))


@pytest.fixture(scope="session")
def tiny_prm_path(tiny_model_path, tmp_path_factory):
    from tests.support.model_fixtures import build_tiny_step_tag_prm

    return str(build_tiny_step_tag_prm(tmp_path_factory.mktemp("prm"), tiny_model_path))


@pytest.fixture(scope="session")
def hf_policy(tiny_model_path):
    from models.hf_policy import TransformersPolicy

    policy = TransformersPolicy(tiny_model_path)
    yield policy
    policy.close()
