"""The Dagster UI shows the code location as the code defines it: a real
`dagster-webserver` (instance in PostgreSQL, as `dagster.yaml` configures it)
driven by headless Chromium. The global asset lineage shows every group, every
asset in its group and every dependency edge; the location's schedules and
sensors pages list every schedule and sensor. A table asset's page lists its
table's columns, and a chart's page the preview of what it published.
Screenshots of each page go to `.local/ui-screenshots/`."""

import math
import os
import re
import shutil
import subprocess
import time
import urllib.request
from typing import NamedTuple

import pytest
import dagster as dg
from playwright.sync_api import Page, expect, sync_playwright

from dashboard_assets.analytics.assets import analytics_assets
from dashboard_assets.analytics.preview import PREVIEW_ORGANIZATIONS
from dashboard_assets.definitions import defs
from dashboard_assets.local_servers import free_port
from dashboard_assets.resources import PostgresResource, RedisResource
from dashboard_assets.rollups.assets import daily_rollup_assets
from dashboard_assets.table_schemas import table_columns
from dashboard_assets_tests.analytics.conftest import AS_OF
from dashboard_assets_tests.conftest import HISTORY_END, HISTORY_START, PROJECT_ROOT
from dashboard_assets_tests.helpers import materialize_days, read_table, stop_process_group

CHROMIUM = shutil.which("chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
LOCATION = "dashboard_assets"  # as workspace.yaml names it
SCREENSHOTS = PROJECT_ROOT / ".local" / "ui-screenshots"
WINDOW = {"width": 1600, "height": 1000}
ASSET_PAGE_HEIGHT = 2000


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
def webserver_url(dagster_home, tmp_path):
    """The code location served by `dagster-webserver` on a free loopback port."""
    env = dict(os.environ)
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
        stop_process_group(server, timeout=5)


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



def _materialize_into_the_ui(database_url: str, redis_url: str) -> None:
    """daily_metrics over the generated history, then revenue_trend_12m from it,
    as runs of the instance that the webserver shows."""
    resources = {"postgres": PostgresResource(database_url=database_url), "redis": RedisResource(url=redis_url)}
    [daily_metrics] = [asset for asset in daily_rollup_assets if asset.key.path[-1] == "daily_metrics"]
    [trend] = [asset for asset in analytics_assets if asset.key.path[-1] == "revenue_trend_12m"]
    with dg.DagsterInstance.get() as instance:
        assert materialize_days(database_url, HISTORY_START, HISTORY_END, assets=[daily_metrics],
                                instance=instance).success
        assert dg.materialize([trend], resources=resources, instance=instance, run_config={
            "ops": {"revenue_trend_12m": {"config": {"as_of": AS_OF.isoformat()}}}}).success


def _open_asset(page: Page, base_url: str, name: str) -> None:
    page.set_viewport_size(WINDOW | {"height": ASSET_PAGE_HEIGHT})  # the page scrolls inside; show all of it
    page.goto(f"{base_url}/assets/{name}")


def test_the_ui_shows_a_tables_columns_and_a_charts_preview(dagster_home, webserver_url, database_url, redis_url,
                                                             page):
    _materialize_into_the_ui(database_url, redis_url)

    _open_asset(page, webserver_url, "daily_metrics")
    columns = page.locator("table", has=page.get_by_text("Column name", exact=True))
    rows = columns.locator("tbody tr")
    expect(rows).to_have_count(len(table_columns("daily_metrics")))
    for row, (name, column_type) in zip(rows.all(), table_columns("daily_metrics"), strict=True):
        expect(row.locator("td").nth(0)).to_have_text(name)
        expect(row.locator("td").nth(1)).to_have_text(column_type)
    expect(page.get_by_text("dashboard.daily_metrics", exact=True).first).to_be_visible()
    _screenshot(page, "daily_metrics")

    _open_asset(page, webserver_url, "revenue_trend_12m")
    first = read_table(database_url, "SELECT organization_id, payload FROM dashboard.revenue_trend_12m "
                                     "ORDER BY organization_id LIMIT 1")
    org, points = first["organization_id"][0], first["payload"][0]["points"]
    preview = page.locator("tr", has=page.get_by_text("preview", exact=True)).locator("table")
    expect(preview.locator("th")).to_have_text(["organization", "month", "revenue"])
    expect(preview.locator("tbody tr").first.locator("td")).to_have_text([org, points[-3]["month"],
                                                                          str(points[-3]["revenue"])])
    expect(preview.locator("tbody tr")).to_have_count(3 * PREVIEW_ORGANIZATIONS)
    _screenshot(page, "revenue_trend_12m")
