"""The Airflow UI in a real headless Chromium, against the demo's live Airflow (``make demo``'s code path).

What a user sees, not what the REST API says: the connection form for type ``openeo`` shows the provider's
fields, the grid and the run's task table label each mapped task instance with its row (``"<row id>: <title>"``),
the "openEO job" extra link of a mapped task instance opens the batch view's page of that row, which links to the
job on its own backend, and the batch view (the provider's plugin) shows a batch while it runs and after: counts
per status and backend, a map of its tiles coloured by status, its rows; its screenshots go to ``docs/``.

Chromium and chromedriver come from Debian's ``chromium`` / ``chromium-driver`` packages
(``scripts/ensure_browser.sh``), never from a browser download: the Service gets chromedriver's path, so
Selenium Manager is never asked. Without them, or without ``selenium``, every test skips and says what is missing.
Screenshots are kept in ``build/test-artifacts/ui/`` (one per check, and the last page of every test).

Airflow 3's UI is a React single-page app: every element is awaited explicitly, and located by what the UI
itself keeps stable (``data-testid`` attributes, form field names, visible labels), not by generated CSS classes.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import openeo
import pytest

from airflow_provider_openeo.batch_view.urls import batches_path, task_instance_path
from airflow_provider_openeo.get_provider_info import get_provider_info
from airflow_provider_openeo.operators.openeo import holds_no_row
from deploy.demo import DAG_ID, DEFAULT_CONFIG, Demo, DemoReport, load_config
from local_backend.credentials import BASIC_PASSWORD, BASIC_USER
from tests.conftest import REPO

try:
    from selenium import webdriver
    from selenium.common.exceptions import ElementNotInteractableException, TimeoutException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait
except ImportError:  # the tests skip, saying so (see ``binaries``)
    webdriver = None

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]  # the first test also starts the demo

ARTIFACTS = REPO / "build" / "test-artifacts" / "ui"
GROUP = "openeo_job_batch"
BACKENDS = ("foo", "bar")
ROWS = 6
WAIT = 30.0  # seconds for any element; the SPA fetches each page's data after rendering its frame
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
)

#: The openeo connection form's extra fields: label -> (form input name, input type). Kept here, not derived,
#: so a field dropped from get_provider_info() fails this test instead of silently shrinking it.
EXTRA_FIELDS = {
    "Authentication": ("element_auth_method", "hidden"),  # a select; its value travels in a hidden input
    "OIDC provider id": ("element_oidc_provider_id", "text"),
    "OIDC client id": ("element_client_id", "text"),
    "OIDC client secret": ("element_client_secret", "password"),
    "OIDC refresh token": ("element_refresh_token", "password"),
    "Access token": ("element_access_token", "password"),
    "Request timeout (s)": ("element_timeout", "text"),
    "404s before a job counts as gone": ("element_job_gone_polls", "text"),
    "Seconds of 404s before a job counts as gone": ("element_job_gone_seconds", "text"),
}


# -- the browser -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BrowserBinaries:
    chromium: str
    chromedriver: str


@pytest.fixture(scope="module")
def binaries() -> BrowserBinaries:
    """Chromium, chromedriver and selenium, or a skip naming what is missing and how to get it."""
    missing = []
    if webdriver is None:
        missing.append("the Python package selenium (pip install -e '.[test]')")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    chromedriver = shutil.which("chromedriver")
    if chromium is None:
        missing.append("Debian package chromium")
    if chromedriver is None:
        missing.append("Debian package chromium-driver (chromedriver)")
    if missing:
        pytest.skip(f"browser tests need {', '.join(missing)}: run scripts/ensure_browser.sh as root")
    return BrowserBinaries(chromium, chromedriver)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def demo(binaries: BrowserBinaries) -> Iterator[tuple[Demo, DemoReport]]:
    """The demo's deployment with a finished 6-row run, kept running while the browser looks at it."""
    fast = {"parallel_jobs": 2, "queue_seconds": 0.5, "run_seconds": 2}
    config = load_config(DEFAULT_CONFIG, rows=ROWS, api_port=None, backends={"foo": fast, "bar": fast})
    workdir = REPO / "build" / "test-ui-browser" / uuid.uuid4().hex[:8]
    out = io.StringIO()
    deployment = Demo(config, workdir, out=out)
    try:
        report = deployment.run(deployment.start(), still_running=True)
        assert report.state == "success", out.getvalue()
        yield deployment, report
    finally:
        deployment.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def browser(
    binaries: BrowserBinaries, demo: tuple[Demo, DemoReport], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """A fresh headless Chromium profile, logged in to the demo's UI through SimpleAuthManager's login page."""

    options = webdriver.ChromeOptions()
    options.binary_location = binaries.chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    driver = webdriver.Chrome(options=options, service=Service(executable_path=binaries.chromedriver))
    try:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        _log_in(driver, demo[0])
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """The logged-in browser for one test; afterwards a screenshot of where it ended (on a failure: what it saw)."""
    yield browser
    browser.switch_to.window(browser.window_handles[0])
    _shot(browser, f"last-page-{request.node.name}")


def _wait(driver: Any, timeout: float = WAIT) -> Any:
    return WebDriverWait(driver, timeout)


def _typed(element: Any, text: str) -> Any:
    """A wait condition that types ``text`` into ``element`` once it takes keys (true when it did)."""

    def typed(_driver: Any) -> bool:
        try:
            element.send_keys(text)
        except ElementNotInteractableException:
            return False
        return True

    return typed


def _shot(driver: Any, name: str) -> Path:
    path = ARTIFACTS / f"{name.replace('/', '_').replace('[', '-').replace(']', '')}.png"
    driver.save_screenshot(str(path))
    return path


def _log_in(driver: Any, deployment: Demo) -> None:

    user, password = deployment.airflow.login or ("", "")
    driver.get(deployment.airflow.url)
    wait = _wait(driver)
    wait.until(lambda d: "/auth/login" in d.current_url)  # the UI sends a visitor without a token to log in
    wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "input[name=username]"))).send_keys(user)
    driver.find_element(By.CSS_SELECTOR, "input[name=password]").send_keys(password)
    _shot(driver, "login")
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait.until(lambda d: "/auth/login" not in d.current_url)
    wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "[data-testid=nav-dags-link]")))


