"""LISA (Pan et al. 2024): gamma decoder layers drawn uniformly every K steps."""
