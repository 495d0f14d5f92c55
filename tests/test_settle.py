"""Adaptive compute: the rules that settle an answer (their arithmetic against values computed
here another way), every algorithm stopping on them with the scripted policy and the real
nsjail sandbox, what stopping saved, a rule that never fires changing nothing, and the names
through `/solve`, its stream, the OpenAI route and the command line (a scripted service: no
model is loaded)."""

import json
import math

import httpx
import pytest
from pydantic import ValidationError

from clients.cli import build_parser
from search import Budget, Components, SearchConfig, run_search
from search.beam import terminals_left as beam_terminals_left
from search.budget import Tracker
from search.mcts import terminals_left as mcts_terminals_left
from search.settle import leader_probability, settled, tokens_saved, unbeatable
from server.app import create_app
from tests.support.scripted import ScriptedPolicy, six_or_seven, thirty
from tests.support.service import metric, scripted_service

# --- the rules -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("votes", "remaining", "expected"),
    [
        ([5, 2], 2, True),  # 5 > 2 + 2
        ([4, 2], 2, False),  # the runner-up could tie
        ([2, 5], 2, True),  # in any order
        ([3], 2, True),  # no runner-up yet
        ([3], 3, False),
        ([3, 1, 1], 1, True),  # only the runner-up counts against the leader
        ([2, 2], 0, False),  # a tie now is not a lead
        ([], 0, False),  # no votes at all
    ],
)
def test_unbeatable_needs_a_strict_lead_over_every_terminal_left(votes, remaining, expected):
    assert unbeatable(votes, remaining) is expected


def beta_tail(a: int, b: int, steps: int = 4000) -> float:
    """P(X > 1/2) for X ~ Beta(a, b), by Simpson's rule over [1/2, 1]."""
    norm = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b))
    h = 0.5 / steps
    total = 0.0
    for i in range(steps + 1):
        x = 0.5 + i * h
        weight = 1 if i in (0, steps) else (4 if i % 2 else 2)
        total += weight * x ** (a - 1) * (1 - x) ** (b - 1)
    return norm * total * h / 3


@pytest.mark.parametrize(
    ("leader", "runner_up"), [(0, 0), (1, 0), (3, 0), (4, 0), (5, 2), (7, 3), (10, 9), (2, 5)]
)
def test_the_beta_posterior_matches_the_integral_of_its_density(leader, runner_up):
    assert leader_probability(leader, runner_up) == pytest.approx(
        beta_tail(leader + 1, runner_up + 1), abs=1e-9
    )


def test_the_beta_posterior_at_the_values_the_default_threshold_turns_on():
    assert leader_probability(0, 0) == 0.5  # no votes: a coin toss
    assert leader_probability(1, 0) == 0.75
    assert leader_probability(3, 0) == 15 / 16  # below 0.95: three agreeing votes are not enough
    assert leader_probability(4, 0) == 31 / 32  # four are
    assert leader_probability(5, 1) + leader_probability(1, 5) == pytest.approx(1.0)


def test_a_rule_settles_only_when_something_is_left_to_save():
    assert not settled("budget", [9], 5, 0.95)  # the rule off
    assert not settled("confident", [9], 0, 0.95)  # nothing left to run
    assert settled("confident", [4], 20, 0.95) and not settled("unbeatable", [4], 20, 0.95)
    assert not settled("confident", [3], 20, 0.95)  # 15/16 < 0.95
    assert settled("confident", [3], 20, 0.9)  # the threshold is the user's
    assert settled("confident", [3], 2, 0.99)  # unbeatable is decided whatever the threshold
    assert not settled("confident", [5, 1], 20, 0.95)  # P = 0.9375 with the runner-up at 1
    assert not settled("confident", [6, 6], 20, 0.6)  # a tie never settles


def test_tokens_saved_is_the_budget_at_the_mean_cost_less_what_was_spent():
    assert tokens_saved(10.0, 8, 30, None) == 50
    assert tokens_saved(10.0, 8, 30, 40) == 10  # never beyond the token budget
    assert tokens_saved(10.0, 2, 30, None) == 0  # never negative


