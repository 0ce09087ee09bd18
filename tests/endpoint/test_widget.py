"""``{% chatkit_widget %}``: ChatKit.js options pointed at our routes, CSRF token included."""

from __future__ import annotations

import pytest
from django.template import Context, Template, TemplateSyntaxError
from django.test import override_settings
from django.urls import path

from chatkit_django.views import ChatKitView
from tests.chatkit_client import config_of, render


def test_defaults_point_at_the_endpoint_and_upload_route():
    html = render("{% chatkit_widget %}")
    assert '<openai-chatkit id="chatkit"' in html
    assert 'src="https://cdn.platform.openai.com/deployments/chatkit/chatkit.js"' in html
    config = config_of(html)
    api = config["options"]["api"]
    assert api["url"] == "/chatkit/"
    assert api["uploadStrategy"] == {"type": "direct", "uploadUrl": "/chatkit/upload/"}
    assert config["options"]["composer"]["attachments"]["enabled"] is True
    assert config["options"]["history"] == {"enabled": True}
    assert config["entitySearchUrl"] == "/chatkit/entities/search/"
    assert config["entityPreviewUrl"] == "/chatkit/entities/preview/"
    assert len(config["csrfToken"]) == 64
    # The script sends that token with every ChatKit.js request.
    assert 'headers.set("X-CSRFToken", csrfToken())' in html
    assert "options.api.fetch = chatkitFetch" in html


def test_options_from_the_template_context_are_merged_over_the_defaults():
    options = {
        "theme": {"colorScheme": "dark"},
        "history": {"enabled": False},
        "composer": {"dictation": {"enabled": True}},
        "api": {"domainKey": "domain_pk_123"},
    }
    html = render("{% chatkit_widget opts element_id='side' %}", opts=options)
    config = config_of(html, "side")["options"]
    assert config["theme"] == {"colorScheme": "dark"}
    assert config["history"] == {"enabled": False}
    assert config["composer"] == {
        "attachments": {"enabled": True, "maxSize": 20 * 1024 * 1024},
        "dictation": {"enabled": True},
    }
    assert config["api"]["domainKey"] == "domain_pk_123"
    assert config["api"]["url"] == "/chatkit/"
    assert '<openai-chatkit id="side"' in html


def test_two_phase_and_no_uploads():
    config = config_of(render("{% chatkit_widget upload_strategy='two_phase' %}"))["options"]
    assert config["api"]["uploadStrategy"] == {"type": "two_phase"}
    config = config_of(render("{% chatkit_widget upload_strategy=None %}"))["options"]
    assert "uploadStrategy" not in config["api"]
    assert "composer" not in config


def test_a_bad_strategy_or_a_missing_request_is_a_template_error():
    with pytest.raises(TemplateSyntaxError, match="upload_strategy"):
        render("{% chatkit_widget upload_strategy='ftp' %}")
    with pytest.raises(TemplateSyntaxError, match="context_processors.request"):
        Template("{% load chatkit %}{% chatkit_widget %}").render(Context({}))


def test_a_strategy_variable_missing_from_the_context_says_so():
    # {% chatkit_widget upload_strategy=upload_strategy %} copied into a view that sets none.
    with pytest.raises(TemplateSyntaxError) as raised:
        render("{% chatkit_widget upload_strategy=upload_strategy %}")
    assert str(raised.value) == (
        "chatkit_widget upload_strategy must be 'direct', 'two_phase' or None, not ''. "
        "A template variable that is missing from the context renders as '': pass "
        'upload_strategy in the view\'s context, or write upload_strategy="direct" in the tag.'
    )


def test_user_content_in_options_cannot_break_out_of_the_script():
    html = render("{% chatkit_widget opts %}", opts={"greeting": "</script><script>alert(1)"})
    assert "</script><script>alert(1)" not in html
    assert config_of(html)["options"]["greeting"] == "</script><script>alert(1)"


urlpatterns = [path("only/", ChatKitView.as_view(), name="endpoint")]


@override_settings(ROOT_URLCONF=__name__)
def test_routes_other_parts_add_are_optional():
    # Only the endpoint exists (by a path, not a name): no upload, no entity callbacks.
    config = config_of(render("{% chatkit_widget endpoint='/only/' %}"))
    assert config["options"]["api"]["url"] == "/only/"
    assert "uploadStrategy" not in config["options"]["api"]
    assert config["entitySearchUrl"] is None
    assert config["entityPreviewUrl"] is None


def test_an_initial_thread_opens_that_thread():
    config = config_of(render("{% chatkit_widget initial_thread=thread_id %}", thread_id="thr_1"))
    assert config["options"]["initialThread"] == "thr_1"
    # Missing or empty (a view without one): the start screen, as without the argument.
    for source in ("{% chatkit_widget initial_thread=missing %}", "{% chatkit_widget %}"):
        assert "initialThread" not in config_of(render(source))["options"]
    # Options from the context still win, as for every default.
    html = render(
        "{% chatkit_widget opts initial_thread='thr_1' %}", opts={"initialThread": "thr_2"}
    )
    assert config_of(html)["options"]["initialThread"] == "thr_2"


def test_the_widget_passes_the_servers_upload_limits_to_chatkit_js(settings):
    # One number: the same number. A mapping: the same patterns (lower case, "*/*" as
    # ChatKit.js spells it, "*"), with the fallback written out when the setting has none.
    settings.CHATKIT = {**settings.CHATKIT, "MAX_UPLOAD_BYTES": 1234}
    config = config_of(render("{% chatkit_widget %}"))["options"]
    assert config["composer"]["attachments"]["maxSize"] == 1234
    limits = {"Image/*": 10 * 2**20, "application/pdf": 25 * 2**20, "*/*": 5 * 2**20}
    settings.CHATKIT = {**settings.CHATKIT, "MAX_UPLOAD_BYTES": limits}
    config = config_of(render("{% chatkit_widget upload_strategy='two_phase' %}"))["options"]
    assert config["composer"]["attachments"]["maxSize"] == {
        "image/*": 10 * 2**20,
        "application/pdf": 25 * 2**20,
        "*": 5 * 2**20,
    }
    settings.CHATKIT = {**settings.CHATKIT, "MAX_UPLOAD_BYTES": {"image/png": 100}}
    config = config_of(render("{% chatkit_widget %}"))["options"]
    assert config["composer"]["attachments"]["maxSize"] == {"image/png": 100, "*": 20 * 2**20}
