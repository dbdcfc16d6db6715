"""Draw docs/rotation-timeline.svg: how one selector slot rolls from one key to the next.

Run from anywhere as `python3 docs/rotation_figure.py`; standard library only, and the
output is the same bytes on every run, so the committed SVG can be regenerated and
diffed. The model drawn is the one in keys/rotation.py:

    published --(publish_ahead passed and every nameserver serves it)--> active
    active    --(its successor became active)--> retired
    retired   --(retain passed)--> revoked          (DNS shows p= empty)
    revoked   --(revoke_for passed, "empty-p")--> gone

The durations shown are the defaults of `keys.rotation.Policy`; keep them in step
if those change. Positions on the time axis are not to scale.
"""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import escape

OUT = Path(__file__).resolve().with_name("rotation-timeline.svg")

# Defaults of keys.rotation.Policy.
EVERY, PUBLISH_AHEAD, RETAIN, REVOKE_FOR = "180d", "2d", "7d", "7d"
OLD, NEW = "s202606", "s202612"

WIDTH, HEIGHT = 900, 470
FONT = "sans-serif"
INK, MUTED, GRID = "#1a1a1a", "#555555", "#8a8a8a"

# Okabe-Ito colours (safe for the common colour-vision deficiencies); black text on
# each has a contrast ratio of at least 6:1.
PHASES = [
    ("published", "#56B4E9", "published (not signing)"),
    ("active", "#009E73", "active (signing)"),
    ("retired", "#E69F00", "retired (still published)"),
    ("revoked", "#CC79A7", "revoked (p= empty)"),
]
COLOUR = {name: colour for name, colour, _ in PHASES}

# Time axis, not to scale: x of each moment (multiples of the run tick spacing, 10).
X0 = 170  # old key activated
X_DUE = 360  # rotation due = activated + every: new key published
X_SWITCH = 500  # DNS gate passed: signers switch, old key retired
X_REVOKE = 630  # retain passed: old key revoked
X_GONE = 800  # revoke_for passed: old record withdrawn
X_END = 880

LANE_H = 44
Y_OLD, Y_NEW = 178, 282
Y_AXIS = 372


def text_width(text: str, size: int) -> int:
    """Rough advance width of `text` in a DejaVu-like sans-serif, for spacing the legend."""
    narrow = sum(text.count(c) for c in " ()[]|.,:;ijlrtf'")
    return round(size * (0.35 * narrow + 0.62 * (len(text) - narrow)))


class Svg:
    def __init__(self) -> None:
        self.parts: list[str] = []

    def add(self, text: str) -> None:
        self.parts.append(text)

    def text(self, x: float, y: float, content: str, size: int = 12, anchor: str = "start",
             weight: str = "normal", fill: str = INK, style: str = "normal") -> None:
        attrs = f'x="{x:g}" y="{y:g}" font-size="{size}" text-anchor="{anchor}" fill="{fill}"'
        if weight != "normal":
            attrs += f' font-weight="{weight}"'
        if style != "normal":
            attrs += f' font-style="{style}"'
        self.add(f"<text {attrs}>{escape(content)}</text>")

    def rect(self, x: float, y: float, w: float, h: float, fill: str, stroke: str = INK,
             dash: str = "") -> None:
        extra = f' stroke-dasharray="{dash}"' if dash else ""
        self.add(f'<rect x="{x:g}" y="{y:g}" width="{w:g}" height="{h:g}" fill="{fill}" '
                 f'stroke="{stroke}" stroke-width="1"{extra}/>')

    def line(self, x1: float, y1: float, x2: float, y2: float, stroke: str = INK, width: float = 1,
             dash: str = "", marker: str = "") -> None:
        extra = f' stroke-dasharray="{dash}"' if dash else ""
        if marker:
            extra += f' {marker}'
        self.add(f'<line x1="{x1:g}" y1="{y1:g}" x2="{x2:g}" y2="{y2:g}" stroke="{stroke}" '
                 f'stroke-width="{width:g}"{extra}/>')

    def render(self) -> str:
        head = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
                f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="{FONT}" role="img" '
                f'aria-labelledby="title desc">')
        return "\n".join([head, *self.parts, "</svg>", ""])


