"""The search-tree page in a real browser (headless Chromium through chromedriver, Debian's
`chromium` and `chromium-driver`): against `rstar serve` on the tiny model, a search whose
nodes appear while it runs and a click that shows a step's code and output; against the same
app on a scripted policy (the page is what is tested there), the server's error in the page
for bad input, a closed page cancelling its search, and saved trees (file picker, `?tree=`,
`rstar solve --html`)."""

from __future__ import annotations

import contextlib
import json
import shutil
import threading
import time
import urllib.parse
from pathlib import Path

import httpx
import pytest

from search.tree import Tree
from server.ui_page import standalone_page
from tests.support.scripted import ScriptedPolicy, endless
from tests.support.service import scripted_service
from tests.support.vllm_server import free_port, rstar_serve

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
PAGE = None  # the browser, once started: a failed wait says what the page showed


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium: the tests that drive the page skip without it (the page's own files
    are checked without a browser)."""
    if not (CHROMIUM and DRIVER):
        pytest.skip("needs Debian's chromium and chromium-driver (make setup)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,900",
    ):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    driver.set_script_timeout(30)
    global PAGE
    PAGE = driver
    yield driver
    PAGE = None
    driver.quit()


@pytest.fixture(scope="module")
def server():
    pytest.importorskip("vllm")
    env = {
        "RSTAR_POLICY_MODEL": "tiny",
        "RSTAR_CPU_KV_CACHE_GB": "1",
        "RSTAR_SEARCH_MAX_DEPTH": "4",
        "RSTAR_SANDBOX_WORKERS": "2",
    }
    with rstar_serve(env) as url:
        yield url


@contextlib.contextmanager
def scripted_server(sandbox, **settings):
    """The real app on a scripted policy whose searches never finish, served from its own
    thread (the browser calls block this one)."""
    import uvicorn

    from server.app import create_app

    svc = scripted_service(
        sandbox, ScriptedPolicy(default=endless, delay_s=0.3), cache_max_entries=0, **settings
    )
    port = free_port()
    config = uvicorn.Config(
        create_app(svc, manage_service=False),
        port=port,
        host="127.0.0.1",
        log_config=None,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, timeout_s=30)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="module")
def scripted(sandbox):
    with scripted_server(sandbox) as url:
        yield url


def wait_for(fn, timeout_s: float = 120, every_s: float = 0.1):
    deadline = time.monotonic() + timeout_s
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"the page never got there; it shows: {page_state()}")
        time.sleep(every_s)


def page_state() -> str:
    """What the page said, for a failed wait's message."""
    if PAGE is None:
        return "?"
    return PAGE.execute_script(
        "return ['status', 'error', 'counts'].map("
        "(id) => id + ': ' + document.getElementById(id).textContent).join(' | ')"
    )


def text(driver, css: str) -> str:
    return driver.execute_script(f"return document.querySelector({css!r}).textContent")


def nodes(driver) -> int:
    return driver.execute_script("return document.querySelectorAll('#viewport .node').length")


def first_sight(driver) -> int | str | None:
    """The node count once the page shows a search growing; "done" if it ended unseen."""
    status = text(driver, "#status")
    if status.startswith("searching") and (n := nodes(driver)) > 1:
        return n
    return "done" if status.startswith("done:") else None


def submit(driver, problem: str, algorithm: str, rollouts: int) -> None:
    from selenium.webdriver.support.ui import Select

    box = driver.find_element("id", "problem")
    box.clear()
    box.send_keys(problem)
    Select(driver.find_element("id", "algorithm")).select_by_value(algorithm)
    r = driver.find_element("id", "rollouts")
    r.clear()
    r.send_keys(str(rollouts))
    driver.find_element("id", "solve").click()


def requests_with_status(url: str, status: str) -> float:
    total = 0.0
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith("rstar_requests_total{") and f'status="{status}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.mark.timeout(900)
def test_a_search_grows_in_the_page_and_a_click_shows_its_code(browser, server):
    browser.get(f"{server}/")  # leads to /ui/
    assert browser.current_url.endswith("/ui/")
    # nodes appear while the search still runs. The tiny model samples: when every candidate of
    # its first expansion fails to run, the search ends at once and shows no growth, so another
    # problem is submitted (the same one would get the same expansion from the cache); three
    # such in a row would be a fault, not chance
    seen: int | str = "done"
    for a, b in ((12, 7), (9, 8), (15, 6)):
        submit(browser, f"What is {a}*{b}? Compute it with Python.", "mcts", 8)
        seen = wait_for(lambda: first_sight(browser))
        if seen != "done":
            break
    assert seen != "done", page_state()
    during = seen
    wait_for(lambda: text(browser, "#status").startswith("done:"), timeout_s=600)
    after = nodes(browser)
    assert after >= during > 1
    result = browser.execute_script("return state.result")
    assert after == len(result["tree"]["nodes"])
    winners = browser.execute_script("return document.querySelectorAll('.node.winner').length")
    assert winners == (len(result["steps"]) + 1 if result["steps"] else 0)
    # a click on a node that ran code shows its reasoning, code and output (or error)
    target = next(n for n in result["tree"]["nodes"] if n["code"])
    browser.find_element("css selector", f'.node[data-id="{target["id"]}"] circle').click()
    details = text(browser, "#details")
    assert f"Node #{target['id']}" in details and "Code" in details
    assert target["code"].strip().splitlines()[0] in details
    assert ("Output" in details) or ("Error" in details)
    # folding the root's subtree (the root has children: the tree has more nodes) hides them
    browser.execute_script("toggle(0)")
    assert nodes(browser) == 1 and "folded" in text(browser, "#counts")
    browser.execute_script("toggle(0)")
    assert nodes(browser) == after


