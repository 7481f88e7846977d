"""The web console in a real browser: Playwright driving Debian's Chromium against a
live pipeline (the four services following their own CDC and CSV connectors over a
scratch source of synthetic patients, the example mappings), signed in through
Keycloak as each role of the realm (authorization code with PKCE).

The realm's console client lets the console at 127.0.0.1:3000 sign in; the pipeline
here listens on a port of its own, so a public client for that address is made
through Keycloak's admin API (as test_auth.py's test clients) and removed after.
Each test saves a screenshot under test-output/console/.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests

from test.conftest import KEYCLOAK, ROOT, master_admin_token, wait_for
from test.e2e.live import Live, StackMissing, live_pipeline

playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = ROOT / "test-output" / "console"
EXAMPLE = ["example-patient", "example-encounter", "example-condition"]
PATIENTS = 30


@pytest.fixture(scope="module")
def live(tmp_path_factory, topic_prefix) -> Iterator[Live]:
    try:
        with live_pipeline(
            tmp_path_factory.mktemp("console"), f"{topic_prefix}console-", patients=PATIENTS
        ) as live:
            yield live
    except StackMissing as error:
        pytest.fail(str(error))


@pytest.fixture(scope="module")
def console(live: Live) -> Iterator[str]:
    """The console's address, once the API signs its users in through a public client
    made for it (redirect and origin: this pipeline's API)."""
    origin = live.pipeline.url
    client_id = f"river-test-console-{uuid.uuid4().hex[:6]}"
    admin = requests.Session()
    admin.headers["Authorization"] = f"Bearer {master_admin_token()}"
    body = {
        "clientId": client_id,
        "publicClient": True,
        "standardFlowEnabled": True,
        "directAccessGrantsEnabled": False,
        "redirectUris": [f"{origin}/console/*"],
        "webOrigins": [origin],
        "attributes": {
            "pkce.code.challenge.method": "S256",
            "post.logout.redirect.uris": f"{origin}/console/*",
        },
        "protocolMappers": [
            {
                "name": "audience fhir-river",
                "protocol": "openid-connect",
                "protocolMapper": "oidc-audience-mapper",
                "config": {"included.custom.audience": "fhir-river", "access.token.claim": "true"},
            }
        ],
    }
    made = admin.post(f"{KEYCLOAK}/admin/realms/fhir-river/clients", json=body, timeout=10)
    assert made.status_code == 201, made.text
    try:
        live.pipeline.env["OIDC_CONSOLE_CLIENT_ID"] = client_id
        live.pipeline.restart("api")
        yield f"{origin}/console/"
    finally:
        admin.delete(made.headers["Location"], timeout=10)
        admin.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(
            "Chromium is not installed: make install installs it (apt-get install chromium)"
        )
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield browser
        browser.close()


def signed_in(browser: Any, console: str, user: str) -> Any:
    """A page of a new browser context, signed in as `user` through Keycloak's form."""
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    page.goto(console)
    page.wait_for_url(re.compile(r".*/protocol/openid-connect/auth.*"))
    page.fill("#username", user)
    page.fill("#password", f"{user}-password")
    page.click("#kc-login")
    page.wait_for_url(re.compile(re.escape(console) + ".*"))
    page.locator("#role").wait_for()
    return page


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def unnamed_controls(page: Any) -> list[str]:
    """Controls without an accessible name, from Chromium's own accessibility tree."""
    session = page.context.new_cdp_session(page)
    tree = session.send("Accessibility.getFullAXTree")["nodes"]
    session.detach()
    wanted = {"button", "link", "textbox", "combobox", "checkbox", "searchbox", "listbox"}
    return [
        f"{node['role']['value']} {node.get('backendDOMNodeId')}"
        for node in tree
        if not node.get("ignored")
        and node.get("role", {}).get("value") in wanted
        and not (node.get("name", {}).get("value") or "").strip()
    ]


def batch_of(page: Any) -> str:
    page.wait_for_url(re.compile(r".*#/batches/[^/?]+$"))
    return page.url.rsplit("/", 1)[1]


def wait_status(page: Any, status: str, timeout: float = 120_000) -> None:
    """Until the page of the batch in the URL shows `status`."""
    batch_id = page.url.rsplit("/", 1)[1]
    page.locator("h1", has_text=batch_id).wait_for(timeout=timeout)
    page.locator("#batch-head .status", has_text=status).first.wait_for(timeout=timeout)


def source_count(live: Live, query: str) -> int:
    with psycopg.connect(live.source_url) as conn:
        return int(conn.execute(query).fetchone()[0])


# --- signing in, roles ---------------------------------------------------------------------


@pytest.mark.parametrize("user", ["reader", "operator", "admin"])
def test_each_role_signs_in_and_sees_only_what_it_may(browser, console, live, user):
    batch_id = live.pipeline.batch(["example-patient"])
    live.pipeline.wait(batch_id)
    page = signed_in(browser, console, user)
    assert page.locator("#role").inner_text() == user
    assert page.locator("#who").inner_text().startswith("Signed in as")
    launch = page.get_by_role("link", name="Launch", exact=True)
    assert launch.is_visible() == (user != "reader")
    page.goto(f"{console}#/batches/{batch_id}")
    wait_status(page, "completed")
    shot(page, f"batch-as-{user}")
    # A reader sees no launch, retry or cancel; the others see them where they apply.
    assert page.get_by_role("button", name=re.compile("Cancel|Retry")).count() == 0
    if user == "reader":
        page.goto(f"{console}#/launch")
        page.get_by_role("alert").filter(has_text="may not").wait_for()
    assert unnamed_controls(page) == []
    page.context.close()


# --- batches --------------------------------------------------------------------------------


def test_launch_a_batch_of_the_example_mapping_and_watch_it_complete(browser, console, live):
    page = signed_in(browser, console, "operator")
    page.get_by_role("link", name="Launch", exact=True).click()
    page.get_by_label("Find resources").fill("example")
    page.get_by_role("button", name="Select all shown").click()
    shot(page, "launch")
    assert unnamed_controls(page) == []
    page.get_by_role("button", name="Start the batch").click()
    batch_id = batch_of(page)
    wait_status(page, "completed")
    shot(page, "batch-completed")
    state = live.pipeline.request("GET", f"/batches/{batch_id}").json()
    assert set(EXAMPLE) <= {r["resource_id"] for r in state["resources"]}
    patients = next(r for r in state["resources"] if r["resource_id"] == "example-patient")
    assert patients["expected"] == source_count(live, "SELECT count(*) FROM patients")
    for resource in state["resources"]:
        card = page.locator(f'[data-resource="{resource["resource_id"]}"]')
        expected, loaded = resource["expected"], resource["loaded"]
        assert loaded == expected and resource["failed"] == 0
        assert f"{loaded:,} / {expected:,}" in card.inner_text()
    # The batch is in the list, with its status.
    page.get_by_role("link", name="Batches", exact=True).click()
    row = page.locator("tr", has=page.get_by_role("link", name=batch_id))
    assert "completed" in row.inner_text()
    assert unnamed_controls(page) == []


def test_failed_instances_show_in_the_error_table_and_retry_from_the_console(
    browser, console, live
):
    with psycopg.connect(live.source_url) as conn:
        rows = conn.execute("SELECT subject_id FROM patients ORDER BY subject_id LIMIT 2")
        broken = [row[0] for row in rows.fetchall()]
    live.sql("UPDATE patients SET dob = 'infinity' WHERE subject_id = ANY(%s)", broken)
    page = signed_in(browser, console, "operator")
    page.goto(f"{console}#/launch")
    page.get_by_label("Find resources").fill("example-patient")
    page.get_by_role("button", name="Select all shown").click()
    page.get_by_role("button", name="Start the batch").click()
    batch_id = batch_of(page)
    wait_status(page, "completed")
    table = page.locator("#error-table")
    table.wait_for()
    rows = table.locator("tbody tr")
    wait_for("both failed instances in the table", lambda: rows.count() == 2)
    for n, subject in enumerate(broken):
        cells = rows.nth(n).locator("td").all_inner_texts()
        assert cells[:3] == ["example-patient", str(subject), "extract"], cells
        assert "dob" in cells[3] and "infinity" in cells[3]
    # The filter by stage keeps them; another stage has none.
    page.get_by_label("Stage").select_option("transform")
    page.get_by_text("No error.").wait_for()
    page.get_by_label("Stage").select_option("extract")
    table.wait_for()
    shot(page, "errors")
    # Each error links to the preview of its key.
    link = rows.first.get_by_role("link", name=str(broken[0]))
    assert f"keys={broken[0]}" in link.get_attribute("href")

    # A reader sees the errors, not the retry.
    reader = signed_in(browser, console, "reader")
    reader.goto(f"{console}#/batches/{batch_id}")
    reader.locator("#error-table tbody tr").first.wait_for()
    assert reader.get_by_role("button", name=re.compile("Retry")).count() == 0
    reader.context.close()

    live.sql("UPDATE patients SET dob = '2070-05-01' WHERE subject_id = ANY(%s)", broken)
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Retry 2 failed").click()
    page.wait_for_url(lambda url: "#/batches/" in url and batch_id not in url)
    retry_id = batch_of(page)
    wait_status(page, "completed")
    state = live.pipeline.request("GET", f"/batches/{retry_id}").json()
    [patients] = state["resources"]
    assert (patients["expected"], patients["loaded"], patients["failed"]) == (2, 2, 0)
    shot(page, "retry-completed")


def test_cancel_from_the_console(browser, console, live):
    live.pipeline.stop("transformer")  # the batch stays running until canceled
    try:
        page = signed_in(browser, console, "operator")
        batch_id = live.pipeline.batch(EXAMPLE)
        reader = signed_in(browser, console, "reader")
        reader.goto(f"{console}#/batches/{batch_id}")
        wait_status(reader, "running")
        assert reader.get_by_role("button", name="Cancel batch").count() == 0
        reader.context.close()
        page.goto(f"{console}#/batches/{batch_id}")
        wait_status(page, "running")
        page.once("dialog", lambda dialog: dialog.accept())
        page.get_by_role("button", name="Cancel batch").click()
        wait_status(page, "canceled")
        shot(page, "canceled")
        assert live.pipeline.request("GET", f"/batches/{batch_id}").json()["status"] == "canceled"
    finally:
        live.pipeline.start("transformer")


# --- preview, FHIR, sources ------------------------------------------------------------------


def test_preview_shows_the_source_record_beside_its_fhir(browser, console, live):
    page = signed_in(browser, console, "operator")
    page.get_by_role("link", name="Preview", exact=True).click()
    page.get_by_label("Resource").select_option("example-patient")
    page.get_by_role("button", name="Browse first rows").click()
    first = source_count(live, "SELECT min(subject_id) FROM patients")
    page.get_by_role("button", name=str(first), exact=True).click()
    source = page.locator("table.source-record")
    source.wait_for()
    assert f"Source record {first}" in source.inner_text()
    assert "gender" in source.inner_text().lower()
    fhir = page.locator("#preview-json").inner_text()
    assert '"resourceType": "Patient"' in fhir
    assert live.ids["example-patient"](first) in fhir
    assert page.get_by_role("button", name="Copy JSON").is_visible()
    shot(page, "preview")
    assert unnamed_controls(page) == []


def test_the_fhir_browser_finds_opens_and_follows_references(browser, console, live):
    batch_id = live.pipeline.batch(["example-patient", "example-encounter"])
    live.pipeline.wait(batch_id)
    page = signed_in(browser, console, "reader")
    page.get_by_role("link", name="FHIR", exact=True).click()
    page.get_by_label("Resource type").fill("Encounter")
    page.get_by_role("button", name="Search").click()
    # The Encounter page (the first type's, asked for on arriving, must not draw over it).
    page.locator("#fhir-results caption", has_text="Encounter").wait_for()
    results = page.locator("#fhir-results tbody tr")
    results.first.get_by_role("link").click()
    page.locator("#fhir-json").wait_for()
    assert '"resourceType": "Encounter"' in page.locator("#fhir-json").inner_text()
    shot(page, "fhir-encounter")
    page.locator("#fhir-json a", has_text="Patient/").first.click()
    page.wait_for_url(re.compile(r".*#/fhir/Patient/.+"))
    wait_for(
        "the referenced Patient",
        lambda: '"resourceType": "Patient"' in page.locator("#fhir-json").inner_text(),
    )
    assert unnamed_controls(page) == []


def test_the_sources_page_shows_both_connectors_running(browser, console, live):
    page = signed_in(browser, console, "reader")
    page.get_by_role("link", name="Sources", exact=True).click()
    for name in (live.cdc["name"], live.csv["name"]):
        row = page.locator(f'tr[data-connector="{name}"]')
        row.wait_for()
        wait_for(f"connector {name} running", lambda row=row: "RUNNING" in row.inner_text())
        assert f"live-{name}" in row.inner_text()
    assert "example-patient" in page.locator("#mappings").inner_text()
    shot(page, "sources")
    assert unnamed_controls(page) == []


def test_the_api_down_is_said_plainly(browser, console, live):
    page = signed_in(browser, console, "reader")
    live.pipeline.stop("api")
    try:
        page.get_by_role("link", name="Sources", exact=True).click()
        page.get_by_role("alert").filter(has_text="cannot be reached").wait_for()
        shot(page, "api-down")
    finally:
        live.pipeline.start("api")