def _run_url(deployment: Demo, report: DemoReport) -> str:
    return f"{deployment.airflow.url}/dags/{DAG_ID}/runs/{quote(report.run_id, safe='')}"


def _labels(report: DemoReport, backend: str | None = None) -> list[str]:
    """``"<row id>: <title>"`` of the job table's rows (on ``backend``): the map_index_template's promise."""
    table = report.table if backend is None else report.table[report.table["backend_name"] == backend]
    return sorted(f"{row_id}: {title}" for row_id, title in table["title"].items())


def _map_index_cells(driver: Any) -> list[str]:
    """The non-empty "Map Index" cells of the task table on the page, read in one go, but for the instances that
    ran no row (``no row left (<backend>)``: it found nothing left and skipped the unused ones; those show
    ``no row yet (<backend>)`` or, never started, their bare map index).

    One script call, not an element per cell: React re-renders the table while it refreshes, and an element
    found a moment earlier can be gone (stale) by the time its text is read.
    """
    texts = driver.execute_script(
        "return Array.from(document.querySelectorAll('[data-testid=table-cell-rendered_map_index]'))"
        ".map(cell => cell.innerText.trim())"
    )
    # unlabelled instances (skipped unused) show their bare map index
    return sorted(text for text in texts if text and not text.isdigit() and not holds_no_row(text))


def _wait_for_labels(driver: Any, expected: list[str]) -> list[str]:
    """The table's labels once they equal ``expected``, or the last ones seen after the wait (the test compares)."""
    seen: list[str] = []

    def settled(d: Any) -> bool:
        seen[:] = _map_index_cells(d)
        return seen == expected

    with contextlib.suppress(TimeoutException):
        _wait(driver).until(settled)
    return seen


# -- (a) the connection form -------------------------------------------------------------------------------------


