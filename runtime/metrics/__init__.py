"""Metrics: per-run timings and memory, probes of live containers, and the run history."""
