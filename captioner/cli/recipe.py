"""The steps of a weights recipe besides training: ``captioner questions``, ``atlas``, ``calibrate``, ``fit-choices``.

A shipped weights folder is made by ``captioner train`` (or ``train-vqa``) and then these, in the order its model
card lists. The work is the library's (:mod:`captioner.data.questions`, :mod:`captioner.lecture.atlas`,
:mod:`captioner.train.calibrate`, :mod:`captioner.train.fit_choices`); here are their options, their reports and
what they write. A step that writes into a weights folder also records itself in the folder's ``config.json``
(``"recipe"``: the commands that made it after training, in order), so a folder says how it was finished.
"""

from __future__ import annotations

import argparse
import shlex
import tempfile
from pathlib import Path

from ..io import one_line
from ..settings import add_options, from_args
from .common import fail

RECIPE = "recipe"  # the config.json key of the steps that finished a weights folder


# ---------------------------------------------------------------- writing into a weights folder


def _command(args: argparse.Namespace) -> str:
    return shlex.join(["captioner", *args.argv])


def _check_writable(folder: Path, path: str | Path | None = None) -> None:
    """Refuse, before the work, a folder where ``path`` (a file in it) could not be written: files are written
    atomically, by way of a temporary file beside them, so try making one."""
    try:
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as e:
        raise ValueError(f"{path or folder}: cannot write into {folder} ({e.strerror})") from None


def _check_output(path: str | None) -> None:
    """Refuse, before the work, an output file that could not be written (its folders are created)."""
    from .files import check_output

    check_output(path)
    if path:
        _check_writable(Path(path).parent, path)


def _step(command: str) -> tuple[str, ...]:
    """What makes a recipe's command one step: its subcommand, and the ``--task`` it runs, if any."""
    words = command.split()
    task = words[words.index("--task") + 1 : words.index("--task") + 2] if "--task" in words else []
    return (*words[1:2], *task)


def record(folder: Path, changes: dict, command: str) -> Path:
    """Write ``changes`` into ``folder``'s config.json (a section's keys merged into the section it has: an
    answer threshold keeps the yes/no one), and ``command`` at the end of its recipe (in place of an earlier run
    of the same step, the same ``--task`` of it), once :mod:`captioner.schema` accepts the result; atomically."""
    from .. import schema
    from ..io import config_errors, read_json, write_json

    path = folder / "config.json"
    config = read_json(path)
    with config_errors(path):
        steps = config.get(RECIPE, [])
        if not isinstance(steps, list) or not all(isinstance(step, str) for step in steps):
            raise ValueError(f"{RECIPE} must be a list of commands, not {str(steps)[:40]!r}")
        for key, value in changes.items():
            merged = isinstance(value, dict) and isinstance(config.get(key), dict)
            config[key] = {**config[key], **value} if merged else value
        config[RECIPE] = [s for s in steps if _step(s) != _step(command)] + [command]
        schema.read_confidence(config)
        schema.read_choice_weights(config)
    write_json(path, config)
    return path


# ---------------------------------------------------------------- calibrate


def configure_calibrate(p: argparse.ArgumentParser, name: str) -> None:
    from ..train.calibrate import CalibrateConfig

    p.description = (
        "Calibrate the 'not sure' thresholds of weights on dev data, and print how good sure and "
        "not-sure results are (on the same results, and held out). With --write, record each threshold "
        "in its weights folder's config.json."
    )
    add_options(p, CalibrateConfig)
    p.set_defaults(func=calibrate)


def calibrate(args: argparse.Namespace) -> int:
    from ..pretrained import resolve_weights
    from ..train.calibrate import CalibrateConfig
    from ..train.calibrate import calibrate as fit

    try:
        cfg = from_args(CalibrateConfig, args)
        folders = {
            task: resolve_weights(cfg.weights, "caption" if task == "caption" else "vqa")[0] for task in cfg.tasks
        }
        for folder in folders.values() if cfg.write else ():
            _check_writable(folder)
        for task in cfg.tasks:
            calibration = fit(cfg, task)
            print("\n".join(calibration.lines()))
            if cfg.write:
                written = record(folders[task], {"confidence": {task: round(calibration.threshold, 4)}}, _command(args))
                print(f"  written to {written}")
    except (FileNotFoundError, ValueError, KeyError) as e:
        return fail(one_line(e), 2)
    return 0


# ---------------------------------------------------------------- fit-choices


def configure_fit_choices(p: argparse.ArgumentParser, name: str) -> None:
    from ..train.fit_choices import FitChoicesConfig

    p.description = (
        "Fit the multiple-choice rule of VQA weights (how --choices scores a candidate: the VQA "
        "softmax for answers it knows, the caption model's words for others) on 4-way items built from "
        'training questions, and record it in the VQA weights\' config.json "choices".'
    )
    add_options(p, FitChoicesConfig)
    p.set_defaults(func=fit_choices)


