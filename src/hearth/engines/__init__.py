"""Inference backends behind one protocol (see base.Engine)."""
