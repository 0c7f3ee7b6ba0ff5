"""Exploring photo collections (Part I of the talk): total recall (QE1), view clustering, scene maps."""