@pytest.mark.timeout(600)
def test_bad_input_shows_the_servers_message_in_the_page(browser, scripted):
    browser.get(f"{scripted}/ui/")
    submit(browser, "What is 2+2?", "mcts", 100_000)  # the page allows it, the server's cap not
    wait_for(lambda: browser.find_element("id", "error").is_displayed())
    error = text(browser, "#error")
    assert error.startswith("422") and "rollouts" in error and "RSTAR_MAX_ROLLOUTS" in error, error
    submit(browser, "   ", "mcts", 2)
    wait_for(lambda: "blank" in text(browser, "#error"))


@pytest.mark.timeout(900)
def test_stopping_leaving_or_closing_the_page_cancels_its_search(browser, scripted):
    def cancelled_after(leave) -> None:
        before = requests_with_status(scripted, "499")
        browser.get(f"{scripted}/ui/")
        submit(browser, "Count forever.", "mcts", 64)
        wait_for(lambda: text(browser, "#status").startswith("searching"))
        leave()
        wait_for(lambda: requests_with_status(scripted, "499") > before, timeout_s=60)

    cancelled_after(lambda: browser.find_element("id", "stop").click())
    assert text(browser, "#status").startswith("stopped")
    cancelled_after(lambda: browser.get("about:blank"))
    home = browser.current_window_handle
    browser.switch_to.new_window("tab")

    def close_tab() -> None:
        browser.close()
        browser.switch_to.window(home)

    cancelled_after(close_tab)


def saved_tree() -> Tree:
    t = Tree("What is 3*12 - 7?")
    a = t.add(
        t.root,
        status="expanded",
        reasoning="count boxes",
        code="a = 3 * 12",
        visits=2,
        value_sum=1.0,
        prm_score=0.4,
    )
    t.root.status, t.root.visits = "expanded", 3
    t.add(
        a,
        status="terminal",
        final=True,
        reasoning="print",
        code="print(a - 7)",
        output="29",
        answer="29",
        reward=1.0,
        visits=1,
        value_sum=1.0,
    )
    t.add(
        a,
        status="invalid",
        code="print(b)",
        error="runtime: NameError: name 'b'",
        visits=1,
        value_sum=-1.0,
    )
    t.add(
        t.root,
        status="terminal",
        final=True,
        code="print(30)",
        output="30",
        answer="30",
        reward=-1.0,
        visits=1,
        value_sum=-1.0,
    )
    return t


@pytest.mark.timeout(300)
def test_saved_trees_open_from_a_file_a_url_and_a_standalone_page(browser, scripted, tmp_path):
    tree = saved_tree()
    f = tmp_path / "tree.json"
    f.write_text(tree.to_json())
    browser.get(f"{scripted}/ui/")
    browser.find_element("id", "open-tree").send_keys(str(f))
    wait_for(lambda: nodes(browser) == 5)
    assert "tree.json: 5 nodes" in text(browser, "#status")
    assert "29" in text(browser, "#answers")  # the best-scored answer, first
    browser.find_element("css selector", '.node[data-id="3"] circle').click()
    assert "NameError" in text(browser, "#details"), text(browser, "#details")
    # ?tree= opens a tree at a URL (here a data: URL; on a server, any path it serves)
    url = "data:application/json," + urllib.parse.quote(tree.to_json())
    browser.get(f"{scripted}/ui/?tree={urllib.parse.quote(url)}")
    wait_for(lambda: nodes(browser) == 5)
    # a bad file is an error in the page, not a blank screen
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"answer": 3}))
    browser.find_element("id", "open-tree").send_keys(str(bad))
    wait_for(lambda: "no tree in it" in text(browser, "#error"))
    # `rstar solve --html`'s page: self-contained, even a step's "</script>" cannot break it
    result = {"answer": "29", "steps": [{"node_id": 2}], "alternatives": [], "tree": tree.to_dict()}
    result["tree"]["nodes"][2]["output"] = "</script><b>29</b>"
    page = tmp_path / "one.html"
    page.write_text(standalone_page(result))
    assert "src=" not in page.read_text() and "href=" not in page.read_text()
    browser.get(page.as_uri())
    wait_for(lambda: nodes(browser) == 5)
    assert not browser.find_element("id", "solve-form").is_displayed()
    browser.find_element("css selector", '.node[data-id="2"] circle').click()
    assert "</script><b>29</b>" in text(browser, "#details")
    assert browser.execute_script("return document.querySelectorAll('.node.winner').length") == 3


def test_the_page_ships_in_the_package_with_no_outside_assets():
    ui = Path(__file__).resolve().parents[1] / "server" / "ui"
    for f in ui.iterdir():
        body = f.read_text()
        assert "http://" not in body.replace("http://www.w3.org/2000/svg", "")
        assert "https://" not in body and "cdn" not in body.lower(), f


@pytest.mark.timeout(300)
def test_a_server_with_api_keys_asks_the_page_for_one(browser, sandbox):
    key = "page-key-0123456789"
    with scripted_server(sandbox, api_keys=f"web:{key}") as url:
        browser.get(f"{url}/ui/")
        submit(browser, "Count forever.", "mcts", 4)
        wait_for(lambda: "missing API key" in text(browser, "#error"))
        browser.find_element("id", "api-key").send_keys(key)
        browser.find_element("id", "solve").click()
        wait_for(lambda: text(browser, "#status").startswith("searching"))
        browser.find_element("id", "stop").click()
