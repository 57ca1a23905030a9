"""The Python API as the README shows it: any image a user holds (a path, a PIL image, numpy pixels, a list of
them), the n best on request, and the details (confidence, sure) when asked for."""

import numpy as np
import pytest
from conftest import EXAMPLE_IMAGE
from PIL import Image

from captioner import Captioner
from captioner.confidence import is_sure
from captioner.images import BadImageError
from captioner.pipeline import Answer, Caption


@pytest.fixture(scope="module")
def model():
    return Captioner.from_pretrained(precision="fp32")


def test_a_path_a_pil_image_and_numpy_pixels_give_the_same_caption(model):
    pixels = np.asarray(Image.open(EXAMPLE_IMAGE).convert("RGB"))
    by_path = model.caption(EXAMPLE_IMAGE)
    assert isinstance(by_path, str) and by_path
    assert model.caption(Image.fromarray(pixels)) == by_path
    assert model.caption(pixels) == by_path
    assert model.caption(pixels.astype(np.float32) / 255.0) == by_path  # floats in [0, 1]
    assert model.caption([EXAMPLE_IMAGE, pixels]) == [by_path, by_path]
    assert model.caption(np.stack([pixels, pixels])) == [by_path, by_path]  # an (N, H, W, C) batch


def test_n_best_and_details_on_request(model):
    three = model.caption(EXAMPLE_IMAGE, n_best=3)
    assert isinstance(three, list) and len(three) == 3 and all(isinstance(c, str) for c in three)
    detailed = model.caption(EXAMPLE_IMAGE, details=True)
    assert isinstance(detailed, Caption) and detailed.text == three[0]
    assert 0 < detailed.confidence <= 1 and detailed.sure in (True, False, None)
    assert len(detailed.word_probs) == len(detailed.words)
    answers = model.ask(EXAMPLE_IMAGE, "what sport is this?", top_k=2, details=True)
    assert [type(a) for a in answers] == [Answer, Answer] and answers[1].sure is None
    assert answers[0].probability >= answers[1].probability
    chosen = model.ask(EXAMPLE_IMAGE, "what sport is this?", choices=np.array(["tennis", "golf"]))
    assert sorted(a for a, _ in chosen) == ["golf", "tennis"]


@pytest.mark.parametrize(
    "image, says",
    [
        (Image.new("RGB", (0, 0)), "image: empty image (0x0 pixels)"),
        (np.zeros((4, 4, 2), np.uint8), "image: pixels must be (height, width) or (height, width, 3 or 4)"),
        (np.zeros((4, 4), np.int64), "image: pixels must be uint8 (0-255) or floats (0-1), not int64"),
        (np.full((4, 4), np.nan), "image: pixels hold NaN or infinite values"),
        ("https://example.com/x.jpg", "https://example.com/x.jpg: a URL; captioner works offline"),
    ],
)
def test_bad_images_are_one_line(model, image, says):
    with pytest.raises(BadImageError) as error:
        model.caption(image)
    assert str(error.value).startswith(says) and "\n" not in str(error.value)


@pytest.mark.parametrize("size, shape", [((1800, 300), "wider than tall"), ((200, 700), "taller than wide")])
def test_a_panorama_is_captioned_not_sure_and_says_why(model, size, shape):
    # Issue 38: a 20000x3000 panorama was squashed to a square with no warning, its caption marked sure.
    photo = Image.open(EXAMPLE_IMAGE).convert("RGB")
    squashed = photo.resize(size)
    caption = model.caption(squashed, details=True)
    assert caption.sure is False and caption.warning.startswith(f"{max(size) / min(size):.1f} times {shape}")
    assert "squashed to a square" in caption.warning
    n_best = model.caption(squashed, details=True, n_best=3)
    assert all(c.sure is False and c.warning == caption.warning for c in n_best)
    for ordinary in (photo, photo.resize((900, 300))):  # 3 to 1 at most: no warning, sure by its confidence alone
        detailed = model.caption(ordinary, details=True)
        assert detailed.warning is None and detailed.sure == is_sure(detailed.confidence, model.not_sure_below)
