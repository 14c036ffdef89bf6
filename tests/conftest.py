"""Framework tests: everything but the model suite. They read the installed transformers."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
