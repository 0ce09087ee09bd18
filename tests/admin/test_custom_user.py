"""A project whose user model has neither ``username`` nor ``email``.

``AUTH_USER_MODEL`` cannot change inside one test process, so the tests in
``tests/customuser/suite.py`` run in a pytest subprocess with ``tests.customuser.settings``
(on the same database engine as this run, in a database of their own).
"""

from __future__ import annotations

import os
import subprocess
import sys

from tests import ROOT


def test_custom_user_model_suite() -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.customuser.settings"}
    env["CHATKIT_PG_NAME"] = os.environ.get("CHATKIT_PG_NAME", "chatkit") + "_customuser"
    result = subprocess.run(
        [
            sys.executable, "-m", "pytest", "tests/customuser/suite.py",
            "--ds=tests.customuser.settings", "-q", "-p", "no:cacheprovider",
        ],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "failed" not in result.stdout
