"""Shared test settings: hypothesis profiles sized for a 2-core machine."""