def fit_choices(args: argparse.Namespace) -> int:
    from ..pretrained import resolve_weights
    from ..train.fit_choices import FitChoicesConfig
    from ..train.fit_choices import fit_choices as fit

    try:
        cfg = from_args(FitChoicesConfig, args)
        folder = resolve_weights(cfg.weights, "vqa")[0]
        if cfg.write:
            _check_writable(folder)
        rule, items = fit(cfg)
        print(f"fitted on {items} {cfg.split} questions (4-way): {vars(rule)}")
        if cfg.write:
            print(f"written to {record(folder, {'choices': vars(rule)}, _command(args))}")
    except (FileNotFoundError, ValueError, KeyError) as e:
        return fail(one_line(e), 2)
    return 0


# ---------------------------------------------------------------- atlas


def configure_atlas(p: argparse.ArgumentParser, name: str) -> None:
    from ..lecture.atlas import AtlasConfig

    p.description = (
        "Map what each recurrent cell of caption weights tracks (its position in the caption, or the "
        "words it stands out after or before), over every caption of a dataset split, and print the "
        "strongest cells. With --write, record the atlas beside the weights (cells.json), where the "
        "app's Look inside tab reads it."
    )
    add_options(p, AtlasConfig)
    p.set_defaults(func=atlas)


def _atlas_summary(atlas: dict) -> list[str]:
    from ..lecture.atlas import TRACKS_SHOWN, ranked
    from ..schema import TRACKS

    lines = [f"{atlas['captions']} captions, {atlas['steps']} steps"]
    for kind, cells in atlas["cells"].items():
        for tracks in TRACKS:
            order = ranked(cells, tracks)
            shown = "; ".join(f"{kind}[{i}] {cells[i]['label']}" for i in order[:5])
            lines.append(f"{kind}: {len(order)} {TRACKS_SHOWN[tracks]}, strongest: {shown}")
    return lines


def atlas(args: argparse.Namespace) -> int:
    from ..decoding import trace_batch
    from ..io import write_json
    from ..lecture.atlas import AtlasConfig, build_atlas, dev_captions, draw_cells
    from ..schema import ATLAS_FILE

    try:
        cfg = from_args(AtlasConfig, args)
        _check_output(cfg.figure)
        loaded, features, captions = dev_captions(cfg.weights, cfg.data, cfg.split, cfg.max_captions, cfg.cache_dir)
        if cfg.write:
            _check_writable(loaded.path)
        made = build_atlas(loaded.model, features, captions, loaded.vocab)
    except (FileNotFoundError, ValueError, KeyError) as e:
        return fail(one_line(e), 2)
    made["data"] = [*cfg.data, cfg.split]
    print("\n".join(_atlas_summary(made)))
    if cfg.write:
        write_json(loaded.path / ATLAS_FILE, made, indent=None)
        record(loaded.path, {}, _command(args))
        print(f"wrote {loaded.path / ATLAS_FILE}")
    if cfg.figure:
        row = min(cfg.figure_caption, len(captions) - 1)
        shown = captions[row]
        draw_cells(
            made,
            trace_batch(loaded.model, features[[row]], [shown])[0],
            [loaded.vocab.words[w] for w in shown],
            cfg.figure,
        )
        print(f"wrote {cfg.figure}")
    return 0


# ---------------------------------------------------------------- questions


def configure_questions(p: argparse.ArgumentParser, name: str) -> None:
    from ..data.questions import QUESTIONS_FILE, QuestionsConfig

    p.description = (
        f"Generate VQA questions from the training captions of caption datasets (by rules, after "
        f"COCO-QA), into FOLDER/{QUESTIONS_FILE}, which `captioner train-vqa --data generated:FOLDER` "
        f"mixes into training; print how many of each kind, and a few at random."
    )
    add_options(p, QuestionsConfig)
    p.set_defaults(func=questions)


def questions(args: argparse.Namespace) -> int:
    import json

    from ..data.questions import (
        QUESTIONS_FILE,
        QuestionsConfig,
        count_by_kind,
        describe,
        generate_from_datasets,
        sample_questions,
    )

    try:
        cfg = from_args(QuestionsConfig, args)
        out = Path(cfg.out) / QUESTIONS_FILE
        _check_output(str(out))
        made = generate_from_datasets(cfg.data, out, cfg.seed)
    except (FileNotFoundError, ValueError, KeyError) as e:
        return fail(one_line(e), 2)
    print(json.dumps(count_by_kind(made)))
    for q in sample_questions(made, cfg.show, cfg.seed):
        print(describe(q))
    return 0
