"""The README's screenshot of the search-tree page: `rstar serve` on the embedded default, one
MCTS search on a GSM8K problem in headless Chromium, the page captured when it is done.

    python scripts/ui_screenshot.py [--rollouts 8] [--out docs/ui-search-tree.png]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.vllm_server import rstar_serve  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rollouts", type=int, default=8)
    ap.add_argument("--problem-line", type=int, default=1, help="line of gsm8k_test.jsonl")
    ap.add_argument("--out", default=str(ROOT / "docs" / "ui-search-tree.png"))
    args = ap.parse_args()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    data = ROOT.parent / "shared" / "data" / "gsm8k_test.jsonl"
    row = json.loads(data.read_text().splitlines()[args.problem_line - 1])
    env = {"RSTAR_POLICY_MODEL": "default", "RSTAR_CPU_KV_CACHE_GB": "1"}
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or "chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1500,950"):
        opts.add_argument(a)
    with rstar_serve(env) as url:
        driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
        try:
            driver.get(f"{url}/ui/")
            driver.find_element("id", "problem").send_keys(row["problem"])
            r = driver.find_element("id", "rollouts")
            r.clear()
            r.send_keys(str(args.rollouts))
            driver.find_element("id", "solve").click()
            status, read = "", "return document.querySelector('#status').textContent"
            for _ in range(1800):
                status = driver.execute_script(read)
                if status.startswith(("done", "the search failed", "failed")):
                    break
                time.sleep(1)
            print(status)
            ids = driver.execute_script(
                "return (state.result && state.result.steps || []).map(s => s.node_id)"
            )
            if ids:  # show the chosen trajectory's last step in the side panel
                driver.execute_script(f"showNode({ids[-1]})")
            driver.save_screenshot(args.out)
            print(f"wrote {args.out} (gold answer {row['answer'].rsplit('####', 1)[-1].strip()})")
        finally:
            driver.quit()


if __name__ == "__main__":
    main()
