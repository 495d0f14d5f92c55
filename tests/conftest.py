import pytest

from search.grading import default_grader


@pytest.fixture(scope="session")
def grader():
    return default_grader()
