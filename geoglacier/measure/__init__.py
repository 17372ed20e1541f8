"""Measuring masks: true areas, outlines, scores against a reference."""
