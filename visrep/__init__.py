"""visrep: benchmark and reproduction suite for instance-level visual search and for learning
visual representations with little supervision (after Y. Avrithis, "Exploring and Learning from
Visual Data", HDR, Inria 2020).

Cheap to import: heavy libraries (torch, faiss, cv2) load only inside the plugins that use them.
"""
__version__ = "0.1.0"