def test_connection_form_for_type_openeo_shows_our_fields(page: Any, demo: tuple[Demo, DemoReport]) -> None:

    driver, wait = page, _wait(page)
    conn_type = next(c for c in get_provider_info()["connection-types"] if c["connection-type"] == "openeo")
    assert {field["label"] for field in conn_type["conn-fields"].values()} == set(EXTRA_FIELDS)

    driver.get(f"{demo[0].airflow.url}/connections")
    add = (By.XPATH, "//button[normalize-space()='Add Connection']")
    wait.until(ec.element_to_be_clickable(add)).click()
    dialog = wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "[role=dialog]")))
    # the dialog opens with an animation: its type box is in the page, even displayed, before it takes keys
    conn_type_box = wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "[role=dialog] input[role=combobox]")))
    wait.until(_typed(conn_type_box, conn_type["hook-name"]))
    option = (By.XPATH, f"//*[@role='option'][normalize-space()='{conn_type['hook-name']}']")
    wait.until(ec.element_to_be_clickable(option)).click()

    # standard fields: relabelled, and the hidden ones really hidden
    wait.until(
        ec.visibility_of_element_located((By.XPATH, "//*[@role='dialog']//label[normalize-space()='Backend URL']"))
    )
    standard = {label.text.strip() for label in dialog.find_elements(By.TAG_NAME, "label") if label.is_displayed()}
    assert {"Backend URL", "User name (basic auth)", "Password"} <= standard
    host = dialog.find_element(By.CSS_SELECTOR, "input[name=host]")
    assert host.get_attribute("placeholder") == "https://openeo.dataspace.copernicus.eu"
    assert dialog.find_elements(By.CSS_SELECTOR, "input[name=port], input[name=schema]") == []

    extra = (By.XPATH, "//*[@role='dialog']//button[normalize-space()='Extra Fields']")
    wait.until(ec.element_to_be_clickable(extra)).click()
    for label, (name, kind) in EXTRA_FIELDS.items():
        shown = (By.XPATH, f"//*[@role='dialog']//label[normalize-space()='{label}']")
        field = wait.until(ec.visibility_of_element_located(shown)).find_element(
            By.XPATH, "./ancestor::*[@role='group'][1]"
        )
        inputs = field.find_elements(By.CSS_SELECTOR, f"input[name='{name}']")
        assert len(inputs) == 1, f"{label!r}: no input named {name!r} beside it"
        assert inputs[0].get_attribute("type") == kind, f"{label!r} is a {inputs[0].get_attribute('type')} input"
    assert dialog.find_element(By.CSS_SELECTOR, "input[name=element_auth_method]").get_attribute("value") == "basic"
    assert dialog.find_element(By.CSS_SELECTOR, "input[name=element_timeout]").get_attribute("value") == "60"

    driver.set_window_size(1280, 1500)  # the whole extra-fields section in one picture
    _shot(driver, "connection-form-openeo")
    auth = dialog.find_element(By.XPATH, ".//label[normalize-space()='Authentication']/ancestor::*[@role='group'][1]")
    auth.find_element(By.CSS_SELECTOR, "input[role=combobox]").click()
    wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "[role=option]")))
    options = [o.text.strip() for o in driver.find_elements(By.CSS_SELECTOR, "[role=option]")]
    assert options == conn_type["conn-fields"]["auth_method"]["schema"]["enum"]
    _shot(driver, "connection-form-openeo-auth-methods")
    dialog.find_element(By.CSS_SELECTOR, "input[role=combobox]").send_keys(Keys.ESCAPE)
    driver.set_window_size(1280, 900)


# -- (b) the grid ------------------------------------------------------------------------------------------------


def test_grid_shows_mapped_tasks_labelled_with_row_titles(page: Any, demo: tuple[Demo, DemoReport]) -> None:

    driver, wait = page, _wait(page)
    deployment, report = demo
    assert len(report.table) == ROWS and set(report.table["backend_name"]) == set(BACKENDS)

    driver.get(_run_url(deployment, report))
    wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "[data-testid=expand-all-button]"))).click()
    for backend in BACKENDS:
        row = (By.CSS_SELECTOR, f"[data-testid='task-{GROUP}-run_{backend}']")
        assert wait.until(ec.visibility_of_element_located(row)).text.startswith(f"run_{backend}")
    # the run's task instance table beside the grid: every row's label, once for its job and once for its results
    both = sorted(_labels(report) * 2)
    assert _wait_for_labels(driver, both) == both
    driver.set_window_size(1280, 1300)  # every mapped row of the run's table in the picture
    _shot(driver, "grid-run")
    driver.set_window_size(1280, 900)

    for backend in BACKENDS:  # each backend's mapped group, and its job task's instances: one per row on it
        group_id = f"{GROUP}.run_{backend}"
        driver.get(_run_url(deployment, report))
        cell = wait.until(
            ec.presence_of_element_located((By.CSS_SELECTOR, f"a[data-testid='grid-{report.run_id}-{group_id}']"))
        )
        href = cell.get_attribute("href")
        assert href.endswith(f"/tasks/group/{group_id}"), href
        driver.get(f"{_run_url(deployment, report)}/tasks/{group_id}.job/mapped")
        expected = _labels(report, backend)
        assert _wait_for_labels(driver, expected) == expected
        _shot(driver, f"grid-mapped-run_{backend}")


