"""Rewrites one named section of a markdown file, as `jindouctl bench` does (BenchmarkReport):
the text between `<!-- BEGIN name -->` and `<!-- END name -->`, appended if missing."""
import os


def replace_section(doc, name, body):
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    text = open(doc).read() if os.path.exists(doc) else "# Reliability\n"
    if begin in text and end in text and text.index(begin) < text.index(end):
        text = text[:text.index(begin)] + begin + "\n" + body + "\n" + text[text.index(end):]
    else:
        text += f"\n{begin}\n{body}\n{end}\n"
    with open(doc, "w") as f:
        f.write(text)
