"""The whole schema's metadata: every package's models, imported for Alembic and tests.

Each feature keeps its tables beside its rules (``scheduler.models``, ``billing.models``,
``web.models``) on the one shared ``Base``; this module is the one list of them.
"""

from __future__ import annotations

import importlib

from ivr.models import Base

MODEL_MODULES = ("ivr.models", "ivr.journal", "ivr.devices", "scheduler.models", "billing.models", "billing.accounts",
                 "web.models", "web.worker_models", "ivr.keysafe", "scheduler.oncall_models", "outreach.models",
                 "ivr.sensitive", "privacy.models")

for _name in MODEL_MODULES:
    importlib.import_module(_name)

metadata = Base.metadata
