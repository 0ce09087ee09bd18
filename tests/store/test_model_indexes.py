"""Every foreign key column leads exactly one index: none missing, none doubled.

A key's own index is dropped where a composite index starts with the same column (the
composite serves lookups and cascades as well); a second index only slows every insert.
"""

from __future__ import annotations

import pytest
from django.apps import apps
from django.db import connection

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "model", list(apps.get_app_config("chatkit_django").get_models()), ids=lambda m: m.__name__
)
def test_each_foreign_key_column_leads_exactly_one_index(model):
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, model._meta.db_table)
    leading = [
        c["columns"][0]
        for c in constraints.values()
        if (c["index"] or c["unique"]) and c["columns"] and not c["primary_key"]
    ]
    for field in model._meta.fields:
        if field.is_relation and field.many_to_one:
            assert leading.count(field.column) == 1, (field.column, constraints)
