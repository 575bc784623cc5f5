"""Make asv's published HTML work without internet, and check that it renders.

``python asv_benchmarks/offline_html.py vendor HTML_DIR NODE_MODULES`` copies the scripts asv
0.6.6's ``index.html`` loads from public CDNs out of the pinned npm packages of
``asv_benchmarks/vendor/package.json`` into ``HTML_DIR/vendor/`` and points the page at them.

``python asv_benchmarks/offline_html.py check HTML_DIR`` serves the page on 127.0.0.1, opens the
graph of a benchmark that has measured values in headless Chromium, and fails unless the graph
was drawn with data (flot's legend lists one entry per plotted series; asv sends a page whose
scripts failed to load to its error page instead).
"""

from __future__ import annotations

import functools
import http.server
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

# CDN address in asv 0.6.6's index.html -> file in node_modules (versions pinned in package.json)
CDN = {
    "https://code.jquery.com/jquery-3.3.1.min.js": "jquery/dist/jquery.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.min.js": "flot/jquery.flot.js",
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.time.min.js": (
        "flot/jquery.flot.time.js"
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.selection.min.js": (
        "flot/jquery.flot.selection.js"
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.categories.min.js": (
        "flot/jquery.flot.categories.js"
    ),
    "https://cdn.jsdelivr.net/npm/flot-orderbars@1.0.0/js/jquery.flot.orderBars.js": (
        "flot-orderbars/js/jquery.flot.orderBars.js"
    ),
    # stupidtable 1.0.1 (asv's choice) is not on npm; 1.1.3 is the same plugin, API unchanged
    "https://cdnjs.cloudflare.com/ajax/libs/stupidtable/1.0.1/stupidtable.min.js": (
        "stupid-table-plugin/stupidtable.min.js"
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/blueimp-md5/2.19.0/js/md5.min.js": (
        "blueimp-md5/js/md5.min.js"
    ),
    "https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/js/bootstrap.min.js": (
        "bootstrap/dist/js/bootstrap.min.js"
    ),
    "https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/css/bootstrap.min.css": (
        "bootstrap/dist/css/bootstrap.min.css"
    ),
}


def vendor(html_dir: Path, node_modules: Path) -> None:
    index = html_dir / "index.html"
    page = index.read_text()
    for url, rel in CDN.items():
        if url not in page:
            raise SystemExit(f"{index} no longer loads {url}: asv changed, update CDN")
        target = html_dir / "vendor" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(node_modules / rel, target)
        page = page.replace(url, f"vendor/{rel}")
    # The CDN tags carry subresource-integrity hashes of the CDN's (minified) files; the npm
    # packages' files differ byte for byte, and a mismatch sends asv to its error page.
    page = re.sub(r'(<(?:script|link)[^>]*"vendor/[^>]*?)\s+integrity="[^"]*"', r"\1", page)
    left = re.findall(r'(?:src|href)="(https?://[^"]+\.(?:js|css))"', page)
    if left:
        raise SystemExit(f"scripts still loaded from the network: {left}")
    index.write_text(page)
    print(f"{index}: {len(CDN)} CDN files served from vendor/")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _serve(html_dir: Path):
    handler = functools.partial(_QuietHandler, directory=str(html_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _first_graph(html_dir: Path) -> str:
    """A benchmark that has at least one measured value in the published graphs."""
    for path in sorted((html_dir / "graphs").glob("branch-*/**/*.json")):
        if re.search(r"\d\.\d", path.read_text()):  # a measured value, not only nulls
            return path.stem
    raise SystemExit(f"no graph with data under {html_dir / 'graphs'}: publish results first")


def check(html_dir: Path, chromium: str = "chromium") -> None:
    benchmark = _first_graph(html_dir)
    server = _serve(html_dir)
    url = f"http://127.0.0.1:{server.server_address[1]}/#{benchmark}"
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                "--virtual-time-budget=20000",
                "--dump-dom",
                url,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
    server.shutdown()
    series = re.findall(r'class="legendLabel"[^>]*>(.*?)</td>', dom)
    if not series:
        raise SystemExit(f"{url}: no plotted series in the rendered page")
    print(f"{url}: graph drawn with {len(series)} series, e.g. {series[0][:80]!r}")


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "vendor":
        vendor(Path(args[0]), Path(args[1]))
    elif command == "check":
        check(Path(args[0]), *args[1:])
    else:
        raise SystemExit(__doc__)
