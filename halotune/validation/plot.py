"""Plain-text scatter plots for the terminal (no dependency), and the optional PNG.

Marks: o a step, * Pareto-optimal, K the knee, E the most tokens per joule; when two points
share a cell the more telling mark wins (K over * over o).
"""

from __future__ import annotations

import importlib.util

PRIORITY = {" ": 0, "o": 1, "*": 2, "E": 3, "K": 4}


def _fmt(v: float) -> str:
    a = abs(v)
    if a >= 1e6:
        return f"{v / 1e6:.3g}M"
    if a >= 1e4:
        return f"{v / 1e3:.3g}k"
    if a >= 100:
        return f"{v:.0f}"
    return f"{v:.3g}"


def scatter(points: list[tuple[float, float, str]], *, width: int = 56, height: int = 10,
            title: str = "", x_unit: str = "W") -> str:
    """points: (x, y, mark). Axes span the data (a flat series gets a small band)."""
    pts = [(x, y, m) for x, y, m in points if x is not None and y is not None]
    if not pts:
        return f"{title}\n  (nothing measured)"
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    if y1 == y0:
        pad = abs(y0) * 0.05 or 1.0
        y0, y1 = y0 - pad, y1 + pad
    grid = [[" "] * width for _ in range(height)]
    for x, y, m in pts:
        c = round((x - x0) / (x1 - x0) * (width - 1))
        r = height - 1 - round((y - y0) / (y1 - y0) * (height - 1))
        if PRIORITY.get(m, 1) >= PRIORITY.get(grid[r][c], 0):
            grid[r][c] = m
    labels = {0: _fmt(y1), height // 2: _fmt((y0 + y1) / 2), height - 1: _fmt(y0)}
    lw = max(len(v) for v in labels.values())
    lines = [title] if title else []
    for r, row in enumerate(grid):
        lines.append(f"{labels.get(r, ''):>{lw}} |" + "".join(row).rstrip())
    lines.append(" " * lw + " +" + "-" * width)
    left, mid, right = _fmt(x0), _fmt((x0 + x1) / 2), _fmt(x1) + f" {x_unit}"
    axis = [" "] * (width + len(right))
    for pos, text in ((0, left), ((width - len(mid)) // 2, mid), (width - len(right) // 2 - 1,
                                                                   right)):
        pos = max(0, min(pos, len(axis) - len(text)))
        axis[pos:pos + len(text)] = text
    lines.append(" " * (lw + 2) + "".join(axis).rstrip())
    return "\n".join(lines)


def _mark(p: dict, eff: bool = False) -> str:
    if p.get("knee"):
        return "K"
    if eff and p.get("best_efficiency"):
        return "E"
    return "*" if p.get("pareto") else "o"


def sweep_plot(doc: dict) -> str:
    """tg tokens/s and tokens per joule against watts, one chart above the other."""
    pts = [p for p in doc["points"] if p.get("watts") is not None]
    tg = next((p["tg_test"] for p in pts if p.get("tg_test")), "tg")
    src = "measured during tg" if doc["watts_source"] == "measured" else "TDP setting"
    charts = [scatter([(p["watts"], p["tg_tps"], _mark(p)) for p in pts],
                      title=f"{tg} tokens/s against watts ({src})")]
    if any(p.get("tokens_per_joule") is not None for p in pts):
        charts.append(scatter([(p["watts"], p["tokens_per_joule"], _mark(p, eff=True))
                               for p in pts], title=f"{tg} tokens per joule against watts"))
    charts.append("o step   * Pareto-optimal   K knee   E most tokens per joule")
    return "\n\n".join(charts)


def png_available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def save_png(doc: dict, path: str) -> None:
    """The same two charts as a PNG (matplotlib, only when installed: png_available())."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [p for p in doc["points"] if p.get("watts") is not None]
    fig, axes = plt.subplots(2, 1, figsize=(7, 7), sharex=True)
    for ax, key, label in ((axes[0], "tg_tps", "tg tokens/s"),
                           (axes[1], "tokens_per_joule", "tg tokens per joule")):
        xs = [p["watts"] for p in pts if p.get(key) is not None]
        ys = [p[key] for p in pts if p.get(key) is not None]
        ax.plot(xs, ys, "o-", color="tab:blue", label="step")
        front = [p for p in pts if p["pareto"] and p.get(key) is not None]
        ax.plot([p["watts"] for p in front], [p[key] for p in front], "*", markersize=14,
                color="tab:orange", label="Pareto-optimal")
        for p in pts:
            if p["knee"] and p.get(key) is not None:
                ax.annotate(f"knee {p['tdp_w']:g} W", (p["watts"], p[key]),
                            textcoords="offset points", xytext=(8, -14))
            ax.annotate(f"{p['tdp_w']:g}", (p["watts"], p[key]), textcoords="offset points",
                        xytext=(0, 6), fontsize=8, ha="center")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower right")
    axes[1].set_xlabel("watts (" + ("measured during tg" if doc["watts_source"] == "measured"
                                    else "TDP setting") + ")")
    fig.suptitle(f"halotune sweep ({doc.get('backend')})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
