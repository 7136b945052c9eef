"""mkdocs hook: links from a page to files of the repository outside docs/.

The pages link to files such as ``../studies/speed/README.md`` or ``../bearl/kernels.py`` with
relative paths, which GitHub opens from its view of docs/. The site holds only docs/, so mkdocs
reports those links as not found. Before mkdocs checks a page's links, this hook rewrites each
link whose target lies outside docs/ and exists in the repository:

* with ``repo_url`` set in mkdocs.yml, to the file in the repository
  (``REPO_URL/blob/BRANCH/PATH``, ``tree`` for a folder, ``raw`` for an image; BRANCH is
  ``extra.repo_branch``, default ``main``);
* without ``repo_url``, to the link's text followed by the file's path in the repository.

Links inside docs/, and links out of docs/ to a file that does not exist, are left as written,
so that ``mkdocs build --strict`` still fails on them (tests/test_site.py checks both).
Fenced code blocks are not touched.
"""

from __future__ import annotations

import os
import posixpath
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

# [text](target) or ![alt](target), with an optional "title"; the text may span lines
LINK = re.compile(r"(!?)\[([^\]]*)\]\(\s*([^)\s]+)(\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^\s*(```|~~~)")


def on_page_markdown(markdown, page, config, files, **kwargs):
    # absolute paths without resolving symbolic links: a checkout may link folders in
    docs = Path(os.path.abspath(config["docs_dir"]))
    root = Path(os.path.abspath(config["config_file_path"])).parent
    page_dir = (docs / page.file.src_uri).parent
    repo = (config.get("repo_url") or "").rstrip("/")
    branch = (config.get("extra") or {}).get("repo_branch", "main")

    def rewrite(m: re.Match) -> str:
        bang, text, target, title = m.group(1), m.group(2), m.group(3), m.group(4) or ""
        parts = urlsplit(target)
        if parts.scheme or parts.netloc or not parts.path or target.startswith("/"):
            return m.group(0)  # external, absolute, or an anchor on this page
        path = Path(os.path.normpath(page_dir / unquote(parts.path)))
        if path.is_relative_to(docs) or not path.is_relative_to(root) or not path.exists():
            return m.group(0)  # mkdocs checks it (and fails on it if it is broken)
        rel = path.relative_to(root).as_posix()
        if not repo:
            named = rel in text or posixpath.dirname(rel) in text
            return text if named else f"{text} (`{rel}`)"
        kind = "raw" if bang else "tree" if path.is_dir() else "blob"
        anchor = f"#{parts.fragment}" if parts.fragment else ""
        return f"{bang}[{text}]({repo}/{kind}/{branch}/{rel}{anchor}{title})"

    out, chunk, fenced = [], [], None
    for line in markdown.splitlines(keepends=True):
        fence = FENCE.match(line)
        if fenced is None and fence:
            out.append(LINK.sub(rewrite, "".join(chunk)))
            chunk, fenced = [], fence.group(1)
            out.append(line)
        elif fenced is not None:
            out.append(line)
            if fence and fence.group(1) == fenced:
                fenced = None
        else:
            chunk.append(line)
    out.append(LINK.sub(rewrite, "".join(chunk)))
    return "".join(out)
