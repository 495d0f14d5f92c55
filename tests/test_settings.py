"""The search settings are declared once (search.SearchSettings) and read the same way by the
server, the CLI and a round; an RSTAR_ variable that nothing reads is named with the closest one
that is."""

from __future__ import annotations

import os

import pytest

from clients.cli import _search_config, build_parser
from models import ModelSettings
from search import SearchConfig, SearchSettings
from server.preflight import ConfigError, load_settings, setting_names, unknown_variables
from server.settings import SearchEnv, ServerSettings
from training.config import RoundConfig, build_config
from training.round import parser as round_parser


@pytest.fixture(autouse=True)
def no_search_variables(monkeypatch):
    for name in list(os.environ):
        if name.upper().startswith("RSTAR_SEARCH"):
            monkeypatch.delenv(name)


def shared(settings: SearchSettings) -> dict:
    return {f: getattr(settings, f) for f in SearchSettings.model_fields}


def test_server_cli_and_rounds_start_from_the_same_defaults():
    defaults = SearchSettings().model_dump()
    policy = {"prompt_style", "step_format", "step_delimiter"}  # the policy's, not the search's
    assert SearchConfig().model_dump(exclude=policy) == defaults
    assert ServerSettings().search.model_dump() == defaults
    assert shared(RoundConfig(out="r").search) == defaults
    args = build_parser().parse_args(["solve", "x"])
    cli = _search_config(args, ModelSettings(policy_model="tiny"))
    assert cli.model_dump(exclude=policy) == defaults


def test_the_variables_keep_their_names_and_flags_win_over_them(monkeypatch):
    given = {"candidates": 3, "max_depth": 5, "parallel_rollouts": 6, "temperature": 0.5}
    for name, value in given.items():
        monkeypatch.setenv(f"RSTAR_SEARCH_{name.upper()}", str(value))
    assert ServerSettings().search.model_dump(include=set(given)) == given
    args = build_parser().parse_args(["solve", "x", "--max-depth", "7", "--parallel", "1"])
    cli = _search_config(args, ModelSettings(policy_model="tiny"))
    assert (cli.candidates, cli.max_depth, cli.parallel_rollouts) == (3, 7, 1)
    monkeypatch.setenv("RSTAR_SEARCH_MAX_DEPTH", "0")
    with pytest.raises(ConfigError, match=r"^RSTAR_SEARCH_MAX_DEPTH=0: must be ≥ 1 and ≤ 64"):
        load_settings(SearchEnv)


def test_a_round_reads_the_recorded_name_and_keeps_it_in_its_identity():
    recorded = RoundConfig(out="r", search={"parallel": 4})
    assert recorded.search.parallel_rollouts == 4
    assert recorded.identity()["search"]["parallel"] == 4
    assert "parallel_rollouts" not in recorded.identity()["search"]
    # a search setting a round had no field for stays out of the identity at its default
    assert "final_choice" not in recorded.identity()["search"]
    assert (
        RoundConfig(out="r", search={"final_choice": "best"}).identity()["search"]["final_choice"]
        == "best"
    )
    cfg = build_config(round_parser().parse_args(["--out", "r", "--parallel", "3"]))
    assert cfg.search.parallel_rollouts == 3


def test_an_unknown_variable_is_named_with_the_closest_one():
    lines = unknown_variables(
        {
            "RSTAR_SEARCH_CANDIDATS": "3",
            "RSTAR_PORT": "8000",
            "RSTAR_QWERTYUIOPASDF": "1",
            "HOME": "/root",
        }
    )
    assert lines == [
        "RSTAR_QWERTYUIOPASDF is not a setting, and is ignored",
        "RSTAR_SEARCH_CANDIDATS is not a setting, and is ignored; "
        "did you mean RSTAR_SEARCH_CANDIDATES?",
    ]


def test_every_variable_read_is_known():
    from training.allocator import AllocatorSettings

    known = setting_names()
    assert {
        "RSTAR_SANDBOX",
        "RSTAR_SANDBOX_BACKEND",
        "RSTAR_SEARCH_MAX_DEPTH",
        "RSTAR_PROMPT_STYLE",
        "RSTAR_API_KEYS",
    } <= known
    assert {f"RSTAR_{f}".upper() for f in AllocatorSettings.model_fields} <= known


def test_the_text_format_refuses_the_code_formats_worked_examples():
    from server.preflight import check_step_format

    for style in (None, "system", "bare"):
        check_step_format(ModelSettings(step_format="text", prompt_style=style))
    check_step_format(ModelSettings(step_format="code", prompt_style="few_shot"))
    with pytest.raises(ConfigError, match=r"^RSTAR_PROMPT_STYLE=few_shot: .*STEP_FORMAT=text"):
        check_step_format(ModelSettings(step_format="text", prompt_style="few_shot"))
    flags = {"prompt_style": "--prompt-style", "step_format": "--step-format"}
    with pytest.raises(ConfigError, match=r"^--prompt-style chat: .*--step-format text; use sys"):
        check_step_format(ModelSettings(step_format="text", prompt_style="chat"), flags)
