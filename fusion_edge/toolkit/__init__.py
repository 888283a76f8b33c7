"""fusion_edge.toolkit."""
