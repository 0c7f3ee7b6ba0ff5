"""The method plugins of methods/beyond/ (talk Part IV): `active-learning`, `gcn-noisy`, `nsod`, `aml`."""
from __future__ import annotations

from visrep.registry import register  # noqa: F401  (used by the families below)

# --- active-learning ---

# --- gcn-noisy ---

# --- nsod ---

# --- aml ---
