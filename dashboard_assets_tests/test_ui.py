"""The Dagster UI shows the code location as the code defines it: a real
`dagster-webserver` (instance in PostgreSQL, as `dagster.yaml` configures it)
driven by headless Chromium. The global asset lineage shows every group, every
asset in its group and every dependency edge; the location's schedules and
sensors pages list every schedule and sensor. Screenshots of each page go to
`.local/ui-screenshots/`."""

import contextlib
import math
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from typing import NamedTuple

import pytest
from playwright.sync_api import Page, sync_playwright

from dashboard_assets import settings
from dashboard_assets.definitions import defs
from dashboard_assets.demo import psycopg2_url
from dashboard_assets.local_servers import free_port
from dashboard_assets_tests.conftest import PROJECT_ROOT

CHROMIUM = shutil.which("chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
LOCATION = "dashboard_assets"  # as workspace.yaml names it
SCREENSHOTS = PROJECT_ROOT / ".local" / "ui-screenshots"
WINDOW = {"width": 1600, "height": 1000}

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed: no `chromium` executable on PATH "
                       "(install the system package, e.g. `apt-get install chromium`)"),
]


class Lineage(NamedTuple):
    groups: set[str]
    assets: dict[str, str]  # asset name -> its group
    edges: set[tuple[str, str]]  # (upstream, downstream)


def _wait_until_serving(server: subprocess.Popen, url: str, log_path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"dagster-webserver exited ({server.returncode}):\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/server_info", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"dagster-webserver did not answer within {timeout} s:\n{log_path.read_text()[-3000:]}")


@pytest.fixture
def webserver_url(postgres_server, database_url, redis_url, tmp_path):
    """The code location served by `dagster-webserver` on a free loopback port."""
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").symlink_to(PROJECT_ROOT / "dagster.yaml")
    env = os.environ | {
        "DAGSTER_HOME": str(dagster_home),
        "DAGSTER_POSTGRES_URL": psycopg2_url(postgres_server.create_database("dagster_ui")),
        settings.DATABASE_URL: database_url,
        settings.REDIS_URL: redis_url,
    }
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "webserver.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [str(PROJECT_ROOT / ".venv" / "bin" / "dagster-webserver"), "-w", "workspace.yaml",
             "-h", "127.0.0.1", "-p", str(port)],
            cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the code server goes down with it
        )
    try:
        _wait_until_serving(server, url, log_path)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


@pytest.fixture
def page():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=WINDOW)
            page.set_default_timeout(30_000)
            yield page
        finally:
            browser.close()


def _screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=path, full_page=True)
    print(f"screenshot: {path}")


def _expected_lineage() -> Lineage:
    """The code's asset graph, by the names the UI shows (a key's last part)."""
    graph = defs.resolve_asset_graph()
    keys = graph.get_all_asset_keys()
    names = {key: key.path[-1] for key in keys}
    assert len(set(names.values())) == len(names), "two assets share a name: the graph could not tell them apart"
    assets = {names[key]: graph.get(key).group_name for key in keys}
    edges = {(names[parent], names[key]) for key in keys for parent in graph.get(key).parent_keys}
    return Lineage(set(assets.values()), assets, edges)


def _show_whole_lineage(page: Page, base_url: str) -> None:
    """Open the global lineage with every group expanded and the window tall
    enough for all of it: the graph only draws what is inside the window."""
    page.goto(f"{base_url}/asset-groups")
    page.get_by_role("button", name="settings", exact=True).click()
    page.get_by_role("menuitem", name="Expand all groups").click()
    page.keyboard.press("Escape")  # close the settings menu
    viewport = page.locator("[data-svg-viewport]")
    graph = viewport.locator("svg").first
    graph.locator("foreignObject:not(.group):has([data-tooltip])").first.wait_for()  # asset nodes drawn
    # Expanding zooms the graph to the window's width; make the window as tall as the graph...
    missing_height = graph.bounding_box()["height"] - viewport.bounding_box()["height"]
    if missing_height > 0:
        page.set_viewport_size(WINDOW | {"height": WINDOW["height"] + math.ceil(missing_height) + 50})
    viewport.dispatch_event("dblclick")  # ...and center it again (double-clicking the background),
    page.wait_for_function(_GRAPH_INSIDE_WINDOW)  # which it animates.