# -- (c) the extra link ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_extra_link_opens_the_rows_job_on_its_backend(page: Any, demo: tuple[Demo, DemoReport], backend: str) -> None:

    driver, wait = page, _wait(page)
    deployment, report = demo
    task_id = f"{GROUP}.run_{backend}.job"
    instance = next(
        ti
        for ti in sorted(report.task_instances, key=lambda ti: ti["map_index"])
        if ti["task_id"] == task_id and ti["state"] == "success" and not holds_no_row(ti["rendered_map_index"])
    )
    row_id = int(instance["rendered_map_index"].split(":", 1)[0])
    row = report.table.loc[row_id]
    assert row["backend_name"] == backend and row["status"] == "finished"

    # from the mapped task's list, by its label, to the task instance's details and its extra link
    driver.get(f"{_run_url(deployment, report)}/tasks/{task_id}/mapped")
    by_label = (
        By.XPATH,
        f"//*[@data-testid='table-cell-rendered_map_index']//a[normalize-space()='{instance['rendered_map_index']}']",
    )
    driver.get(wait.until(ec.presence_of_element_located(by_label)).get_attribute("href"))
    header = wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "[data-testid=header-card]")))
    assert f"{task_id} [{instance['rendered_map_index']}]" in header.text  # this row's instance, by its label
    wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "a[title=Details]"))).click()
    link = wait.until(ec.element_to_be_clickable((By.XPATH, "//a[normalize-space()='openEO job']")))
    _shot(driver, f"extra-link-run_{backend}")

    # the button leads to the batch view's page of this task instance, which shows the row and its job
    href = link.get_attribute("href")
    assert href == deployment.airflow.url + task_instance_path(DAG_ID, report.run_id, task_id, instance["map_index"])
    driver.get(href)
    wait.until(lambda d: f"/rows/{row_id}" in d.current_url)
    shown = wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "[data-testid=field-id]")))
    assert shown.text == row["id"]
    assert wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "[data-testid=row-title]"))).text.startswith(
        instance["rendered_map_index"]
    )
    _shot(driver, f"row-page-run_{backend}")

    backend_url = deployment.backends[backend].url
    connection = openeo.connect(backend_url).authenticate_basic(BASIC_USER, BASIC_PASSWORD)
    expected = f"{connection.root_url.rstrip('/')}/jobs/{row['id']}"
    on_backend = driver.find_element(By.CSS_SELECTOR, "[data-testid=row-backend-job]")
    assert on_backend.get_attribute("href") == expected
    assert on_backend.get_attribute("target") == "_blank"  # another origin: a new tab, the view stays open

    # follow it: a new tab on the backend, which answers that job's URL (to the anonymous browser: log in first)
    on_backend.click()
    wait.until(lambda d: len(d.window_handles) == 2)
    driver.switch_to.window(driver.window_handles[1])
    try:
        wait.until(lambda d: d.current_url == expected)
        answer = wait.until(ec.presence_of_element_located((By.TAG_NAME, "pre"))).text  # Chromium's JSON view
        _shot(driver, f"backend-job-run_{backend}")
        assert json.loads(answer)["code"] == "AuthenticationRequired", answer
    finally:
        driver.close()
        driver.switch_to.window(driver.window_handles[0])
    # the same URL, with credentials: the backend's own record of this row's job
    answer = connection.get(f"/jobs/{row['id']}", expected_status=200)
    assert answer.url == expected
    assert answer.json()["id"] == row["id"] and answer.json()["status"] == "finished"
    assert row["id"] in {job["id"] for job in deployment.backends[backend].jobs()}


# -- (d) the batch view ------------------------------------------------------------------------------------------

GEO_DAG = "example_openeo_geometry"  # six field polygons: the view's map has tiles to draw
#: How far a row has come, for comparing counts read at different moments: a row only ever moves forward.
STAGES = {
    "not_started": 0, "queued_for_start": 1, "created": 2, "queued": 3, "running": 4,
    "finished": 5, "error": 5, "start_failed": 5, "canceled": 5, "skipped": 5,
}  # fmt: skip
DOCS = REPO / "docs"


