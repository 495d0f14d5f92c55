import pytest

from sandbox import SandboxSettings, create_sandbox
from search.grading import default_grader


@pytest.fixture(scope="session")
def grader():
    return default_grader()


@pytest.fixture(scope="session")
def sandbox():
    """The real nsjail pool (2 warm workers), shared by the whole session."""
    pool = create_sandbox(SandboxSettings(backend="nsjail", workers=2, timeout_s=5.0))
    pool.start()
    yield pool
    pool.close()
