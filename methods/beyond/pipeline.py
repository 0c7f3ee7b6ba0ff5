"""Family base classes and shared parameters of methods/beyond/ (talk Part IV)."""
from __future__ import annotations

# --- active-learning ---

# --- gcn-noisy ---

# --- nsod ---

# --- aml ---