def test_the_bounds_on_terminals_still_to_come():
    """MCTS: every rollout in flight or still allowed may expand one node per depth into
    `candidates`; beam search: the last wave may finish every candidate of its beams."""
    t = Tracker(Budget(rollouts=10))
    t.started_rollouts = 4
    config = SearchConfig(candidates=3, max_depth=5)
    assert mcts_terminals_left(t, config, in_flight=2, gold=None) == (2 + 6) * 5 * 3
    more = SearchConfig(candidates=3, max_depth=5, unsolved_rollouts=20)
    assert mcts_terminals_left(t, more, in_flight=2, gold="7") == (2 + 16) * 5 * 3
    assert beam_terminals_left(8, 4, 4, 2) == 3 + 4 * 2
    assert beam_terminals_left(8, 7, 4, 2) == 0 + 1 * 2


def test_the_budget_refuses_a_confidence_that_decides_nothing_or_never():
    for bad in (0.5, 1.0, 0.2):
        with pytest.raises(ValidationError) as e:
            Budget(settle_confidence=bad)
        assert e.value.errors()[0]["loc"] == ("settle_confidence",)
    with pytest.raises(ValidationError, match="stop_when"):
        Budget(stop_when="sometimes")
    assert Budget().stop_when == "budget" and Budget().settle_confidence == 0.95


# --- the algorithms --------------------------------------------------------------------------


def many_ways_to_thirty(path):
    """Two distinct steps at each of two depths, then two distinct final steps printing 30."""
    k = len(path) + 1
    if k < 3:
        return [f"# Step {k}: way {i}\nv{k} = {i}\n<end_of_step>" for i in range(2)]
    return [f"# Step {k}: answer {i}\nprint(30 + 0 * {i})\n<end_of_code>" for i in range(2)]


def one_ends_one_goes(path):
    """At every depth one candidate prints 30 and ends, the other goes on."""
    k = len(path) + 1
    return [
        f"# Step {k}: done\nprint(30)\n<end_of_code>",
        f"# Step {k}: go on\nv{k} = {k}\n<end_of_step>",
    ]


def thirty_or_thirty_one(path):
    """Two first steps, each followed by a final step printing 30 or 31: every tie."""
    if not path:
        return [f"# Step 1: way {i}\nv = {i}\n<end_of_step>" for i in range(2)]
    return [
        "# Step 2: thirty\nprint(30)\n<end_of_code>",
        "# Step 2: thirty-one\nprint(31)\n<end_of_code>",
    ]


@pytest.mark.parametrize("algorithm", ["self_consistency", "best_of_n"])
async def test_chains_stop_once_the_vote_is_settled(algorithm, sandbox):
    """Under a rule, chains start four at a time: four agreeing votes settle `confident`
    (P = 31/32); `unbeatable` needs eight of twelve (8 > 0 + 4)."""
    policy = ScriptedPolicy(default=thirty)
    budget = Budget(rollouts=12, stop_when="confident")
    r = await run_search(algorithm, "p", Components(policy, sandbox), budget)
    assert r.stopped_by == "settled" and r.answer == "30" and r.usage.rollouts == 4
    assert policy.step_batches == [1, 4]  # four chains, then nothing more started
    # every chain finished: the eight not run, at the mean cost of the four
    assert r.usage.tokens_saved == 2 * r.usage.tokens > 0

    r = await run_search(
        algorithm,
        "p",
        Components(ScriptedPolicy(default=thirty), sandbox),
        budget.model_copy(update={"stop_when": "unbeatable"}),
    )
    assert r.stopped_by == "settled" and r.usage.rollouts == 8
    assert r.usage.tokens_saved == round(r.usage.tokens / 2)


@pytest.mark.parametrize("rule", ["unbeatable", "confident"])
async def test_chains_whose_answers_split_spend_the_whole_budget(rule, sandbox):
    policy = ScriptedPolicy(default=six_or_seven)
    budget = Budget(rollouts=12, stop_when=rule, settle_confidence=0.6)
    r = await run_search("self_consistency", "p", Components(policy, sandbox), budget)
    assert r.stopped_by == "finished" and r.usage.rollouts == 12
    assert [a.count for a in r.alternatives] == [6, 6]
    assert r.usage.tokens_saved == 0  # the rule was on and saved nothing


async def test_with_the_rule_off_chains_start_together_and_nothing_is_estimated(sandbox):
    policy = ScriptedPolicy(default=thirty)
    r = await run_search("self_consistency", "p", Components(policy, sandbox), Budget(rollouts=12))
    assert r.stopped_by == "finished" and r.usage.rollouts == 12
    assert policy.step_batches == [1, 12] and policy.calls[0][0].n == 12
    assert r.usage.tokens_saved is None


