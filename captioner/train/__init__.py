"""Training: the shared loop, caption (cross-entropy then self-critical) and VQA tasks, and the steps that finish a
shipped weights folder (calibrating "not sure", fitting the multiple-choice rule)."""
