"""Evaluation: plan (task × route × epoch), run each sample once (resumable), score in the sandbox, compute metrics."""
