"""The demo page in a real browser: Debian's headless Chromium, driven by Playwright.

Playwright never downloads a browser here: it runs /usr/bin/chromium (``apt-get install chromium``).
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Callable

import pytest
from conftest import EXAMPLE_IMAGE
from gradio_client import handle_file
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")
# Root needs --no-sandbox; the other two keep Chromium from calling out on a closed network.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update"]
TIMEOUT_MS = 30_000
DESKTOP, PHONE = {"width": 1280, "height": 1000}, {"width": 390, "height": 844}  # PHONE: an iPhone 12 to 15

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (apt-get install chromium)"),
]


@pytest.fixture
def viewport() -> dict[str, int]:
    return DESKTOP  # a test parametrized with "viewport" runs at other sizes too


@pytest.fixture
def page(app_url: str, viewport: dict[str, int]):
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)  # a slow, shared CPU may take seconds to caption
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport=viewport)
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(app_url)
        yield page
        browser.close()


def _upload(page, path: Path) -> None:
    page.locator("#image input[type=file]").set_input_files(str(path))
    page.locator("#image img").first.wait_for()  # the preview shows once the upload is done


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_caption_look_inside_and_ask_in_the_browser(page, client, has_vqa, tmp_path):
    from playwright.sync_api import expect

    _upload(page, EXAMPLE_IMAGE)  # captioned at once; the button captions again
    caption = page.locator("#caption-text textarea")
    expect(caption).not_to_have_value("")
    page.get_by_role("button", name="Caption", exact=True).click()
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
    huge = tmp_path / "huge.png"
    Image.new("1", (9000, 9000)).save(huge)  # 81 megapixels in a 10 kB file
    page.get_by_role("tab", name="Caption").click()
    for path, message in ((fake, "photo.jpg: not an image file"), (huge, "huge.png: image too large")):
        page.locator("#image input[type=file]").set_input_files(str(path))  # told on upload, before any click
        told = toast.filter(has_text=message)
        expect(told).to_contain_text("Warning")
        expect(told).to_contain_text("80 megapixels and 25 MB")  # the limits, as the message states them
    page.get_by_role("button", name="Caption", exact=True).click()  # told again, still a warning
    for output in ("#caption-text", "#alternatives"):
        expect(page.locator(output)).not_to_contain_text("Error")
    assert "Traceback" not in new_log()

    _upload(page, EXAMPLE_IMAGE)  # and the app keeps serving
    expect(page.locator("#caption-text textarea")).not_to_have_value("")
    page.screenshot(path=str(tmp_path / "bad-input.png"), full_page=True)


def test_a_warning_clears_the_stale_output_next_to_it(page, has_vqa):
    from playwright.sync_api import expect

    if not has_vqa:
        pytest.skip("needs weights with vqa/")
    _upload(page, EXAMPLE_IMAGE)
    page.get_by_role("tab", name="Ask").click()
    page.locator("#question textarea").fill("What sport is this?")
    page.get_by_role("button", name="Ask", exact=True).click()
    answer = page.locator("#answers [data-testid=label-output-value]")
    expect(answer).to_be_visible()
    page.locator("#question textarea").fill("")
    page.get_by_role("button", name="Ask", exact=True).click()
    expect(page.get_by_test_id("toast-body")).to_contain_text("Type a question first")
    expect(answer).to_have_count(0)  # the last question's answer no longer stands beside an empty question


def _expect_badge(badge, sure: bool) -> None:
    from playwright.sync_api import expect

    (expect(badge).not_to_contain_text if sure else expect(badge).to_contain_text)("not sure")


def test_a_not_sure_result_wears_a_badge_and_a_sure_one_none(page, has_vqa, weights_dir):
    from playwright.sync_api import expect

    from captioner.pipeline import Captioner

    model = Captioner.from_pretrained(weights_dir, precision="fp32")
    if not has_vqa or model.not_sure_below is None or model.vqa.not_sure_below is None:
        pytest.skip("needs weights with vqa/ and both thresholds (the shipped ones)")
    _upload(page, EXAMPLE_IMAGE)
    expect(page.locator("#caption-text textarea")).not_to_have_value("")
    _expect_badge(page.locator("#caption-sure"), model.caption_images([EXAMPLE_IMAGE])[0][0].sure)
    page.get_by_role("tab", name="Ask").click()
    seen = set()
    for question in ("Is there a dog?", "Is there a person in the image?"):  # the shipped weights: no 0.92 is not
        # sure (a yes/no needs 0.983), yes 0.9998 is
        (top, p), *_ = model.ask(EXAMPLE_IMAGE, question)
        page.locator("#question textarea").fill(question)
        page.get_by_role("button", name="Ask", exact=True).click()
        expect(page.locator("#answers [data-testid=label-output-value]")).to_have_text(top)
        _expect_badge(page.locator("#answer-sure"), model.vqa.sure(p, top))
        seen.add(model.vqa.sure(p, top))
    assert seen == {True, False}


def test_clicking_an_example_captions_it_at_once(page, client):
    from playwright.sync_api import expect

    pizza = EXAMPLE_IMAGE.parent / "pizza.jpg"
    page.locator("#examples img[src*='pizza']").click()
    caption = page.locator("#caption-text textarea")
    expect(caption).not_to_have_value("")  # no Caption click
    assert caption.input_value() == client.predict(handle_file(str(pizza)), api_name="/caption")[0]


def test_a_new_image_replaces_the_last_images_results(page):
    from playwright.sync_api import expect

    _upload(page, EXAMPLE_IMAGE)
    caption, alternatives = page.locator("#caption-text textarea"), page.locator("#alternatives")
    expect(caption).not_to_have_value("")
    tennis = caption.input_value()
    expect(alternatives).to_contain_text(tennis)
    page.get_by_role("tab", name="Look inside").click()
    heatmap = page.locator("#heatmap img")
    expect(heatmap).to_be_visible()
    tennis_heatmap = heatmap.get_attribute("src")

    page.locator("#examples img[src*='pizza']").click()  # another image, an example: the tennis results must go
    expect(page.locator("#image img[src*='pizza']")).to_be_visible()
    expect(heatmap).to_be_visible()
    expect(heatmap).not_to_have_attribute("src", tennis_heatmap)
    page.get_by_role("tab", name="Caption").click()
    expect(caption).not_to_have_value("")
    expect(caption).not_to_have_value(tennis)
    expect(alternatives).not_to_contain_text(tennis)


def _overlap(a: dict, b: dict) -> bool:
    """Whether two bounding boxes share any area."""
    return (
        a["x"] < b["x"] + b["width"]
        and b["x"] < a["x"] + a["width"]
        and a["y"] < b["y"] + b["height"]
        and b["y"] < a["y"] + a["height"]
    )


@pytest.mark.parametrize("viewport", [PHONE], ids=["phone"])
def test_on_a_phone_the_first_screen_holds_the_image_the_button_and_the_caption(page, viewport, tmp_path):
    from playwright.sync_api import expect

    _upload(page, EXAMPLE_IMAGE)
    expect(page.locator("#caption-text textarea")).not_to_have_value("")
    page.screenshot(path=str(tmp_path / "phone-first-screen.png"))  # what the phone shows before any scrolling
    for element in ("#image", "#caption-button", "#caption-text"):
        box = page.locator(element).bounding_box()
        assert 0 <= box["y"] and box["y"] + box["height"] <= viewport["height"], (element, box)
        assert 0 <= box["x"] and box["x"] + box["width"] <= viewport["width"], (element, box)

    table = page.locator("#alternatives")
    table.scroll_into_view_if_needed()
    for header in ("rank", "caption", "score", "log-prob"):  # every column on the screen, the scores too
        box = table.locator("th", has_text=header).first.bounding_box()
        assert 0 <= box["x"] and box["x"] + box["width"] <= viewport["width"], (header, box)
    cells = [cell for cell in table.locator(".cell-wrap span").all() if cell.is_visible()]  # the values shown
    assert len(cells) >= 4
    for cell in cells:  # on the screen and wrapped, not cut off
        box = cell.bounding_box()
        assert box["x"] + box["width"] <= viewport["width"] and cell.evaluate("e => e.scrollWidth <= e.clientWidth")

    page.get_by_role("tab", name="Look inside").click()
    for plot in ("#heatmap", "#cell-plot"):
        image = page.locator(f"{plot} img")
        expect(image).to_be_visible()
        labels = [label for label in page.locator(f"{plot} label").all() if label.is_visible()]
        assert not any(_overlap(label.bounding_box(), image.bounding_box()) for label in labels), plot
    page.screenshot(path=str(tmp_path / "phone-look-inside.png"), full_page=True)
    assert all(
        (tmp_path / name).stat().st_size > 10_000 for name in ("phone-first-screen.png", "phone-look-inside.png")
    )


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


def test_look_inside_shows_the_gradient_flow_and_cells_picked_by_what_they_track(page, weights_dir):
    from playwright.sync_api import expect

    if not (weights_dir / "caption" / "cells.json").exists():
        pytest.skip("weights without a cell atlas")
    _upload(page, EXAMPLE_IMAGE)
    expect(page.locator("#caption-text textarea")).not_to_have_value("")
    page.get_by_role("tab", name="Look inside").click()
    expect(page.locator("#gradient-flow img")).to_be_visible()  # the LSTM (and the RNN, when shipped) side by side
    heatmap, plot = page.locator("#heatmap img"), page.locator("#cell-plot img")
    expect(heatmap).to_be_visible()
    words_heatmap = heatmap.get_attribute("src")

    page.locator("#cell-choice").get_by_text("position-tracking cells").click()
    expect(heatmap).not_to_have_attribute("src", words_heatmap)
    pick = page.locator("#cell-pick input")
    expect(pick).to_have_value(re.compile(r"^c\[\d+\] position \(r [+-]\d\.\d\d\)$"))  # the strongest, labelled

    before, index = plot.get_attribute("src"), page.locator("#cell-index input[type=number]")
    pick.click()
    second = page.get_by_role("option").nth(1)  # the second strongest position-tracking cell, by its label
    label = second.inner_text()
    second.click()
    expect(pick).to_have_value(label)
    expect(index).to_have_value(re.search(r"^c\[(\d+)\]", label).group(1))
    expect(plot).not_to_have_attribute("src", before)


def test_multiple_choice_and_a_chat_that_a_new_image_clears(page, client, has_vqa):
    from playwright.sync_api import expect

    if not has_vqa:
        pytest.skip("needs weights with vqa/")
    _upload(page, EXAMPLE_IMAGE)
    caption = page.locator("#caption-text textarea")
    expect(caption).not_to_have_value("")
    tennis = caption.input_value()
    page.get_by_role("tab", name="Ask").click()
    page.locator("#question textarea").fill("What sport is this?")
    page.locator("#choices textarea").fill("golf | soccer | tennis")
    page.get_by_role("button", name="Ask", exact=True).click()
    top = client.predict(
        handle_file(str(EXAMPLE_IMAGE)), "What sport is this?", "golf | soccer | tennis", api_name="/ask"
    )["label"]
    expect(page.locator("#answers [data-testid=label-output-value]")).to_have_text(top)

    page.get_by_role("tab", name="Chat").click()
    chat, box = page.locator("#chat"), page.locator("#chat-question textarea")
    expect(page.get_by_text("the model has no memory of this conversation")).to_be_visible()
    expect(chat).to_contain_text(tennis)  # the caption opens the conversation
    box.fill("Is there a dog in the picture?")
    box.press("Enter")
    expect(chat).to_contain_text("Is there a dog in the picture?")
    expect(box).to_have_value("")
    box.fill("what color is it?")
    page.get_by_role("button", name="Send").click()
    expect(chat).to_contain_text("(read as: what color is the dog?)")  # the answer, its percentage, the reading
    expect(chat).to_contain_text("Is there a dog in the picture?")  # the conversation stays on screen

    page.locator("#examples img[src*='pizza']").click()  # another image: a new conversation
    pizza = client.predict(handle_file(str(EXAMPLE_IMAGE.parent / "pizza.jpg")), api_name="/caption")[0]
    expect(chat).to_contain_text(pizza)
    expect(chat).not_to_contain_text("Is there a dog")
    expect(chat).not_to_contain_text(tennis)


def _text_px(plot, font_pt: float) -> float:
    """How tall ``font_pt``-point text of a figure drawn at 100 px an inch is on the screen, as the page scales the
    plot's image to its column."""
    natural, shown = plot.evaluate("e => e.naturalWidth"), plot.bounding_box()["width"]
    return font_pt * 100 / 72 * min(1.0, shown / natural)


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_the_plots_text_is_legible_and_the_chat_buttons_cover_nothing(page, viewport, has_vqa, tmp_path):
    from playwright.sync_api import expect

    from captioner.app.plots import FONT, WIDTH

    _upload(page, EXAMPLE_IMAGE)
    expect(page.locator("#caption-text textarea")).not_to_have_value("")
    page.get_by_role("tab", name="Look inside").click()
    for plot in ("#heatmap", "#cell-plot", "#gradient-flow"):
        image = page.locator(f"{plot} img")
        expect(image).to_be_visible()
        assert image.evaluate("e => e.naturalWidth") == round(WIDTH * 100), plot  # every figure as wide
        assert _text_px(image, FONT) >= 10, (plot, viewport)  # the gradient plot's text was 7 px at 1280 px
        image.scroll_into_view_if_needed()
        page.locator(plot).screenshot(path=str(tmp_path / f"{plot[1:]}.png"))  # checked by eye: see the report
    if not has_vqa:
        return
    page.get_by_role("tab", name="Chat").click()
    box = page.locator("#chat-question textarea")
    for question in ("Is there a dog in the picture?", "what color is it?", "how many are there?"):
        box.fill(question)
        box.press("Enter")
        expect(page.locator("#chat")).to_contain_text(question)
    expect(page.locator("#chat")).to_contain_text("read as")
    page.locator("#chat").screenshot(path=str(tmp_path / "chat.png"))
    # No share, clear or copy-all buttons over the messages, no floating label: only each message's own copy button.
    messages = [m.bounding_box() for m in page.locator("#chat .message").all() if m.is_visible()]
    chrome = [e for e in page.locator("#chat button, #chat label").all() if e.is_visible()]
    assert messages and all(e.get_attribute("aria-label") == "Copy message" for e in chrome)
    assert not any(_overlap(e.bounding_box(), m) for e in chrome for m in messages)


