"""Shared fixtures. Tests run single-process on CPU (gloo); DeepSpeed uses its CPU accelerator."""

from __future__ import annotations

import os
import warnings

os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("OMP_NUM_THREADS", "2")
warnings.filterwarnings("ignore", category=FutureWarning)
