"""store.bulk: the recorder's prepared multi-row inserts write what peewee would."""

from __future__ import annotations

import pytest

from sidecar.store import bulk
from sidecar.store import db as store_db
from sidecar.store.models import Attempt
from sidecar.store.models import Delivery
from sidecar.store.models import Event
from sidecar.store.models import database


@pytest.fixture
def store(empty_store_url):
    db = store_db.bind(empty_store_url)
    db.connect(reuse_if_open=True)
    yield
    db.close()


@pytest.mark.parametrize("model", [Event, Delivery, Attempt])
def test_values_are_what_each_field_would_store(model):
    """Values of a field's own type go to the driver as they are; any other type is
    converted by the field, as peewee does (a number in a text column, text in a number)."""
    statement = bulk._statement(model)
    odd = {int: "7", float: "2.5", str: 42, bool: 1}
    for typed in (True, False):
        row = {}
        for name, _default, _call, native, _db_value in statement._plan:
            if native is None:
                continue
            sample = {int: 3, float: 1.5, str: "x", bool: True}[native]
            row[name] = sample if typed else odd[native]
        expected = tuple(field.db_value(row[field.name]) if field.name in row else
                         field.db_value(field.default() if callable(field.default)
                                        else field.default)
                         for field in statement.fields)
        assert statement.values(row) == expected
        assert [type(v) for v in statement.values(row)] == [type(v) for v in expected]


def test_ids_come_back_in_the_order_of_the_rows(store):
    rows = [{"type": "PUSH_ARTIFACT", "occur_at": n, "operator": "a", "project": "p",
             "repository": f"p/r{n}", "request_id": f"req-{n}", "payload_json": "{}",
             "created_at": 1.0} for n in range(250)]  # more than one statement's worth
    Event.create(**{**rows[0], "request_id": "before"})
    with database.atomic():
        ids = bulk.insert_rows_returning_ids(Event, rows)
    assert len(set(ids)) == 250
    assert [Event.get_by_id(i).request_id for i in ids] == [r["request_id"] for r in rows]
