"""Inference precision: which one ``auto`` picks, refusals, fp32 unchanged bit for bit, reduced precision valid.

Reduced-precision numbers vary by CPU, so these tests assert properties, never exact values; where the CPU has no
native bfloat16 they run PyTorch's emulation (a ``Precision`` built directly skips the native check).
"""

from __future__ import annotations

import math

import pytest
import torch
from conftest import EXAMPLE_IMAGE
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

import captioner.precision as precision
from captioner import Captioner
from captioner.cli.main import main
from captioner.decoding import DecodeConfig, decode
from captioner.encoder import ENCODERS, build_encoder
from captioner.features import encode_images
from captioner.precision import Precision, native_cpu_precisions, resolve_precision

AVX2_ONLY = {"avx2": True, "avx512_f": False, "avx512_bf16": False, "avx512_vnni": False, "amx_bf16": False}


@pytest.mark.parametrize(
    "caps,machine,expected",
    [
        (AVX2_ONLY, "x86_64", ("fp32",)),
        ({**AVX2_ONLY, "avx512_f": True, "avx512_vnni": True}, "x86_64", ("fp32",)),  # AVX-512 alone emulates bf16
        ({**AVX2_ONLY, "avx512_bf16": True}, "x86_64", ("fp32", "bf16")),
        ({"amx_bf16": True, "amx_fp16": True}, "x86_64", ("fp32", "bf16", "fp16")),
        ({}, "x86_64", ("fp32",)),  # a PyTorch that cannot tell: float32 only
        ({"bf16": True}, "aarch64", ("fp32", "bf16")),
    ],
)
def test_native_precisions_follow_the_cpu_extensions(caps, machine, expected):
    assert native_cpu_precisions(caps, machine) == expected


def test_auto_takes_bf16_only_where_native_and_falls_back_to_fp32():
    assert resolve_precision("auto", native=("fp32",)).name == "fp32"
    assert resolve_precision("auto", native=("fp32", "bf16")).name == "bf16"
    assert resolve_precision("auto", "cuda", native=("fp32", "fp16")).name == "fp16"  # a GPU without bf16
    assert resolve_precision("auto", "cuda", native=("fp32", "fp16", "bf16")).name == "bf16"
    assert "no native bf16" in resolve_precision("auto", native=("fp32",)).reason


def test_an_explicit_precision_the_machine_cannot_run_is_refused_not_emulated():
    with pytest.raises(ValueError, match="does not run it natively") as e:
        resolve_precision("bf16", native=("fp32",))
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="must be one of"):
        resolve_precision("int8")
    assert resolve_precision("fp32", native=("fp32",)).name == "fp32"


def test_captioner_reports_the_precision_auto_chose(weights_dir, monkeypatch):
    monkeypatch.setattr(precision, "cpu_capabilities", lambda: AVX2_ONLY)
    assert Captioner.from_pretrained(weights_dir, load_vqa=False).precision == "fp32"
    monkeypatch.setattr(precision, "cpu_capabilities", lambda: {**AVX2_ONLY, "avx512_bf16": True})
    model = Captioner.from_pretrained(weights_dir, load_vqa=False)
    assert model.precision == "bf16" and "natively" in model.runtime.reason


