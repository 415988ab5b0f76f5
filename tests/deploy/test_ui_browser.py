"""The Airflow UI in a real headless Chromium, against the demo's live Airflow (``make demo``'s code path).

What a user sees, not what the REST API says: the connection form for type ``openeo`` shows the provider's
fields, the grid and the run's task table label each mapped task instance with its row (``"<row id>: <title>"``),
and the "openEO job" extra link of a mapped task instance opens that row's job on its own backend.

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

from airflow_provider_openeo.get_provider_info import get_provider_info
from airflow_provider_openeo.operators.openeo import holds_no_row
from deploy.demo import DAG_ID, DEFAULT_CONFIG, Demo, DemoReport, load_config
from local_backend.credentials import BASIC_PASSWORD, BASIC_USER
from tests.conftest import REPO

try:
    from selenium import webdriver
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait
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
    dialog.find_element(By.CSS_SELECTOR, "input[role=combobox]").send_keys(conn_type["hook-name"])
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

    backend_url = deployment.backends[backend].url
    connection = openeo.connect(backend_url).authenticate_basic(BASIC_USER, BASIC_PASSWORD)
    expected = f"{connection.root_url.rstrip('/')}/jobs/{row['id']}"
    assert link.get_attribute("href") == expected
    assert link.get_attribute("target") == "_blank"  # another origin: a new tab, the UI stays open

    # follow it: a new tab on the backend, which answers that job's URL (to the anonymous browser: log in first)
    link.click()
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