def _table_counts(deployment: Demo, dag_id: str) -> dict[str, int]:
    """The job table's rows by status now (empty before the batch's init task made it)."""
    from airflow_provider_openeo.hooks.job_db import OpenEOJobDbHook

    db = OpenEOJobDbHook(table=dag_id, sqlite_path=str(deployment.job_db))
    try:
        return db.count_by_status() if db.exists() else {}
    finally:
        db.dispose()


def _reached(counts: dict[str, int]) -> list[int]:
    """Rows at each stage or beyond: what can only grow while a batch runs."""
    return [sum(n for status, n in counts.items() if STAGES[status] >= stage) for stage in range(6)]


def _view_counts(driver: Any) -> dict[str, Any]:
    """What the batch page shows, read in one go: the totals by status, per backend, and the map's tiles."""
    return driver.execute_script(
        """
        const number = (el) => parseInt(el.innerText.trim().split(/\\s+/).pop(), 10);
        const totals = {}, backends = {}, tiles = {};
        document.querySelectorAll('[data-testid^="total-"] .badge').forEach((badge) => {
          totals[badge.dataset.status] = number(badge.parentElement);
        });
        document.querySelectorAll('[data-testid^="count-"]').forEach((cell) => {
          const [, backend, status] = cell.dataset.testid.match(/^count-([^-]+)-(.+)$/);
          const n = parseInt(cell.innerText, 10);
          if (n) (backends[backend] = backends[backend] || {})[status] = n;
        });
        document.querySelectorAll('#map path.tile').forEach((path) => {
          const status = [...path.classList].find((c) => c.startsWith('tile-')).slice(5);
          tiles[status] = (tiles[status] || 0) + 1;
        });
        return {totals, backends, tiles, loaded: document.body.dataset.loaded || null,
                rows: document.querySelectorAll('[data-testid=rows] tbody tr').length};
        """
    )


def _load_batch_page(driver: Any, url: str) -> dict[str, Any]:
    driver.get(url)
    _wait(driver).until(lambda d: d.execute_script("return document.body.dataset.loaded || null"))
    _wait(driver).until(ec.visibility_of_element_located((By.CSS_SELECTOR, "#map path.tile")))
    return _view_counts(driver)