def test_cli_precision_errors_are_one_line(weights_dir, monkeypatch, capsys):
    monkeypatch.setattr(precision, "cpu_capabilities", lambda: AVX2_ONLY)
    for command in (["caption", str(EXAMPLE_IMAGE)], ["ask", str(EXAMPLE_IMAGE), "what is this"]):
        assert main([*command, "--weights", str(weights_dir), "--precision", "bf16"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("captioner: error: precision bf16") and err.count("\n") == 1
    with pytest.raises(SystemExit) as e:
        main(["caption", str(EXAMPLE_IMAGE), "--precision", "int8"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'int8'" in err and err.count("\n") == 1


def test_verbose_names_the_precision_and_why(weights_dir, capsys, monkeypatch):
    monkeypatch.setattr(precision, "cpu_capabilities", lambda: AVX2_ONLY)
    assert main(["caption", str(EXAMPLE_IMAGE), "--weights", str(weights_dir), "--verbose"]) == 0
    assert "precision fp32 (auto: this CPU has no native bf16)" in capsys.readouterr().err


def _folded_only(name: str) -> nn.Module:
    """The backbone as it ran before its inference rewrite: batch norms folded, nothing else changed."""
    net = ENCODERS[name].build(None).eval()
    pairs = [(net, "_conv_stem", "_bn0"), (net, "_conv_head", "_bn1")] + [
        (b, c, bn)
        for b in net._blocks
        for c, bn in (("_expand_conv", "_bn0"), ("_depthwise_conv", "_bn1"), ("_project_conv", "_bn2"))
        if hasattr(b, c)
    ]
    for parent, conv, bn in pairs:
        setattr(parent, conv, fuse_conv_bn_eval(getattr(parent, conv), getattr(parent, bn)))
        setattr(parent, bn, nn.Identity())
    return net.to(memory_format=torch.channels_last)


def test_frozen_encoder_rewrite_gives_the_same_features_bit_for_bit():
    encoder = build_encoder("efficientnet-lite0")
    reference = _folded_only("efficientnet-lite0")
    pixels = torch.stack([encoder.preprocess(EXAMPLE_IMAGE), encoder.preprocess(EXAMPLE_IMAGE).flip(-1)])
    with torch.inference_mode():
        x = ((pixels.float() / 255.0 - encoder.mean) / encoder.std).contiguous(memory_format=torch.channels_last)
        expected = reference.extract_features(x).flatten(2).transpose(1, 2)
        assert torch.equal(encoder(pixels), expected)


def test_fp32_runs_no_autocast_and_gives_the_plain_code_results_exactly(weights_dir):
    model = Captioner.from_pretrained(weights_dir, load_vqa=False, precision="fp32")
    images = [EXAMPLE_IMAGE, EXAMPLE_IMAGE.parent / "laptop.jpg"]
    cfg = DecodeConfig(**{**model.decoding.__dict__, "n_best": 2})
    plain = decode(model.decoder, encode_images(model.encoder, images), cfg)
    ours = model.caption_images(images, cfg)
    assert [[(c.tokens, c.log_prob, c.score) for c in per] for per in ours] == [
        [(h.tokens, h.log_prob, h.score) for h in per] for per in plain
    ]


def _bf16() -> Precision:
    return Precision("bf16", reason="test (emulated where not native)")


def test_weights_cast_once_give_what_autocast_gives():
    encoder, images = build_encoder("efficientnet-lite0"), [EXAMPLE_IMAGE, EXAMPLE_IMAGE.parent / "laptop.jpg"]
    with torch.inference_mode(), _bf16().autocast():
        expected = encode_images(encoder, images)
        prepared = _bf16().prepare(encoder)
        assert {p.dtype for p in prepared.parameters()} == {torch.bfloat16}
        assert torch.equal(encode_images(prepared, images), expected)
    assert {p.dtype for p in Precision("fp32").prepare(build_encoder("efficientnet-lite0")).parameters()} == {
        torch.float32
    }


def test_bf16_captions_are_valid_and_decoded_in_float32(weights_dir):
    model = Captioner.from_pretrained(weights_dir, load_vqa=False, precision=_bf16())
    assert model.precision == "bf16"
    features = model.preprocess([EXAMPLE_IMAGE])
    assert features.dtype == torch.float32 and torch.isfinite(features).all()
    cfg = DecodeConfig(**{**model.decoding.__dict__, "n_best": 2})
    captions = model.caption_features(features, cfg)[0]
    assert len(captions) == 2 and captions[0].score >= captions[1].score
    for c in captions:
        assert c.words and all(w in model.vocab.index and not w.startswith("<") for w in c.words)
        assert math.isfinite(c.log_prob) and all(0 < p <= 1 for p in c.word_probs)
    # the decoder runs in float32 at any precision: the same features give the fp32 model's captions exactly
    fp32 = Captioner(model.decoder, model.vocab, model.encoder, model.decoding, precision="fp32")
    assert [(c.tokens, c.log_prob) for c in fp32.caption_features(features, cfg)[0]] == [
        (c.tokens, c.log_prob) for c in captions
    ]


def test_bf16_answers_are_valid(weights_dir, has_vqa):
    if not has_vqa:
        pytest.skip("these weights have no vqa/")
    model = Captioner.from_pretrained(weights_dir, precision=_bf16())
    assert model.vqa.precision == "bf16"
    answers = model.ask(EXAMPLE_IMAGE, "what sport is this?", top_k=5)
    probs = [p for _, p in answers]
    assert all(a in model.vqa.answers for a, _ in answers)
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
