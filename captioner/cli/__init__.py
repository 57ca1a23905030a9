"""The ``captioner`` command: the top parser and dispatch (:mod:`.main`), one module per command (or family of
commands: :mod:`.recipe` for the steps that finish a weights folder), their shared options (:mod:`.common`),
``ask --batch``'s row bookkeeping (:mod:`.batch`), and the files the commands read and write (:mod:`.files`)."""