def segment(svg: Svg, x1: float, x2: float, y: float, phase: str, lines: tuple[str, str]) -> None:
    """One phase of a key's lane, labelled on two centred lines."""
    svg.rect(x1, y, x2 - x1, LANE_H, COLOUR[phase])
    mid = (x1 + x2) / 2
    svg.text(mid, y + 19, lines[0], size=13, anchor="middle", weight="bold")
    svg.text(mid, y + 35, lines[1], size=12, anchor="middle")


def span(svg: Svg, x1: float, x2: float, y: float, label: str) -> None:
    """A duration: a double-headed arrow between two moments, labelled underneath."""
    svg.line(x1 + 1, y, x2 - 1, y, stroke=MUTED, marker='marker-start="url(#tip-start)" marker-end="url(#tip)"')
    svg.text((x1 + x2) / 2, y + 15, label, size=11, anchor="middle", fill=MUTED)


def marker(svg: Svg, x: float, number: int, top: float, lines: list[str], anchor: str) -> None:
    """A vertical line through both lanes at a transition, with its callout on top."""
    svg.line(x, top + 6, x, Y_AXIS, stroke=GRID, width=1.2, dash="5 4")
    svg.add(f'<circle cx="{x:g}" cy="{top:g}" r="9" fill="{INK}"/>')
    svg.text(x, top + 4, str(number), size=11, anchor="middle", weight="bold", fill="#ffffff")
    tx = {"start": x + 14, "end": x - 14, "middle": x}[anchor]
    ty = top + 4 if anchor != "middle" else top - 16
    for i, line in enumerate(lines):
        svg.text(tx, ty + 15 * i, line, size=12, anchor=anchor, weight="bold" if i == 0 else "normal")


