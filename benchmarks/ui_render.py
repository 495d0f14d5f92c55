"""How large a search tree the page draws smoothly: time to lay out and draw a tree of N nodes,
and to apply one zoom step, in headless Chromium (Debian's chromium and chromium-driver).

Prints figures; it is not a test. Trees are random, MCTS-shaped (up to 4 children a node, 8
levels, a tenth of the nodes invalid), opened as `rstar solve --html` pages.

    python -m benchmarks.ui_render [--sizes 100,500,1000,2000,5000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import tempfile
from pathlib import Path

from search.tree import Tree
from server.ui_page import standalone_page


def random_tree(n: int, seed: int = 0) -> Tree:
    rng = random.Random(seed)
    t = Tree("benchmark")
    open_nodes = [t.root]
    while len(t) < n:
        parent = rng.choice(open_nodes)
        status = "invalid" if rng.random() < 0.1 else ("terminal" if parent.depth >= 6 else "open")
        node = t.add(
            parent,
            status=status,
            reasoning="step",
            code="x = 1\nprint(x)",
            output="1",
            visits=rng.randint(1, 9),
            value_sum=rng.uniform(-3, 3),
            prm_score=rng.uniform(-1, 1),
            answer=str(rng.randint(1, 9)) if status == "terminal" else None,
        )
        parent.status = "expanded" if parent.parent is not None else parent.status
        if status == "open" and node.depth < 8:
            open_nodes.append(node)
        if len(t.children(parent)) >= 4 and parent in open_nodes:
            open_nodes.remove(parent)
        if not open_nodes:
            open_nodes = [t.root]
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", default="100,500,1000,2000,5000")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or "chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,900"):
        opts.add_argument(a)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for n in (int(x) for x in args.sizes.split(",")):
                page = Path(tmp) / f"t{n}.html"
                tree = random_tree(n)
                page.write_text(standalone_page({"tree": tree.to_dict(), "steps": []}))
                driver.get(page.as_uri())
                draw, zoom = [], []
                for _ in range(args.repeats):
                    draw.append(
                        driver.execute_script(
                            "const t = performance.now(); render(); document.body.offsetHeight;"
                            "return performance.now() - t;"
                        )
                    )
                    zoom.append(
                        driver.execute_async_script(
                            "const done = arguments[0]; const t = performance.now();"
                            "state.view.k *= 1.1; applyView();"
                            "requestAnimationFrame(() => requestAnimationFrame("
                            "() => done(performance.now() - t)));"
                        )
                    )
                labels = driver.execute_script(
                    "return !/labels hidden/.test(document.getElementById('counts').textContent)"
                )
                rows.append((n, statistics.median(draw), statistics.median(zoom), labels))
                print(
                    f"  {n} nodes: draw {rows[-1][1]:.1f} ms, zoom frame {rows[-1][2]:.1f} ms",
                    flush=True,
                )
    finally:
        driver.quit()
    print(f"\n{'nodes':>6} {'layout+draw ms':>15} {'zoom frame ms':>14} labels")
    for n, d, z, labels in rows:
        print(f"{n:6} {d:15.1f} {z:14.1f} {'yes' if labels else 'no'}")
    print("smooth = a zoom frame under 16.7 ms (60 fps) and a wave's redraw under ~100 ms")


if __name__ == "__main__":
    main()
