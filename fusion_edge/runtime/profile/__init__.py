"""Latency profiling of the field kit: stage histograms, LoadGen-style modes, capacity search.

numpy only (matplotlib is imported by `plots` alone, when a plot is drawn). See docs/profile.md.
"""
