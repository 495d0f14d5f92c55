"""The test suite's own rules: the project's data is required where it is promised (CI), and no
test module imports another one (what tests share lives in tests/support/)."""

import ast
from pathlib import Path

import pytest

from tests.support import data
from tests.support.data import REQUIRE, shared_data

TESTS = Path(__file__).resolve().parent


def outcome(name: str) -> str:
    """What shared_data(name) does to the test asking: "found", "skip" or "fail"."""
    try:
        shared_data(name)
    except pytest.skip.Exception:
        return "skip"
    except pytest.fail.Exception as e:
        assert REQUIRE in str(e) and "the data must be there" in str(e)
        return "fail"
    return "found"


def test_missing_project_data_fails_where_it_is_required_and_skips_elsewhere(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "DATA", tmp_path)
    (tmp_path / "there.jsonl").write_text("{}\n")
    for var in (REQUIRE, "CI"):
        monkeypatch.delenv(var, raising=False)
    assert shared_data("there.jsonl") == tmp_path / "there.jsonl"
    assert shared_data() == tmp_path
    assert outcome("gone.jsonl") == "skip"  # a clone without the data
    monkeypatch.setenv("CI", "true")  # what CI services set
    assert (outcome("gone.jsonl"), outcome("there.jsonl")) == ("fail", "found")
    monkeypatch.setenv(REQUIRE, "0")  # said explicitly, it wins over CI
    assert outcome("gone.jsonl") == "skip"
    monkeypatch.delenv("CI")
    monkeypatch.setenv(REQUIRE, "1")  # what .ci/run sets
    assert outcome("gone.jsonl") == "fail"


def test_ci_requires_the_projects_data():
    run = (TESTS.parent / ".ci" / "run").read_text()
    assert f"export {REQUIRE}=1" in run


def imported(node: ast.AST) -> list[str]:
    """The modules (and, for `from`, the names) an import statement reads."""
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        return [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    return []


def is_test_module(name: str) -> bool:
    parts = name.split(".")
    return parts[0] == "tests" and len(parts) > 1 and parts[1].startswith(("test_", "conftest"))


def test_no_test_module_imports_another():
    wrong = {}
    for path in sorted(TESTS.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        bad = [n for node in ast.walk(tree) for n in imported(node) if is_test_module(n)]
        if bad:
            wrong[str(path.relative_to(TESTS))] = bad
    assert not wrong, f"import helpers from tests/support/, not from test modules: {wrong}"
