"""Plain-text tables for logs (the group table, the ID/OOD table, ...)."""
from typing import Sequence


def format_columns(rows: Sequence[Sequence[str]], left_columns: int = 0,
                   rule: bool = False) -> str:
    """``rows`` (the first is the header) as aligned text.

    Columns are separated by two spaces; the first ``left_columns`` columns
    are left-justified, the others right-justified. With ``rule``, a line of
    dashes follows the header.
    """
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ['  '.join(cell.ljust(w) if i < left_columns else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(row, widths)))
             for row in rows]
    if rule:
        lines.insert(1, '  '.join('-' * w for w in widths))
    return '\n'.join(lines)