def test_batch_view_shows_a_running_batch_and_its_tiles(page: Any, demo: tuple[Demo, DemoReport]) -> None:
    """The batch view, as a user finds it: under Browse in the Airflow UI, then the batch of the geometry example
    while it runs (counts between what the job table held just before and just after the page read it; every
    tile on the map) and once it is through (counts equal the table's, every tile green; the rows filter); a row's
    task instance link opens the task instance in the UI around the view; the DAG page's "openEO batch" tab shows
    the DAG's batch."""
    driver, wait = page, _wait(page)
    deployment = demo[0]
    slow = {"queue_seconds": 1.0, "run_seconds": 8.0}  # time enough to look at the batch while it runs
    for backend in deployment.backends.values():
        backend._control("PATCH", "/config", json=slow)
    try:
        run_id = deployment.airflow.trigger_dag(GEO_DAG, {}, note="batch view browser test")
        # while it runs: some rows are through (so the view can tell how long a job takes), some are not
        _wait(driver, 180).until(lambda d: (c := _reached(_table_counts(deployment, GEO_DAG)))[0] == 6 and 0 < c[5] < 6)
        before = _table_counts(deployment, GEO_DAG)
        view_url = f"{deployment.airflow.url}{batches_path()}/{GEO_DAG}/{GEO_DAG}"
        driver.set_window_size(1280, 1500)
        seen = _load_batch_page(driver, view_url)
        after = _table_counts(deployment, GEO_DAG)
        _shot(driver, "batch-view-running")
        driver.save_screenshot(str(DOCS / "batch-view-running.png"))
        low, shown, high = _reached(before), _reached(seen["totals"]), _reached(after)
        assert all(lo <= n <= hi for lo, n, hi in zip(low, shown, high, strict=True)), (before, seen, after)
        assert sum(seen["tiles"].values()) == 6 and seen["tiles"] == seen["totals"], seen  # one tile per row
        assert seen["rows"] == 6
        assert shown[5] < 6 or high[5] == 6, (seen, after)  # the page saw the batch unfinished, unless it ended
        if 0 < shown[5] < 6:  # some jobs finished, some left: an estimate of the time left, from their durations
            eta = driver.find_element(By.CSS_SELECTOR, "[data-testid=total-eta]").text
            assert eta.startswith("time left: about ") and "unknown" not in eta, eta
        final = deployment.airflow.wait_for_run(GEO_DAG, run_id, timeout=300)
        assert final["state"] == "success", final
    finally:
        for backend in deployment.backends.values():
            backend._control("PATCH", "/config", json={"queue_seconds": 0.5, "run_seconds": 2})

    # afterwards: exactly the table's counts, per backend too, and every tile finished
    from airflow_provider_openeo.hooks.job_db import OpenEOJobDbHook

    db = OpenEOJobDbHook(table=GEO_DAG, sqlite_path=str(deployment.job_db))
    table = db.read()
    db.dispose()
    seen = _load_batch_page(driver, view_url)
    wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, "[data-testid=total-done]"), "6 of 6 rows done"))
    assert seen["totals"] == {"finished": 6} and seen["tiles"] == {"finished": 6}, seen
    per_backend = {name: {"finished": int(n)} for name, n in table["backend_name"].value_counts().items()}
    assert seen["backends"] == per_backend, (seen, per_backend)
    assert "none, the batch is through" in driver.find_element(By.CSS_SELECTOR, "[data-testid=total-eta]").text
    _shot(driver, "batch-view-done")
    driver.save_screenshot(str(DOCS / "batch-view-done.png"))

    # the rows: filter by backend, search by title
    backend, count = next(iter(table["backend_name"].value_counts().items()))
    Select(driver.find_element(By.CSS_SELECTOR, "[data-testid=filter-backend]")).select_by_value(backend)
    assert _view_counts(driver)["rows"] == count
    Select(driver.find_element(By.CSS_SELECTOR, "[data-testid=filter-backend]")).select_by_value("")
    driver.find_element(By.CSS_SELECTOR, "[data-testid=filter-text]").send_keys("field 3")
    assert _view_counts(driver)["rows"] == 1
    driver.set_window_size(1280, 900)

    # in the Airflow UI: Browse > openEO batches, both batches of the demo; a row's task instance link opens the
    # task instance in the UI around the view
    driver.get(f"{deployment.airflow.url}/plugin/openeo-batches")
    frame = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "iframe[title='openEO batches']")))
    driver.switch_to.frame(frame)
    try:
        for dag_id in (DAG_ID, GEO_DAG):
            wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, f"[data-testid='batch-{dag_id}-{dag_id}']")))
        driver.switch_to.default_content()
        _shot(driver, "batch-view-in-airflow-ui")
        driver.save_screenshot(str(DOCS / "batch-view-in-airflow-ui.png"))
        driver.switch_to.frame(frame)
        table_link = (By.CSS_SELECTOR, f"[data-testid='batch-{GEO_DAG}-{GEO_DAG}'] td:nth-child(2) a")
        wait.until(ec.element_to_be_clickable(table_link)).click()  # the batch's page, inside the UI
        ti_link = wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "[data-testid='ti-0']")))
        ti_link.click()
    finally:
        driver.switch_to.default_content()
    wait.until(lambda d: f"/dags/{GEO_DAG}/runs/" in d.current_url and "/mapped/" in d.current_url)
    header = wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "[data-testid=header-card]")))
    assert "field" in header.text or ".job" in header.text, header.text

    # the DAG's own "openEO batch" tab: its one batch, at once
    driver.get(f"{deployment.airflow.url}/dags/{GEO_DAG}")
    tab = (By.XPATH, "//*[@role='tab' or self::a or self::button][normalize-space()='openEO batch']")
    wait.until(ec.element_to_be_clickable(tab)).click()
    frame = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "iframe[title='openEO batch']")))
    driver.switch_to.frame(frame)
    try:
        title = wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "[data-testid=batch-title]")))
        assert title.text == f"Batch {GEO_DAG}"
        wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, "[data-testid=total-done]"), "6 of 6 rows"))
    finally:
        driver.switch_to.default_content()
    _shot(driver, "batch-view-dag-tab")
    driver.save_screenshot(str(DOCS / "batch-view-dag-tab.png"))
