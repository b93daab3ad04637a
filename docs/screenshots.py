"""Open pages of the built site in headless Chromium, check what a reader sees,
and take screenshots.

Usage, after the site is built (``sphinx-build -W -b html docs docs/_build/html``)
and with Chromium installed (Debian: ``apt-get install -y chromium``)::

    python docs/screenshots.py [--html docs/_build/html] [--out docs/_build/screenshots]

For every page (the index, the FlexCMH API page and the quick-start example)
the page is loaded once to read its DOM after the scripts ran, and once to
save a PNG.  The DOM checks fail the script (exit status 1) when the top
navigation is missing, a figure's image file is absent, or math is left
unrendered (MathJax turns every ``\\(...\\)`` into an ``mjx-container``).
Nothing is fetched from the network: the site serves its own MathJax.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

# (page, window width, window height, what must render on it)
PAGES = (
    ("index.html", 1400, 1800, ("navigation",)),
    ("api/generated/flexcmh_fast.FlexCMH.html", 1400, 1800, ("navigation",)),
    ("auto_examples/plot_01_quick_start.html", 1400, 3600, ("navigation", "figures", "math")),
)
NAV_TARGETS = ("user_guide.html", "auto_examples/index.html", "api/index.html",
               "changelog.html")
# Time the page's scripts get before the DOM is read or the screenshot taken.
SCRIPT_BUDGET_MS = "15000"


def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    sys.exit("screenshots.py: no Chromium found (Debian: apt-get install -y chromium)")


def chromium(binary, *args):
    command = [binary, "--headless", "--disable-gpu", "--hide-scrollbars",
               "--no-first-run", "--virtual-time-budget=" + SCRIPT_BUDGET_MS, *args]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.insert(1, "--no-sandbox")  # Chromium refuses to run as root otherwise
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)


def check_dom(root, page, dom, needs):
    """Problems a reader would see on ``page`` of the site in ``root``, as
    sentences (empty: none)."""
    problems = []
    if "navigation" in needs:
        navbar = re.search(r'<nav[^>]*class="[^"]*bd-header.*?</nav>', dom, re.S) or \
            re.search(r'class="[^"]*navbar-nav.*?</ul>', dom, re.S)
        links = re.findall(r'href="([^"]+)"', navbar.group(0)) if navbar else []
        targets = {(page.parent / unquote(urlsplit(link).path)).resolve()
                   for link in links if not link.startswith(("http", "#"))}
        for target in NAV_TARGETS:
            if (root / target).resolve() not in targets:
                problems.append(f"the top navigation has no link to {target}")
    if "figures" in needs:
        images = re.findall(r'<img[^>]+class="[^"]*sphx-glr[^"]*"[^>]*>', dom)
        if not images:
            problems.append("no gallery figure")
        for tag in images:
            source = re.search(r'src="([^"]+)"', tag).group(1)
            if not (page.parent / unquote(source)).is_file():
                problems.append(f"figure {source} is missing")
    if "math" in needs:
        rendered = dom.count("<mjx-container")
        left = len(re.findall(r'class="math[^"]*">\s*\\\(', dom)) + \
            len(re.findall(r'<div class="math[^"]*">\s*\\\[', dom))
        if rendered == 0 or left:
            problems.append(f"math not rendered ({rendered} formulas rendered, {left} left as "
                            "TeX source)")
    return problems


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--html", default="docs/_build/html", help="the built site")
    parser.add_argument("--out", default="docs/_build/screenshots", help="folder for the PNGs")
    args = parser.parse_args()
    root = Path(args.html).resolve()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    binary = find_chromium()
    failed = False
    for name, width, height, needs in PAGES:
        page = root / name
        if not page.is_file():
            sys.exit(f"screenshots.py: {page} does not exist; build the site first")
        url = page.as_uri()
        dom = chromium(binary, "--dump-dom", url).stdout
        problems = check_dom(root, page, dom, needs)
        png = out / (name.replace("/", "_").removesuffix(".html") + ".png")
        chromium(binary, f"--window-size={width},{height}", f"--screenshot={png}", url)
        status = "ok" if not problems else "; ".join(problems)
        print(f"{name}: {png} ({png.stat().st_size // 1024} KB), checks: {status}")
        failed |= bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
