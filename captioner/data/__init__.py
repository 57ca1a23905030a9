"""Dataset tooling: the readers of every caption and VQA format, and questions generated from captions.

Training and the lecture tools read data through here; the inference core never does."""
