import pytest

from chatkit_django.store import DjangoStore
from tests.conftest import make_context, make_thread, make_user_message


@pytest.mark.django_db(transaction=True)
async def test_roundtrip_and_pages(auser_factory):
    user = await auser_factory()
    ctx = make_context(user)
    store = DjangoStore()
    t = make_thread()
    await store.save_thread(t, ctx)
    assert await store.load_thread(t.id, ctx) == t
    items = [make_user_message(t.id, f"m{i}") for i in range(5)]
    for it in items:
        await store.add_thread_item(t.id, it, ctx)
    page = await store.load_thread_items(t.id, None, 2, "asc", ctx)
    assert [i.id for i in page.data] == [items[0].id, items[1].id] and page.has_more
    page = await store.load_thread_items(t.id, page.after, 2, "asc", ctx)
    assert [i.id for i in page.data] == [items[2].id, items[3].id]
    page = await store.load_thread_items(t.id, items[3].id, 5, "desc", ctx)
    assert [i.id for i in page.data] == [
        items[2].id,
        items[1].id,
        items[0].id,
    ] and not page.has_more
