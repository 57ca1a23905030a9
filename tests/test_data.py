"""Dataset loaders: COCO, Karpathy and Flickr8k layouts, and image ids."""

from __future__ import annotations

from synthetic import make_coco, make_flickr8k, make_karpathy, shape_items

from captioner.data.captions import load_coco, load_karpathy
from captioner.data.datasets import load_caption_dataset
from captioner.images import image_id_from_filename


def test_image_ids_from_coco_and_flickr_names():
    assert image_id_from_filename("000000123456.jpg") == 123456
    assert image_id_from_filename("val/COCO_val2014_000000123456.jpg") == 123456
    assert image_id_from_filename("1000268201_693b08cb0e.jpg") == "1000268201_693b08cb0e.jpg"


def test_coco_and_karpathy_loaders_read_official_formats(tmp_path):
    ann, images = make_coco(tmp_path / "coco")
    items = load_coco(ann, images)
    assert len(items) == 8 and all(isinstance(i.image_id, int) and i.path.exists() for i in items)
    assert items[0].captions == [shape_items()[0][3]]
    karpathy = make_karpathy(tmp_path / "k")
    train = load_karpathy(karpathy, tmp_path / "k", "train")
    test = load_karpathy(karpathy, tmp_path / "k", "test")
    assert len(train) == 4 and len(test) == 2  # train includes restval
    assert all(i.path.exists() for i in train + test) and train[0].image_id == 500
    flickr = make_flickr8k(tmp_path / "f")
    assert len(load_caption_dataset("flickr8k", flickr, "dev")[0].captions) == 2
