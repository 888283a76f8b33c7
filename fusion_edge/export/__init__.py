"""fusion_edge.export."""
