"""Evaluations: retrieval quality, and multiple choice (C-Eval style) on served models."""