def build() -> str:
    svg = Svg()
    svg.add("<title id=\"title\">dkimroll key rotation timeline</title>")
    svg.add("<desc id=\"desc\">Two consecutive keys of one selector slot. The old key "
            f"{OLD} signs until the new key {NEW}, published when rotation is due, passes "
            "the DNS gate; the old key then stays published for retain, is revoked with an "
            "empty p= for revoke_for, and is withdrawn.</desc>")
    svg.add("<defs>"
            f'<marker id="tip" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
            f'orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="{MUTED}"/></marker>'
            f'<marker id="tip-start" viewBox="0 0 10 10" refX="1" refY="5" markerWidth="7" markerHeight="7" '
            f'orient="auto"><path d="M10,0 L0,5 L10,10 z" fill="{MUTED}"/></marker>'
            f'<marker id="axis-tip" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="8" markerHeight="8" '
            f'orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="{INK}"/></marker>'
            "</defs>")
    svg.add(f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>')

    # Title.
    svg.text(16, 26, "Key rotation in one selector slot", size=17, weight="bold")
    svg.text(WIDTH - 16, 26, "not to scale", size=11, anchor="end", fill=MUTED, style="italic")

    # Transition markers, callouts staggered over two rows so none overlap.
    row_a, row_b = 58, 112
    marker(svg, X_DUE, 1, row_b, ["rotation due", "(activated + every)"], "end")
    marker(svg, X_SWITCH, 2, row_a, ["DNS gate: every authoritative nameserver",
                                     "serves the new key \u2192 signers switch"], "start")
    marker(svg, X_REVOKE, 3, row_b, ["retain passed", "\u2192 revoke"], "end")
    marker(svg, X_GONE, 4, row_b, ["revoke_for passed", "\u2192 withdraw"], "end")

    # Lane labels.
    for y, sel, role in ((Y_OLD, OLD, "old key"), (Y_NEW, NEW, "new key")):
        svg.text(16, y + 20, sel, size=14, weight="bold")
        svg.text(16, y + 37, role, size=12, fill=MUTED)

    # Old key: active, retired, revoked, then gone.
    segment(svg, X0, X_SWITCH, Y_OLD, "active", ("active", "(signing)"))
    # A break in the bar: the 180 days of signing are drawn short.
    bx = X0 + 55
    svg.add(f'<path d="M{bx - 4:g},{Y_OLD - 4:g} l8,{LANE_H / 2 - 2:g} l-8,4 l8,{LANE_H / 2 - 2:g}" '
            f'fill="none" stroke="#ffffff" stroke-width="5"/>')
    segment(svg, X_SWITCH, X_REVOKE, Y_OLD, "retired", ("retired", "(still published)"))
    segment(svg, X_REVOKE, X_GONE, Y_OLD, "revoked", ("revoked", "(p= empty)"))
    svg.rect(X_GONE, Y_OLD, X_END - X_GONE, LANE_H, "#ffffff", stroke=GRID, dash="4 3")
    svg.text((X_GONE + X_END) / 2, Y_OLD + 19, "gone", size=13, anchor="middle", fill=MUTED, style="italic")
    svg.text((X_GONE + X_END) / 2, Y_OLD + 35, "(no record)", size=11, anchor="middle", fill=MUTED,
             style="italic")

    # New key: published ahead, then active (and in turn due after `every`).
    segment(svg, X_DUE, X_SWITCH, Y_NEW, "published", ("published", "(not signing)"))
    segment(svg, X_SWITCH, X_END, Y_NEW, "active", ("active", "(signing until its own rotation is due)"))
    svg.add(f'<path d="M{X_END:g},{Y_NEW:g} l12,{LANE_H / 2:g} l-12,{LANE_H / 2:g} z" '
            f'fill="{COLOUR["active"]}" stroke="{INK}" stroke-width="1"/>')

    # Durations, under each lane.
    y = Y_OLD + LANE_H + 14
    span(svg, X0, X_DUE, y, f"every ({EVERY})")
    span(svg, X_SWITCH, X_REVOKE, y, f"retain ({RETAIN})")
    span(svg, X_REVOKE, X_GONE, y, f"revoke_for ({REVOKE_FOR})")
    y = Y_NEW + LANE_H + 14
    span(svg, X_DUE, X_SWITCH, y, f"\u2265 publish_ahead ({PUBLISH_AHEAD})")

    # Time axis with one tick per run (e.g. daily); transitions happen only at runs.
    svg.line(X0 - 10, Y_AXIS, X_END + 8, Y_AXIS, width=1.5, marker='marker-end="url(#axis-tip)"')
    for x in range(X0, X_END + 1, 10):
        svg.line(x, Y_AXIS - 4, x, Y_AXIS + 4, stroke=INK, width=1)
    svg.add(f'<path d="M{bx - 4:g},{Y_AXIS - 8:g} l8,8 l-8,8" fill="none" stroke="#ffffff" stroke-width="5"/>')
    svg.text(X_END + 8, Y_AXIS + 20, "time", size=12, anchor="end", fill=MUTED)
    svg.text(X0, Y_AXIS + 20, f"{OLD} activated", size=11, anchor="middle", fill=MUTED)
    svg.text((X_DUE + X_GONE) / 2, Y_AXIS + 20, "each tick: one run of pulumi up", size=11,
             anchor="middle", fill=MUTED)

    # Legend.
    ly = 418
    x = 16
    svg.text(x, ly + 11, "Phases:", size=12, weight="bold")
    x += 62
    for name, colour, label in PHASES:
        svg.rect(x, ly, 16, 14, colour)
        svg.text(x + 22, ly + 11, label, size=12)
        x += 22 + text_width(label, 12) + 26
    svg.rect(x, ly, 16, 14, "#ffffff", stroke=GRID, dash="4 3")
    svg.text(x + 22, ly + 11, "gone (no record)", size=12)

    # Caption.
    svg.text(16, HEIGHT - 12, "Each `pulumi up` (e.g. daily from cron) moves keys along; "
             "nothing changes between transitions.", size=12, fill=INK, style="italic")
    return svg.render()


def main() -> None:
    OUT.write_text(build(), encoding="utf-8", newline="\n")


if __name__ == "__main__":
    main()
