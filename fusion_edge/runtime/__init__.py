"""fusion_edge.runtime."""