async def test_mcts_stops_once_its_terminals_settle(sandbox):
    """Each rollout reaches two terminals answering 30: two rollouts give four votes."""
    config = SearchConfig(candidates=2, max_depth=4, parallel_rollouts=1)
    budget = Budget(rollouts=16, stop_when="confident")
    policy = ScriptedPolicy(default=many_ways_to_thirty)
    r = await run_search("mcts", "p", Components(policy, sandbox), budget, config)
    assert r.stopped_by == "settled" and r.answer == "30"
    assert r.usage.rollouts == 2 and [a.count for a in r.alternatives] == [4]
    assert r.usage.tokens_saved == 7 * r.usage.tokens  # 14 more rollouts at the mean of 2

    off = await run_search(
        "mcts",
        "p",
        Components(ScriptedPolicy(default=many_ways_to_thirty), sandbox),
        Budget(rollouts=16),
        config,
    )
    assert off.stopped_by == "exhausted" and [a.count for a in off.alternatives] == [8]
    assert off.usage.tokens > r.usage.tokens


async def test_beam_search_stops_once_its_finished_beams_settle(sandbox):
    """One beam finishes a trajectory a wave: the fourth settles the vote, half the budget."""
    budget = Budget(rollouts=8, stop_when="confident")
    policy = ScriptedPolicy(default=one_ends_one_goes)
    c = Components(policy, sandbox)
    r = await run_search("beam_search", "p", c, budget, SearchConfig(candidates=2))
    assert r.stopped_by == "settled" and r.answer == "30" and r.usage.rollouts == 4
    assert r.usage.tokens_saved == r.usage.tokens


@pytest.mark.parametrize(("rule", "ended"), [("confident", 4), ("unbeatable", 6)])
async def test_particles_stop_once_the_finished_ones_settle(rule, ended, sandbox):
    """Half the particles finish every wave: four votes with four alive settle `confident`,
    six with two alive `unbeatable`."""
    budget = Budget(rollouts=8, stop_when=rule)
    policy = ScriptedPolicy(default=one_ends_one_goes)
    r = await run_search(
        "particle_filtering", "p", Components(policy, sandbox), budget, SearchConfig(seed=0)
    )
    assert r.stopped_by == "settled" and r.answer == "30" and r.usage.rollouts == ended
    assert r.usage.tokens_saved > 0


@pytest.mark.parametrize("algorithm", ["mcts", "beam_search", "particle_filtering"])
async def test_a_rule_that_never_fires_changes_nothing_but_the_estimate(algorithm, sandbox):
    """Every vote is a tie, so no rule settles it: the search is the one the rule off makes."""
    config = SearchConfig(candidates=2, max_depth=4, parallel_rollouts=1, seed=0)

    async def search(budget):
        policy = ScriptedPolicy(default=thirty_or_thirty_one)
        r = await run_search(algorithm, "p", Components(policy, sandbox), budget, config)
        return r, policy

    on, on_policy = await search(Budget(rollouts=4, stop_when="confident"))
    off, off_policy = await search(Budget(rollouts=4))
    assert on.stopped_by == off.stopped_by != "settled"
    assert (on.usage.tokens_saved, off.usage.tokens_saved) == (0, None)
    skip = {"usage": {"elapsed_s", "tokens_saved"}}
    assert on.model_dump(exclude=skip) == off.model_dump(exclude=skip)
    assert [len(c) for c in on_policy.calls] == [len(c) for c in off_policy.calls]


# --- through the server and the command line -------------------------------------------------


@pytest.fixture
def app_client(sandbox):
    """An httpx client on the real app over a scripted policy that always answers 30."""

    def make(**settings):
        svc = scripted_service(sandbox, ScriptedPolicy(default=thirty), **settings)
        app = create_app(svc, manage_service=False)
        transport = httpx.ASGITransport(app=app)
        return svc, httpx.AsyncClient(transport=transport, base_url="http://t")

    return make


SETTLING = {
    "problem": "What is 6*5?",
    "algorithm": "self_consistency",
    "budget": {"rollouts": 12, "stop_when": "confident"},
    "cache": False,
}


