"""Sandbox escapes and resource bombs are refused at load or render as nothing harmful."""

from __future__ import annotations

import pytest

from cavra.templates import CompiledTemplates, TemplateFailure, compile_templates
from cavra.templates.samples import SAMPLES

EVENT = SAMPLES[0]


def compiled(source: str) -> CompiledTemplates:
    return compile_templates(
        {"text": source}, provider="slack", destination="slack", where="c.yaml: connectors.slack", settings={}
    )


def outcome(source: str) -> str:
    """The rendered text, or ``refused: …``."""
    try:
        return compiled(source).render("text", EVENT)
    except TemplateFailure as exc:
        return f"refused: {exc}"


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ cycler.__init__.__globals__.os }}",
        "{{ joiner.__init__.__globals__['__builtins__'] }}",
        "{{ event.__class__ }}",
        "{{ event._private }}",
        "{{ event['__class__'] }}",
        "{{ (title|attr('__class__')) }}",
        "{{ self.__dict__ }}",
        "{{ range.__globals__ }}",
        "{{ lipsum.__globals__ }}",
        "{{ namespace }}",
        "{{ config }}{{ request }}{{ settings.url }}",
    ],
)
def test_escapes_render_nothing_harmful(source: str) -> None:
    out = outcome(source)
    for marker in ("<class", "object", "subclasses", "builtins", "function", "module", "os", "sys"):
        assert marker not in out.lower() or out.startswith("refused"), out


def test_self_is_only_the_template_reference() -> None:
    assert outcome("{{ self }}") in ("<TemplateReference None>", "") or outcome("{{ self }}").startswith(
        "refused"
    )


def test_mutation_is_refused() -> None:
    assert outcome("{{ event.blocked_actions.append('x') }}").startswith("refused")
    assert outcome("{{ event.update({'a': 1}) }}").startswith("refused")


@pytest.mark.parametrize(
    "source",
    [
        "{{ range(10**9) }}",
        "{% for i in range(10**9) %}x{% endfor %}",
        "{% for a in range(10000) %}{% for b in range(10000) %}{% endfor %}{% endfor %}",
        "{{ 'a' * 10**9 }}",
        "{{ ['a'] * 10**8 }}",
        "{{ 'a'|center(10**9) }}",
        "{{ 'a'.ljust(10**9) }}",
        "{{ 'x'|indent(10**9, true) }}",
        "{{ (2**64)**2000 }}",
        "{% set x = 'aaaaaaaaaa' %}" + "{% set x = x ~ x %}" * 40 + "{{ x|length }}",
        "{{ ('a' * 90000)|replace('a', 'bbbbbbbbbb') }}",
        "{{ '%0999999999d' % 1 }}",
        "{{ '{:>999999999}'.format(1) }}",
        "{{ '{:>{}}'.format('a', 10**9) }}",
        "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
        "{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(64) }}",
        "{% for i in range(10000) %}{{ 'y' * 50 }}{% endfor %}",
        # filters that skip the estimate (they cannot amplify) still have their result measured
        "{{ ('&' * 60000)|slack_escape|length }}",
        "{{ ('|' * 60000)|wiki_escape|length }}",
        "{{ ('<' * 30000)|e|e|length }}",
        "{{ [[[[[1]]]]]|tojson(indent=99999) }}",
    ],
)
def test_bombs_are_refused_at_render(source: str) -> None:
    assert outcome(source).startswith("refused: template text:"), source


def test_ordinary_templates_work() -> None:
    source = (
        "{{ title }} [{{ severity }}] {{ event.blocked_actions|join(', ') }} "
        "{% for label, value in facts %}{{ label }}={{ value }};{% endfor %}{{ event.missing.deeper }}"
        "{{ event.decision_count + 1 }} {{ subject.kind }}:{{ subject.id }} {{ destination.name }}"
    )
    out = outcome(source)
    assert out.startswith(
        "CAVRA evidence bundle: demo-session [high] secrets.read, http.request, shell.exec "
    )
    assert "Decisions=7;" in out and out.endswith("8 session:demo-session slack")


@pytest.mark.parametrize(
    ("source", "line"),
    [
        ("ok\n{{ title }\n", 2),
        ("a\nb\n{% for x in y %}", 3),
        ("{% if %}", 1),
        ("{{ title|nosuchfilter }}", 1),
    ],
)
def test_syntax_errors_name_key_and_line(source: str, line: int) -> None:
    from cavra.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        compiled(source)
    assert str(info.value).startswith(f"c.yaml: connectors.slack.templates.text: line {line}: "), info.value


def test_render_errors_are_failures_not_crashes() -> None:
    for source in (
        "{{ 1 / 0 }}",
        "{{ nosuch() }}",
        "{{ event.decision_count + 'x' }}",
        "{{ (1,2)|first(3) }}",
    ):
        assert outcome(source).startswith("refused: template text"), source


def test_a_render_builds_only_the_context_names_its_template_reads() -> None:
    compiled = compile_templates(
        {"text": "{{ title }} {% for k, v in facts %}{{ k }}{% endfor %}"},
        provider="slack",
        destination="d",
        where="w",
        settings={},
    )
    assert compiled.names["text"] == {"title", "facts"}
    bound = compiled.bind(EVENT)
    assert bound.render("text").startswith("CAVRA ")
    assert set(bound._values) == {"title", "facts"}  # no event_json, no copy of the event
