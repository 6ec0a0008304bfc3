"""Jinja environment shared by the feedback pages and the class report: autoescape always on, templates packaged."""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

# default-src 'none' blocks scripts, frames, fonts and fetches; figures are data: URIs and the stylesheet is inline.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"


def _points(x: Any) -> str:
    return f"{float(x):.4g}"


def _seconds(x: Any) -> str:
    if x is None:
        return "–"
    x = float(x)
    if x != x:  # NaN: a timing that was not measured
        return "–"
    return f"{x * 1e3:.0f} ms" if x < 1 else f"{x:.1f} s" if x < 600 else f"{x / 60:.1f} min"


def environment() -> Environment:
    # autoescape=True for every template (not select_autoescape): student text must never reach a page unescaped.
    env = Environment(loader=PackageLoader("autograder.feedback", "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["points"] = _points
    env.filters["seconds"] = _seconds
    env.globals["csp"] = CSP
    return env


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)
