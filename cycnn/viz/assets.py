"""The files under ``cycnn/viz/static/`` that the pages are made of: the live page, the explorer (whose panels
``explore-panels.html`` both pages include) and the report's style sheet.

They are package data, read with ``importlib.resources`` so that they are found wherever cycnn is installed. The
pages must open on their own (the report offline, as one file; the live page after its server has stopped), so a
page's style sheet and script are put inline rather than served as files of their own.
"""
import re
from importlib import resources

# The references a page makes to its own style sheets, scripts and HTML fragments, each replaced by the file's text.
_REFERENCE = re.compile(r'<link rel="stylesheet" href="(?P<css>[\w.-]+)">|<script src="(?P<js>[\w.-]+)"></script>'
                        r'|<!-- include (?P<html>[\w.-]+) -->')


def text(name):
    """The text of the static file ``name``."""
    return (resources.files("cycnn.viz") / "static" / name).read_text(encoding="utf-8")


def inline_page(name):
    """The static page ``name`` with each style sheet and script it refers to put inline: one self-contained
    document."""

    def inline(match):
        if match["html"]:
            return text(match["html"])
        element = "style" if match["css"] else "script"
        return f"<{element}>\n{text(match['css'] or match['js'])}</{element}>"

    return _REFERENCE.sub(inline, text(name))
