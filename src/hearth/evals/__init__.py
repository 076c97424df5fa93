"""Evaluations: retrieval quality now; multiple-choice (C-Eval style) later."""