@pytest.mark.parametrize(
    ("budget", "field", "says"),
    [
        ({"settle_confidence": 1.0}, "settle_confidence", "less than 1"),
        ({"settle_confidence": 0.5}, "settle_confidence", "greater than 0.5"),
        ({"settle_confidence": "high"}, "settle_confidence", "number"),
        ({"stop_when": "sometimes"}, "stop_when", "'budget', 'unbeatable' or 'confident'"),
    ],
)
async def test_a_bad_stop_rule_is_a_422_naming_the_field(app_client, budget, field, says):
    _, client = app_client()
    async with client:
        r = await client.post("/solve", json={"problem": "x", "budget": budget})
        assert r.status_code == 422
        err = r.json()["detail"][0]
        assert err["loc"] == ["body", "budget", field] and says in err["msg"]
        chat = {"model": "rstar-mcts", "messages": [{"role": "user", "content": "x"}]}
        r = await client.post("/v1/chat/completions", json={**chat, "budget": budget})
        assert r.status_code == 400 and r.json()["error"]["param"] == f"budget.{field}"


async def test_solve_reports_a_settled_search_and_what_it_saved(app_client):
    svc, client = app_client()
    async with client:
        r = await client.post("/solve", json=SETTLING)
    body = r.json()
    assert r.status_code == 200 and body["stopped_by"] == "settled" and body["answer"] == "30"
    assert body["usage"]["rollouts"] == 4 and body["usage"]["tokens_saved"] > 0
    assert metric(svc, "rstar_searches_settled_total") == 1
    assert metric(svc, "rstar_tokens_saved_total") == body["usage"]["tokens_saved"]


async def test_the_streams_end_says_why_the_search_stopped(app_client):
    _, client = app_client()
    async with client:
        r = await client.post("/solve", json=SETTLING, headers={"accept": "text/event-stream"})
        blocks = [b.splitlines() for b in r.text.strip().split("\n\n")]
        events = [(b[0].removeprefix("event: "), b[1].removeprefix("data: ")) for b in blocks]
        assert [e for e, _ in events][-1] == "result"
        result = json.loads(events[-1][1])
        assert result["stopped_by"] == "settled" and result["usage"]["tokens_saved"] > 0

        chat = {
            "model": "rstar-self_consistency",
            "messages": [{"role": "user", "content": "What is 6*5?"}],
            "budget": SETTLING["budget"],
            "cache": False,
        }
        r = await client.post("/v1/chat/completions", json=chat)
        extra = r.json()["rstar"]
        assert extra["stopped_by"] == "settled" and extra["usage"]["tokens_saved"] > 0
        r = await client.post("/v1/chat/completions", json={**chat, "stream": True})
        chunks = [
            json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")
        ]
        thinking = [c["choices"][0]["delta"].get("reasoning_content") for c in chunks]
        said = [t for t in thinking if t]
        assert said[-1].startswith("stopped by settled after 4 rollouts, about ")
        assert said[-1].endswith(" tokens saved\n")


async def test_the_servers_default_rule_applies_to_requests_that_name_none(app_client):
    _, client = app_client(default_stop_when="confident", default_settle_confidence=0.9)
    body = {**SETTLING, "budget": {"rollouts": 12}}
    async with client:
        r = await client.post("/solve", json=body)
        assert r.json()["stopped_by"] == "settled" and r.json()["usage"]["rollouts"] == 4
        body["budget"]["stop_when"] = "budget"  # a request may still spend it all
        r = await client.post("/solve", json=body)
        assert r.json()["stopped_by"] == "finished" and r.json()["usage"]["tokens_saved"] is None


def test_rstar_solve_takes_the_rule_as_flags(capsys):
    parser = build_parser()
    args = parser.parse_args(
        ["solve", "--stop-when", "confident", "--settle-confidence", "0.9", "p"]
    )
    assert (args.stop_when, args.settle_confidence) == ("confident", 0.9)
    args = parser.parse_args(["solve", "p"])
    assert (args.stop_when, args.settle_confidence) == (None, None)  # the budget's defaults
    with pytest.raises(SystemExit) as e:
        parser.parse_args(["solve", "--settle-confidence", "1", "p"])
    assert e.value.code == 2
    assert "--settle-confidence: must be > 0.5 and < 1, got 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser.parse_args(["solve", "--stop-when", "sometimes", "p"])
    assert "invalid choice: 'sometimes'" in capsys.readouterr().err
