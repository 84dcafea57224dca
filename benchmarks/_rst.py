"""Shared helper of the benchmark scripts: write a result table as reStructuredText."""

from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "doc" / "benchmarks"


def rst_table(header, rows):
    """Lines of a simple rst table; ``rows`` are sequences of strings."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    sep = "  ".join("=" * w for w in widths)
    lines = [sep, "  ".join(h.ljust(w) for h, w in zip(header, widths)), sep]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    return lines + [sep, ""]


def write_table(name, title, intro, header, rows, out=None):
    """Write ``doc/benchmarks/<name>.rst`` (or ``out``): title, intro, table."""
    lines = [title, "=" * len(title), "", *intro, "", *rst_table(header, rows)]
    path = Path(out) if out else DOC / f"{name}.rst"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    print(f"wrote {path}")
    return path
