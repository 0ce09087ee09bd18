"""The test settings with ``AUTH_USER_MODEL = "customuser.Member"``.

A user model cannot change inside one test process, so ``tests/admin/test_custom_user.py`` runs
``tests/customuser/checks.py`` with these settings in a pytest subprocess.
"""

from tests.settings import *

INSTALLED_APPS = [*INSTALLED_APPS, "tests.customuser"]
AUTH_USER_MODEL = "customuser.Member"