_GRAPH_INSIDE_WINDOW = """() => {
  const viewport = document.querySelector('[data-svg-viewport]');
  const [outer, inner] = [viewport, viewport.querySelector('svg')].map(e => e.getBoundingClientRect());
  return inner.top >= outer.top && inner.bottom <= outer.bottom;
}"""


# In the graph's SVG, each group and each asset is a <foreignObject> at its
# bounds, named by the one `data-tooltip` of its header; each edge is a path
# from the right side of its upstream node to an arrowhead just left of its
# downstream node.
_READ_GRAPH = """svg => {
  const box = e => ({name: e.querySelector('[data-tooltip]')?.dataset.tooltip,
                     x: +e.getAttribute('x'), y: +e.getAttribute('y'),
                     width: +e.getAttribute('width'), height: +e.getAttribute('height')});
  const objects = [...svg.querySelectorAll('foreignObject')];
  return {
    groups: objects.filter(e => e.classList.contains('group')).map(box),
    assets: objects.filter(e => !e.classList.contains('group') && e.querySelector('[data-tooltip]')).map(box),
    edges: [...svg.querySelectorAll('path[marker-end]')].map(path => path.getAttribute('d')),
  };
}"""


def _distance(point: tuple[float, float], box: dict) -> float:
    x, y = point
    dx = max(box["x"] - x, 0, x - box["x"] - box["width"])
    dy = max(box["y"] - y, 0, y - box["y"] - box["height"])
    return math.hypot(dx, dy)


def _name_at(point: tuple[float, float], boxes: list[dict], reach: float = 10) -> str | None:
    nearest = min(boxes, key=lambda box: _distance(point, box), default=None)
    return nearest["name"] if nearest and _distance(point, nearest) <= reach else None


def _group_around(asset: dict, groups: list[dict]) -> str | None:
    center = (asset["x"] + asset["width"] / 2, asset["y"] + asset["height"] / 2)
    around = [group for group in groups if _distance(center, group) == 0]
    return min(around, key=lambda group: group["width"] * group["height"])["name"] if around else None


def _shown_lineage(page: Page) -> Lineage:
    drawn = page.locator("[data-svg-viewport] svg").first.evaluate(_READ_GRAPH)
    edges = set()
    for path in drawn["edges"]:
        numbers = [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", path)]
        start, end = (numbers[0], numbers[1]), (numbers[-2], numbers[-1])
        edges.add((_name_at(start, drawn["assets"]), _name_at(end, drawn["assets"])))
    assets = {asset["name"]: _group_around(asset, drawn["groups"]) for asset in drawn["assets"]}
    return Lineage({group["name"] for group in drawn["groups"]}, assets, edges)


def _wait_for_lineage(page: Page, expected: Lineage, timeout: float = 30) -> Lineage:
    """What the graph shows, once it shows `expected` or `timeout` has passed
    (edges arrive from a web worker after the nodes)."""
    deadline = time.monotonic() + timeout
    while (shown := _shown_lineage(page)) != expected and time.monotonic() < deadline:
        page.wait_for_timeout(500)
    return shown


def _listed_names(page: Page, base_url: str, kind: str, count: int) -> set[str]:
    """The names listed on the location's `kind` page: its schedules or sensors."""
    page.set_viewport_size(WINDOW)
    page.goto(f"{base_url}/locations/{LOCATION}/{kind}")
    links = page.locator(f'a[href^="/locations/{LOCATION}/{kind}/"] [title]')
    links.nth(count - 1).wait_for()
    return {link.get_attribute("title") for link in links.all()}


def test_the_ui_shows_every_asset_edge_schedule_and_sensor(webserver_url, page):
    expected = _expected_lineage()
    _show_whole_lineage(page, webserver_url)
    shown = _wait_for_lineage(page, expected)
    _screenshot(page, "lineage")
    assert shown.groups == expected.groups
    assert shown.assets == expected.assets
    assert shown.edges == expected.edges

    schedules = {schedule.name for schedule in defs.schedules}
    shown_schedules = _listed_names(page, webserver_url, "schedules", len(schedules))
    _screenshot(page, "schedules")
    assert shown_schedules == schedules

    sensors = {sensor.name for sensor in defs.sensors}
    shown_sensors = _listed_names(page, webserver_url, "sensors", len(sensors))
    _screenshot(page, "sensors")
    assert shown_sensors == sensors
