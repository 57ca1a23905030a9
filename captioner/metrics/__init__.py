"""Scores: caption metrics as the coco-caption toolkit computes them (with its PTB tokenizer), and VQA accuracy."""
