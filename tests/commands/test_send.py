"""``manage.py chatkit_send``: exit status, stdout and the one-line errors, as a shell sees them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.core.management import ManagementUtility

from chatkit_django.models import Thread, ThreadItem
from tests.testapp.server import RecordingServer

pytestmark = pytest.mark.django_db(
    transaction=True
)  # the command runs the server in a thread of its own


def manage(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run ``manage.py chatkit_send ...`` in this process: (exit status, stdout, stderr).

    ``--skip-checks``: the test settings have warnings of their own (testapp models).
    """
    status = 0
    try:
        ManagementUtility(["manage.py", "chatkit_send", "--skip-checks", *args]).execute()
    except SystemExit as e:
        status = e.code if isinstance(e.code, int) else 1
    out, err = capsys.readouterr()
    return status, out, err


def test_it_starts_a_thread_and_prints_its_id_and_the_answer(
    user_factory: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    alice = user_factory(username="alice")
    status, out, err = manage(
        capsys,
        "--user",
        "alice",
        "Your report is ready",
        "--title",
        "Weekly report",
        "--metadata",
        '{"report": 42}',
    )

    assert (status, err) == (0, "")
    thread_id, answer = out.splitlines()
    thread = Thread.objects.get(pk=thread_id)
    assert (thread.owner, thread.title) == (alice, "Weekly report")
    assert thread.data["metadata"] == {"report": 42}
    assert answer == "echo: Your report is ready"

    status, out, err = manage(
        capsys, "--user", str(alice.pk), "--pk", "--thread", thread_id, "more"
    )
    assert (status, out, err) == (0, f"{thread_id}\necho: more\n", "")
    assert ThreadItem.objects.filter(thread_id=thread_id).count() == 4


def test_no_respond_stores_a_notice(
    user_factory: Any, settings: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    settings.CHATKIT = {**settings.CHATKIT, "SERVER_CLASS": "tests.testapp.server.RecordingServer"}
    RecordingServer.CALLS.clear()
    user_factory(username="alice")
    status, out, _ = manage(capsys, "--user", "alice", "--no-respond", "Maintenance at 22:00")
    assert status == 0
    (thread_id,) = out.splitlines()
    assert list(ThreadItem.objects.filter(thread_id=thread_id).values_list("type", "preview")) == [
        ("user_message", "Maintenance at 22:00")
    ]
    assert RecordingServer.CALLS == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--user", "nobody", "hi"], "No user with {'username': 'nobody'}."),
        (["--user", "bob", "hi"], "User 'bob' is inactive."),
        (
            ["--user", "alice", "--thread", "thr_nope", "hi"],
            "Thread thr_nope not found for user 'alice'.",
        ),
        (["--user", "alice", "--metadata", "{", "hi"], "--metadata is not JSON: "),
        (
            ["--user", "alice", "--metadata", "[1]", "hi"],
            "--metadata must be a JSON object, not '[1]'.",
        ),
        (
            ["--user", "alice", "--thread", "thr_x", "--title", "T", "hi"],
            "--title and --metadata are for a new thread; leave out --thread.",
        ),
        (["--user", "alice", "   "], "The message is empty."),
    ],
)
def test_errors_exit_1_with_one_line_and_save_nothing(
    user_factory: Any, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    user_factory(username="alice")
    user_factory(username="bob", is_active=False)

    status, out, err = manage(capsys, *args)

    assert (status, out) == (1, "")
    assert err.startswith(f"CommandError: {message}")
    assert err.count("\n") == 1
    assert (Thread.objects.count(), ThreadItem.objects.count()) == (0, 0)


def test_another_users_thread_is_not_found(
    user_factory: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    user_factory(username="alice")
    user_factory(username="bob")
    _, out, _ = manage(capsys, "--user", "alice", "mine")
    thread_id = out.splitlines()[0]

    status, out, err = manage(capsys, "--user", "bob", "--thread", thread_id, "hi")
    assert (status, out, err) == (
        1,
        "",
        f"CommandError: Thread {thread_id} not found for user 'bob'.\n",
    )
    assert ThreadItem.objects.filter(thread_id=thread_id).count() == 2


def test_a_failed_answer_exits_1_after_the_thread_id(
    user_factory: Any, settings: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    settings.CHATKIT = {**settings.CHATKIT, "SERVER_CLASS": "tests.testapp.server.ScriptedServer"}
    user_factory(username="alice")

    status, out, err = manage(capsys, "--user", "alice", "fail")

    (thread_id,) = out.splitlines()
    assert status == 1
    assert err == (
        f"CommandError: The message is saved in thread {thread_id}, but respond() failed: "
        "see the log.\n"
    )
    assert json.loads(json.dumps(list(ThreadItem.objects.values_list("type", flat=True)))) == [
        "user_message"
    ]
