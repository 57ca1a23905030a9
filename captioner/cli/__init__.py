"""The ``captioner`` command: parsers and dispatch (:mod:`.main`), and the files it reads and writes."""
