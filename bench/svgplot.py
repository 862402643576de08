"""svgplot.py -- small SVG line and bar charts for bench/run's report.

Standard library only: no plotting package is assumed on the machine.
"""

import math
from xml.sax.saxutils import escape

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
WIDTH, HEIGHT = 720, 420
LEFT, RIGHT, TOP, BOTTOM = 80, 170, 40, 60


def _nice_step(span, ticks=6):
    raw = span / max(ticks, 1)
    mag = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def _fmt(v):
    if v == 0:
        return "0"
    if abs(v) >= 1e6:
        return "%gM" % (v / 1e6)
    if abs(v) >= 1e4:
        return "%gk" % (v / 1e3)
    if abs(v) >= 100:
        return "%d" % round(v)
    return "%g" % round(v, 3)


def _frame(title, xlabel, ylabel):
    out = [
        '<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
        'viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">' % (WIDTH, HEIGHT, WIDTH, HEIGHT),
        '<rect width="100%" height="100%" fill="white"/>',
        '<text x="%d" y="22" font-size="15" font-weight="bold">%s</text>' % (LEFT, escape(title)),
        '<text x="%d" y="%d" text-anchor="middle">%s</text>'
        % (LEFT + (WIDTH - LEFT - RIGHT) / 2, HEIGHT - 15, escape(xlabel)),
        '<text x="18" y="%d" text-anchor="middle" transform="rotate(-90 18 %d)">%s</text>'
        % (TOP + (HEIGHT - TOP - BOTTOM) / 2, TOP + (HEIGHT - TOP - BOTTOM) / 2, escape(ylabel)),
    ]
    return out


def _color(i, colors):
    return colors[i] if colors and i < len(colors) and colors[i] else COLORS[i % len(COLORS)]


def _legend(out, names, colors=None):
    x = WIDTH - RIGHT + 15
    for i, name in enumerate(names):
        y = TOP + 10 + 20 * i
        color = _color(i, colors)
        out.append('<rect x="%d" y="%d" width="14" height="10" fill="%s"/>' % (x, y - 9, color))
        out.append('<text x="%d" y="%d">%s</text>' % (x + 20, y, escape(name)))


def line_chart(title, xlabel, ylabel, series, xticks=None, xmap=None, colors=None):
    """series: [(name, [(x, y), ...])]; colors: one per series (or None).
    xmap maps x to plot space (e.g. a log transform); xticks: [(x, label)]
    in data space."""
    xmap = xmap or (lambda v: v)
    pts = [(xmap(x), y) for _, data in series for x, y in data]
    out = _frame(title, xlabel, ylabel)
    if not pts:
        out.append('<text x="%d" y="%d">no data</text>' % (LEFT + 20, TOP + 40))
        out.append("</svg>")
        return "\n".join(out)
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y1 = max(p[1] for p in pts) or 1.0
    ystep = _nice_step(y1)
    y1 = math.ceil(y1 / ystep) * ystep
    if x1 == x0:
        x1 = x0 + 1
    pw, ph = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def sx(v):
        return LEFT + (v - x0) / (x1 - x0) * pw

    def sy(v):
        return TOP + ph - v / y1 * ph

    # grid and axes
    y = 0.0
    while y <= y1 + 1e-9:
        out.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>' % (LEFT, sy(y), LEFT + pw, sy(y)))
        out.append('<text x="%d" y="%.1f" text-anchor="end">%s</text>' % (LEFT - 6, sy(y) + 4, _fmt(y)))
        y += ystep
    if xticks is None:
        step = _nice_step(x1 - x0)
        start = math.ceil(x0 / step) * step
        xticks = []
        v = start
        while v <= x1 + 1e-9:
            xticks.append((v, _fmt(v)))
            v += step
        xticks = [(v, label) for v, label in xticks]
        tick_pos = [(sx(v), label) for v, label in xticks]
    else:
        tick_pos = [(sx(xmap(v)), label) for v, label in xticks]
    for px, label in tick_pos:
        out.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/>' % (px, TOP, px, TOP + ph))
        out.append('<text x="%.1f" y="%d" text-anchor="middle">%s</text>' % (px, TOP + ph + 18, escape(label)))
    out.append('<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#444"/>' % (LEFT, TOP, pw, ph))

    for i, (name, data) in enumerate(series):
        if not data:
            continue
        color = _color(i, colors)
        path = " ".join("%.1f,%.1f" % (sx(xmap(x)), sy(y)) for x, y in data)
        out.append('<polyline points="%s" fill="none" stroke="%s" stroke-width="2"/>' % (path, color))
        for x, y in data:
            out.append('<circle cx="%.1f" cy="%.1f" r="2.5" fill="%s"/>' % (sx(xmap(x)), sy(y), color))
    _legend(out, [name for name, _ in series], colors)
    out.append("</svg>")
    return "\n".join(out)


def bar_chart(title, ylabel, groups, names, values, colors=None):
    """groups: labels along x; names: one bar per name in each group;
    values[g][n]: a number or None (not measured); colors: one per name."""
    out = _frame(title, "", ylabel)
    flat = [v for row in values for v in row if v is not None]
    y1 = max(flat) if flat else 1.0
    ystep = _nice_step(y1 or 1.0)
    y1 = math.ceil((y1 or 1.0) / ystep) * ystep
    pw, ph = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def sy(v):
        return TOP + ph - v / y1 * ph

    y = 0.0
    while y <= y1 + 1e-9:
        out.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>' % (LEFT, sy(y), LEFT + pw, sy(y)))
        out.append('<text x="%d" y="%.1f" text-anchor="end">%s</text>' % (LEFT - 6, sy(y) + 4, _fmt(y)))
        y += ystep
    gw = pw / max(len(groups), 1)
    bw = gw * 0.8 / max(len(names), 1)
    for g, label in enumerate(groups):
        gx = LEFT + g * gw + gw * 0.1
        for n in range(len(names)):
            v = values[g][n]
            if v is None:
                continue
            out.append('<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>'
                       % (gx + n * bw, sy(v), bw - 2, TOP + ph - sy(v), _color(n, colors)))
        out.append('<text x="%.1f" y="%d" text-anchor="middle">%s</text>'
                   % (LEFT + g * gw + gw / 2, TOP + ph + 18, escape(label)))
    out.append('<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#444"/>' % (LEFT, TOP, pw, ph))
    _legend(out, names, colors)
    out.append("</svg>")
    return "\n".join(out)
