"""A report: one self-contained HTML page with every picture of a model and the facts of its training.

The PNGs are embedded as data URIs and the style sheet (``static/report.css``) is inline; the page has no script
and loads nothing, so it opens offline and can be sent as one file.
"""
import base64
import html

from cycnn.io.atomic import write_atomic
from cycnn.viz import assets


def data_uri(png):
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def render(title, facts, summary, figures):
    """The page as text. ``facts`` are (label, value) pairs, ``summary`` the model's layer table and ``figures``
    (anchor, heading, caption, PNG bytes) in the order they appear."""
    esc = html.escape
    style = assets.text("report.css")
    rows = "\n".join(f"<tr><td>{esc(label)}</td><td>{esc(str(value))}</td></tr>" for label, value in facts)
    contents = "\n".join(f'<li><a href="#{esc(anchor)}">{esc(heading)}</a></li>'
                         for anchor, heading, _, _ in figures)
    sections = "\n".join(
        f'<h2 id="{esc(anchor)}">{esc(heading)}</h2>\n<figure><img src="{data_uri(png)}" alt="{esc(heading)}">'
        f"<figcaption>{esc(caption)}</figcaption></figure>" for anchor, heading, caption, png in figures)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title>
<style>
{style}</style>
</head>
<body>
<h1>{esc(title)}</h1>
<table class="facts">
{rows}
</table>
<pre>{esc(summary)}</pre>
<nav><ol>
{contents}
</ol></nav>
{sections}
</body>
</html>
"""


def write(path, text):
    """Write the page atomically: a failure leaves whatever was at ``path`` before."""
    write_atomic(path, lambda fh: fh.write(text.encode("utf-8")))
