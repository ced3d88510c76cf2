#!/usr/bin/env python3
"""Checks the links to headings inside the built book (docs/book/html):
every `page.html#anchor` and `#anchor` must name an id that the page has.
mdbook-linkcheck checks that linked pages exist, but not the part after
`#`, and a heading renamed on one page silently breaks links on others.

    python3 .ci/check-book-anchors.py [docs/book/html]

Exit status 1, with one line per broken link, when any is broken."""
import html.parser
import os
import sys
import urllib.parse

root = sys.argv[1] if len(sys.argv) > 1 else "docs/book/html"
# Pages that mdBook makes from every chapter at once, or for itself.
SKIP = {"print.html", "toc.html", "404.html"}


class Page(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.links = set(), []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])


pages = {}
for folder, _, files in os.walk(root):
    for name in files:
        if name.endswith(".html"):
            path = os.path.join(folder, name)
            page = Page()
            with open(path, encoding="utf-8") as f:
                page.feed(f.read())
            pages[os.path.relpath(path, root)] = page

if not pages:
    sys.exit(f"{root}: no HTML pages; run `mdbook build docs` first")

broken = []
for name, page in sorted(pages.items()):
    if os.path.basename(name) in SKIP:
        continue
    for href in page.links:
        url = urllib.parse.urlsplit(href)
        if url.scheme or url.netloc or not url.fragment:
            continue
        target = name
        if url.path:
            target = os.path.normpath(os.path.join(os.path.dirname(name), url.path))
        fragment = urllib.parse.unquote(url.fragment)
        if target not in pages:
            broken.append(f"{name}: {href}: no page {target}")
        elif fragment not in pages[target].ids:
            broken.append(f"{name}: {href}: no heading #{fragment} in {target}")

for line in broken:
    print(line)
print(f"book anchors: {len(pages)} pages, {len(broken)} broken links", file=sys.stderr)
sys.exit(1 if broken else 0)
