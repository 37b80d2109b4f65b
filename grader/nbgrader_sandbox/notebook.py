"""The one notebook reader of the grader's reports: a submitted notebook as plain JSON, never run, never trusted.

nbformat's import alone takes two seconds (its schema validation's grammar), and a report reads many notebooks; this
reads nbformat 4 JSON directly. Cells come back with attribute access as nbformat gives them (``cell.source``,
``cell.metadata``), each source as one string; what is not a cell (a number in the list of cells) is left out.
"""

from __future__ import annotations

import json


class Node(dict):
    """A notebook's JSON with attribute access, as nbformat gives it."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _node(value):
    if isinstance(value, dict):
        return Node({k: _node(v) for k, v in value.items()})
    if isinstance(value, list):
        return [_node(v) for v in value]
    return value


def read(path: str, max_cells: int | None = None, notes: list | None = None) -> Node:
    """The notebook at ``path``: its first ``max_cells`` cells when given (``notes`` then gets a line saying what
    was left unread). ValueError when it is not an nbformat 4 notebook."""
    with open(path, encoding="utf-8") as fh:
        nb = json.load(fh)
    if not isinstance(nb, dict) or nb.get("nbformat") != 4 or not isinstance(nb.get("cells"), list):
        raise ValueError(f"{path}: not an nbformat 4 notebook")
    cells = nb["cells"]
    if max_cells is not None and len(cells) > max_cells:
        if notes is not None:
            notes.append(f"{path.rsplit('/', 1)[-1]}: only its first {max_cells} of {len(cells)} cells were read")
        cells = cells[:max_cells]
    nb["cells"] = [c for c in cells if isinstance(c, dict)]
    nb = _node(nb)
    if not isinstance(nb.get("metadata"), dict):
        nb["metadata"] = Node()
    for cell in nb.cells:
        if not isinstance(cell.get("metadata"), dict):
            cell["metadata"] = Node()
        source = cell.get("source", "")
        cell["source"] = "".join(map(str, source)) if isinstance(source, list) else str(source)
    return nb


def normal(source: str) -> str:
    """A cell's source as compared with another: outer blank lines and trailing spaces do not count."""
    return "\n".join(line.rstrip() for line in source.strip().splitlines())