def _rows(table) -> list[list[str]]:
    """The alternatives table's rows as shown, each [rank, caption, score, log-prob] (none before it is filled)."""
    texts = [t.strip() for t in table.locator(".cell-wrap span").all_inner_texts()]
    assert texts[:4] == ["rank", "caption", "score", "log-prob"] or not texts, texts
    return [texts[i : i + 4] for i in range(4, len(texts), 4)]


def _until(condition: Callable[[], bool], what: str) -> None:
    """Wait for ``condition`` (Playwright's ``expect.poll`` is JavaScript's only)."""
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_a_sampled_caption_is_the_best_of_its_samples_and_opens_the_chat(page, has_vqa):
    from playwright.sync_api import expect

    _upload(page, EXAMPLE_IMAGE)
    caption, table = page.locator("#caption-text textarea"), page.locator("#alternatives")
    expect(caption).not_to_have_value("")
    _until(lambda: _rows(table) and _rows(table)[0][1] == caption.input_value(), "the beam's table")
    beams = _rows(table)
    page.get_by_text("Decoding settings").click()
    page.get_by_label("sample").check()
    page.get_by_role("button", name="Caption", exact=True).click()
    # The samples' rows, not the table's text: while the event runs, a status line in the table changes its text
    # and the beam's rows are still there (the test once read them as the samples).
    _until(lambda: len(_rows(table)) == 3 and _rows(table) != beams, "the samples' table")
    rows = _rows(table)
    scores = [float(row[2]) for row in rows]
    assert scores == sorted(scores, reverse=True)  # ranked by score, as the table's label says
    expect(caption).to_have_value(rows[0][1])  # the caption: the best (the page may render it after the table)
    if not has_vqa:
        return
    # The Chat tab opens with the caption shown, and a question asked at once stays in that conversation: before,
    # the chat was opened by an event after the Look-inside plots, which replaced a conversation begun meanwhile.
    page.get_by_role("tab", name="Chat").click()
    chat = page.locator("#chat .message:is(.bot, .user)")  # each message once (an inner element has .message too)
    expect(chat.first).to_have_text(rows[0][1])
    page.locator("#chat-question textarea").fill("what is the man holding?")
    page.locator("#chat-question textarea").press("Enter")
    expect(chat).to_have_count(3)
    page.get_by_role("tab", name="Look inside").click()
    words = page.locator("#cell-words")  # the Look-inside plots of the sampled caption: its chain is done
    _until(lambda: "".join(rows[0][1].split()) in "".join(words.inner_text().split()), "the Look-inside plots")
    page.get_by_role("tab", name="Chat").click()
    expect(chat).to_have_count(3)
    expect(chat.first).to_have_text(rows[0][1])
    expect(chat.nth(1)).to_have_text("what is the man holding?")


def test_warnings_leave_after_a_few_seconds_and_never_pile_up(page):
    from playwright.sync_api import expect

    from captioner.app.page import WARNING_SECONDS

    page.get_by_role("tab", name="Ask").click()
    toast = page.get_by_test_id("toast-body")
    for _ in range(3):
        page.get_by_role("button", name="Ask", exact=True).click()
        expect(toast.first).to_contain_text("Type a question first")
    expect(toast).to_have_count(0, timeout=(WARNING_SECONDS + 5) * 1000)
