"""The demo page in a real browser: Debian's headless Chromium, driven by Playwright.

Playwright never downloads a browser here: it runs /usr/bin/chromium (``apt-get install chromium``).
"""
from __future__ import annotations

from pathlib import Path

import pytest
from gradio_client import handle_file

from conftest import EXAMPLE_IMAGE

CHROMIUM = Path("/usr/bin/chromium")
# Root needs --no-sandbox; the other two keep Chromium from calling out on a closed network.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update"]
TIMEOUT_MS = 30_000

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (apt-get install chromium)")]


@pytest.fixture
def page(app_url: str):
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)  # a slow, shared CPU may take seconds to caption
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(app_url)
        yield page
        browser.close()


def _upload(page, path: Path) -> None:
    page.locator("#image input[type=file]").set_input_files(str(path))
    page.locator("#image img").first.wait_for()  # the preview shows once the upload is done


def test_caption_look_inside_and_ask_in_the_browser(page, client, has_vqa, tmp_path):
    from playwright.sync_api import expect

    _upload(page, EXAMPLE_IMAGE)
    page.get_by_role("button", name="Caption", exact=True).click()
    caption = page.locator("#caption-text textarea")
    expect(caption).not_to_have_value("")
    assert caption.input_value() == client.predict(handle_file(str(EXAMPLE_IMAGE)), api_name="/caption")[0]

    page.get_by_role("tab", name="Look inside").click()
    expect(page.locator("#heatmap img")).to_be_visible()

    page.get_by_role("tab", name="Ask").click()  # the image carries over: no second upload
    question = "What is the man holding?"
    page.locator("#question textarea").fill(question)
    page.get_by_role("button", name="Ask", exact=True).click()
    if has_vqa:
        top = client.predict(handle_file(str(EXAMPLE_IMAGE)), question, api_name="/ask")["label"]
        expect(page.locator("#answers [data-testid=label-output-value]")).to_have_text(top)
    else:
        expect(page.get_by_test_id("toast-body")).to_contain_text("VQA weights are missing")
    page.screenshot(path=str(tmp_path / "demo.png"), full_page=True)
    assert (tmp_path / "demo.png").stat().st_size > 10_000


def test_bad_input_in_the_browser_gets_a_warning_and_no_error_state(page, new_log, tmp_path):
    from playwright.sync_api import expect

    toast = page.get_by_test_id("toast-body")
    page.get_by_role("tab", name="Ask").click()
    page.get_by_role("button", name="Ask", exact=True).click()
    expect(toast).to_contain_text("Type a question first")
    expect(toast).to_contain_text("Warning")  # a one-line warning, not an error
    expect(page.locator("#answers")).not_to_contain_text("Error")  # no red "Error" badge on the outputs

    fake = tmp_path / "photo.jpg"  # the browser accepts it by its name; the server finds no image in it
    fake.write_text("not a picture")
    page.get_by_role("tab", name="Caption").click()
    page.locator("#image input[type=file]").set_input_files(str(fake))
    page.get_by_role("button", name="Caption", exact=True).click()
    expect(toast.filter(has_text="photo.jpg: not an image file")).to_contain_text("Warning")
    for output in ("#caption-text", "#alternatives"):
        expect(page.locator(output)).not_to_contain_text("Error")
    assert "Traceback" not in new_log()

    _upload(page, EXAMPLE_IMAGE)  # and the app keeps serving
    page.get_by_role("button", name="Caption", exact=True).click()
    expect(page.locator("#caption-text textarea")).not_to_have_value("")
    page.screenshot(path=str(tmp_path / "bad-input.png"), full_page=True)


def test_a_new_image_clears_the_last_images_results(page):
    from playwright.sync_api import expect

    _upload(page, EXAMPLE_IMAGE)
    page.get_by_role("button", name="Caption", exact=True).click()
    caption, alternatives = page.locator("#caption-text textarea"), page.locator("#alternatives")
    expect(caption).not_to_have_value("")
    tennis = caption.input_value()
    expect(alternatives).to_contain_text(tennis)
    page.get_by_role("tab", name="Look inside").click()
    expect(page.locator("#heatmap img")).to_be_visible()

    page.locator("img[src*='pizza']").first.click()  # another image, an example: the tennis results must go
    expect(page.locator("#image img[src*='pizza']")).to_be_visible()
    expect(page.locator("#heatmap img")).to_have_count(0)
    expect(page.locator("#cell-plot img")).to_have_count(0)
    page.get_by_role("tab", name="Caption").click()
    expect(caption).to_have_value("")
    expect(alternatives).not_to_contain_text(tennis)
    page.get_by_role("button", name="Caption", exact=True).click()
    expect(caption).not_to_have_value("")


def test_typing_a_cell_index_and_pressing_enter_shows_that_cell(page):
    from playwright.sync_api import expect

    _upload(page, EXAMPLE_IMAGE)
    page.get_by_role("button", name="Caption", exact=True).click()
    expect(page.locator("#caption-text textarea")).not_to_have_value("")
    page.get_by_role("tab", name="Look inside").click()
    plot = page.locator("#cell-plot img")
    expect(plot).to_be_visible()
    box = page.locator("#cell-index input[type=number]")
    top_cell, before = int(box.input_value()), plot.get_attribute("src")
    box.fill(str(1 if top_cell != 1 else 2))
    box.press("Enter")
    expect(plot).not_to_have_attribute("src", before)

