"""One builder per SDK thread item shape, for round-trip tests.

Each builder takes a thread id and returns an item with every optional field set, so a
field the store drops or mangles shows up as an inequality.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from chatkit.types import (
    Annotation,
    AssistantMessageContent,
    AssistantMessageItem,
    ClientToolCallItem,
    CustomSummary,
    CustomTask,
    DurationSummary,
    EndOfTurnItem,
    EntitySource,
    FileAttachment,
    FileSource,
    FileTask,
    GeneratedImage,
    GeneratedImageItem,
    HiddenContextItem,
    ImageAttachment,
    ImageTask,
    InferenceOptions,
    SDKHiddenContextItem,
    SearchTask,
    StructuredInputAnswer,
    StructuredInputFreeform,
    StructuredInputItem,
    StructuredInputMultipleChoice,
    StructuredInputMultipleChoiceOption,
    TaskItem,
    ThoughtTask,
    ThreadItem,
    ToolChoice,
    URLSource,
    UserMessageItem,
    UserMessageTagContent,
    UserMessageTextContent,
    WidgetItem,
    Workflow,
    WorkflowItem,
)
from chatkit.widgets import Card, Text

# Naive, as the SDK stamps items (datetime.now()); microseconds must survive.
NAIVE = datetime(2026, 3, 29, 2, 30, 15, 123456)  # inside Europe/Paris' spring-forward gap
AWARE_UTC = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
AWARE_OFFSET = datetime(2026, 7, 1, 23, 59, 59, 1, tzinfo=timezone(timedelta(hours=5, minutes=30)))


def user_message(thread_id: str) -> UserMessageItem:
    return UserMessageItem(
        id="msg_user",
        thread_id=thread_id,
        created_at=NAIVE,
        content=[
            UserMessageTextContent(text="Ask "),
            UserMessageTagContent(
                id="ent_1",
                text="Ada Lovelace",
                data={"kind": "person", "ids": [1, 2], "nested": {"ok": True, "none": None}},
                group="People",
                interactive=True,
            ),
            UserMessageTextContent(text=" about é✓ unicode"),
        ],
        attachments=[
            FileAttachment(
                id="atc_file",
                name="report.pdf",
                mime_type="application/pdf",
                thread_id=thread_id,
                metadata={"pages": 3},
            ),
            ImageAttachment(
                id="atc_img",
                name="cat.png",
                mime_type="image/png",
                preview_url="https://cdn.example.com/cat.png?sig=abc",
            ),
        ],
        quoted_text="the quoted passage",
        inference_options=InferenceOptions(tool_choice=ToolChoice(id="search"), model="gpt-x"),
    )


def assistant_message(thread_id: str) -> AssistantMessageItem:
    return AssistantMessageItem(
        id="msg_assistant",
        thread_id=thread_id,
        created_at=AWARE_UTC,
        content=[
            AssistantMessageContent(
                text="See [1], [2] and [3].",
                annotations=[
                    Annotation(
                        source=URLSource(
                            title="Docs",
                            url="https://example.com/docs",
                            attribution="Example",
                            description="d",
                            timestamp="2026-01-01",
                            group="web",
                        ),
                        index=4,
                    ),
                    Annotation(source=FileSource(title="Spec", filename="spec.md"), index=None),
                    Annotation(
                        source=EntitySource(
                            title="Ada",
                            id="ent_1",
                            icon="profile",
                            label="Person",
                            inline_label="Ada",
                            interactive=True,
                            data={"href": "/people/1"},
                        ),
                        index=14,
                    ),
                ],
            ),
            AssistantMessageContent(text="Second part."),
        ],
    )


def widget(thread_id: str) -> WidgetItem:
    return WidgetItem(
        id="wdg_1",
        thread_id=thread_id,
        created_at=AWARE_OFFSET,
        widget=Card(children=[Text(value="Hello", weight="semibold")], size="md"),
        copy_text="Hello",
    )


def workflow(thread_id: str) -> WorkflowItem:
    return WorkflowItem(
        id="wf_1",
        thread_id=thread_id,
        created_at=NAIVE,
        workflow=Workflow(
            type="reasoning",
            tasks=[
                CustomTask(title="Plan", icon="bolt", content="step", status_indicator="loading"),
                SearchTask(
                    title="Search",
                    title_query="q",
                    queries=["a", "b"],
                    sources=[URLSource(title="Result", url="https://example.com/r")],
                    status_indicator="complete",
                ),
                ThoughtTask(title="Think", content="hmm"),
                FileTask(title="Files", sources=[FileSource(title="F", filename="f.txt")]),
                ImageTask(title="Image"),
            ],
            summary=CustomSummary(title="Thought about it", icon="lightbulb"),
            expanded=True,
        ),
    )


def workflow_with_duration(thread_id: str) -> WorkflowItem:
    return WorkflowItem(
        id="wf_2",
        thread_id=thread_id,
        created_at=NAIVE,
        workflow=Workflow(type="custom", tasks=[], summary=DurationSummary(duration=42)),
    )


def task(thread_id: str) -> TaskItem:
    return TaskItem(
        id="tsk_1",
        thread_id=thread_id,
        created_at=NAIVE,
        task=CustomTask(title="Booked", icon="check", content="Table for two"),
    )


def structured_input(thread_id: str) -> StructuredInputItem:
    return StructuredInputItem(
        id="si_1",
        thread_id=thread_id,
        created_at=NAIVE,
        status="answered",
        inputs=[
            StructuredInputMultipleChoice(
                id="size",
                question="Which size?",
                options=[
                    StructuredInputMultipleChoiceOption(value="S"),
                    StructuredInputMultipleChoiceOption(value="M"),
                ],
                multiple=True,
                answer=StructuredInputAnswer(values=["S", "M"]),
            ),
            StructuredInputFreeform(
                id="notes",
                question="Anything else?",
                description="optional",
                answer=StructuredInputAnswer(skipped=True),
            ),
            StructuredInputFreeform(id="unanswered", question="Later?"),
        ],
    )


def structured_input_skipped(thread_id: str) -> StructuredInputItem:
    return StructuredInputItem(
        id="si_2",
        thread_id=thread_id,
        created_at=NAIVE,
        status="skipped",
        inputs=[StructuredInputFreeform(id="q", question="Q?", answer=None)],
    )


def client_tool_call(thread_id: str) -> ClientToolCallItem:
    return ClientToolCallItem(
        id="tc_1",
        thread_id=thread_id,
        created_at=NAIVE,
        status="completed",
        call_id="call_1",
        name="get_location",
        arguments={"precise": True, "n": 1.5, "list": [1, "a", None]},
        output={"lat": 48.85, "lng": 2.35},
    )


def generated_image(thread_id: str) -> GeneratedImageItem:
    return GeneratedImageItem(
        id="img_1",
        thread_id=thread_id,
        created_at=NAIVE,
        image=GeneratedImage(id="gen_1", url="https://example.com/gen.png"),
    )


def hidden_context(thread_id: str) -> HiddenContextItem:
    return HiddenContextItem(
        id="hcx_1",
        thread_id=thread_id,
        created_at=NAIVE,
        content={"page": "/checkout", "cart": [{"sku": "A", "qty": 2}]},
    )


def sdk_hidden_context(thread_id: str) -> SDKHiddenContextItem:
    return SDKHiddenContextItem(
        id="shcx_1", thread_id=thread_id, created_at=NAIVE, content="user cancelled"
    )


def end_of_turn(thread_id: str) -> EndOfTurnItem:
    return EndOfTurnItem(id="eot_1", thread_id=thread_id, created_at=AWARE_UTC)


ITEM_BUILDERS: dict[str, Callable[[str], ThreadItem]] = {
    "user_message": user_message,
    "assistant_message": assistant_message,
    "widget": widget,
    "workflow": workflow,
    "workflow_with_duration": workflow_with_duration,
    "task": task,
    "structured_input": structured_input,
    "structured_input_skipped": structured_input_skipped,
    "client_tool_call": client_tool_call,
    "generated_image": generated_image,
    "hidden_context": hidden_context,
    "sdk_hidden_context": sdk_hidden_context,
    "end_of_turn": end_of_turn,
}


def assert_same(loaded: Any, given: Any) -> None:
    """Equal field for field, of the same class, with datetimes naive or aware as given."""
    assert type(loaded) is type(given)
    assert loaded == given
    assert loaded.model_dump(mode="json") == given.model_dump(mode="json")
    assert (loaded.created_at.tzinfo is None) == (given.created_at.tzinfo is None)
    assert loaded.created_at.utcoffset() == given.created_at.utcoffset()
