"""The monitor report: one self-contained HTML page from a ``projections.json`` document.

:func:`monitor_report_html` takes the document the monitor writes::

    {"texts": [{"text": str, "tokens": [str, ...], "offsets": [[start, end], ...],
                "special": [bool, ...],
                "traits": {"cat/trait": {"per_token": [float | None, ...], "mean": ..., "max": ..., "last": ...}}}],
     "vectors": {"cat/trait": {"method": ..., "position": ..., "layer": ..., "model": ..., "unit": ..., ...}},
     ...other run fields (shown as they are)}

and returns the page: every text with each token coloured by its projection on the selected trait
(a diverging scale centred at 0, clipped at the 98th percentile of |projection| over the non-special
tokens of all texts; special tokens shown grey and excluded), each token's value in its tooltip, a
trait selector that recolours the texts and refills the table, a per-text table of mean / max /
last that sorts when a column header is clicked, and each vector's provenance.

The page loads nothing: no network, no external asset (a Content-Security-Policy forbids any
fetch); CSS and JavaScript are inline. Every piece of user text is HTML-escaped, and the data the
script reads is embedded as JSON in ``<script type="application/json">`` with ``<``, ``>``, ``&``,
U+2028 and U+2029 escaped, so no text can close the script element. The same document always
gives the same bytes.

Offsets, when present, are character ranges into ``text``: the page shows the original text
(whitespace kept), with the characters of each token inside its span; a token with no characters
of its own (a special token, or the second piece of a character split over several tokens) shows
its token string if special and nothing otherwise. Without offsets, tokens are shown as strings.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import ConfigError

__all__ = ["monitor_report_html", "ROBUST_QUANTILE"]

ROBUST_QUANTILE = 0.98  # the colour scale saturates at this quantile of |projection|
_SETTING = "monitor_report_html(document=)"
_PREVIEW = 90  # characters of each text in the summary table


def monitor_report_html(document: Mapping[str, Any]) -> str:
    """Render a monitor document (the shape of ``projections.json``) as one self-contained page.

    Args:
        document: ``{"texts": [...], "vectors": {...}, ...}`` as described in the module docstring.

    Returns:
        The HTML page, deterministic for the same document.

    Raises:
        ConfigError: the document does not have that shape (the message names the text and key).

    Example:
        >>> page = monitor_report_html(json.loads(Path("projections.json").read_text()))
        >>> Path("report.html").write_text(page, encoding="utf-8")
    """
    texts = [_check_text(index, t) for index, t in enumerate(_list(document.get("texts"), "texts"))]
    vectors = document.get("vectors") or {}
    if not isinstance(vectors, Mapping):
        raise ConfigError(f'{_SETTING}: "vectors" must be an object keyed by trait', setting=_SETTING)
    traits = list(dict.fromkeys([*vectors, *(name for t in texts for name in t["traits"])]))
    data = {
        "traits": traits,
        "scale": {name: _robust_max(texts, name) for name in traits},
        "units": {name: _unit(vectors.get(name)) for name in traits},
        "texts": [_text_data(t, traits) for t in texts],
    }
    title = str(document.get("name") or "traitvec monitor report")
    run = {k: v for k, v in document.items() if k not in ("texts", "vectors")}
    body = [
        f"<header><h1>{_e(title)}</h1>{_selector(traits)}{_legend()}</header>",
        "<noscript><p class=note>Colours, the trait selector and sorting need JavaScript; the numbers are in "
        "projections.json.</p></noscript>",
        _summary(texts),
        '<section id="texts"><h2>Texts</h2>',
        *(_text_block(index, t) for index, t in enumerate(texts)),
        "</section>",
        _provenance(vectors, run),
        f'<script type="application/json" id="traitvec-data">{_script_json(data)}</script>',
        f"<script>{_SCRIPT}</script>",
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<link rel="icon" href="data:,">\n'
        f"<title>{_e(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


# --------------------------------------------------------------------------------------------
# the document


def _list(value: object, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise ConfigError(f'{_SETTING}: "{what}" must be a list, got {type(value).__name__}', setting=_SETTING)
    return value


def _check_text(index: int, item: object) -> dict[str, Any]:
    where = f"{_SETTING}: texts[{index}]"
    if not isinstance(item, Mapping) or not isinstance(item.get("text"), str):
        raise ConfigError(f'{where} must be an object with a "text" string', setting=_SETTING)
    tokens = [str(t) for t in _list(item.get("tokens"), f"texts[{index}].tokens")]
    n = len(tokens)
    special = [bool(s) for s in item.get("special") or [False] * n]
    offsets = item.get("offsets")
    traits = item.get("traits") or {}
    if len(special) != n:
        raise ConfigError(f'{where}: "special" has {len(special)} entries for {n} tokens', setting=_SETTING)
    if offsets is not None:
        offsets = [_span(o, len(item["text"]), f"{where}.offsets") for o in _list(offsets, f"texts[{index}].offsets")]
        if len(offsets) != n:
            raise ConfigError(f'{where}: "offsets" has {len(offsets)} entries for {n} tokens', setting=_SETTING)
    if not isinstance(traits, Mapping):
        raise ConfigError(f'{where}: "traits" must be an object keyed by trait', setting=_SETTING)
    checked = {}
    for name, values in traits.items():
        per_token = values.get("per_token") if isinstance(values, Mapping) else None
        if not isinstance(per_token, list) or len(per_token) != n:
            raise ConfigError(
                f'{where}.traits["{name}"]: "per_token" must list one value per token ({n})', setting=_SETTING
            )
        clean = [None if s else _number(v) for v, s in zip(per_token, special, strict=True)]
        real = [v for v in clean if v is not None]
        checked[str(name)] = {
            "per_token": clean,
            "mean": _number(values.get("mean", sum(real) / len(real) if real else None)),
            "max": _number(values.get("max", max(real) if real else None)),
            "last": _number(values.get("last", real[-1] if real else None)),
        }
    return {"text": item["text"], "tokens": tokens, "special": special, "offsets": offsets, "traits": checked}


def _span(value: object, length: int, where: str) -> tuple[int, int]:
    if (
        isinstance(value, Sequence)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        and 0 <= value[0] <= value[1] <= length
    ):
        return int(value[0]), int(value[1])
    raise ConfigError(f"{where}: {value!r} is not a [start, end] character range inside the text", setting=_SETTING)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _robust_max(texts: Sequence[Mapping[str, Any]], trait: str) -> float:
    values = sorted(abs(v) for t in texts for v in t["traits"].get(trait, {}).get("per_token", []) if v is not None)
    if not values:
        return 1.0
    top = values[max(0, math.ceil(ROBUST_QUANTILE * len(values)) - 1)]
    return top if top > 0 else (values[-1] or 1.0)


def _unit(provenance: object) -> str:
    unit = provenance.get("unit") if isinstance(provenance, Mapping) else None
    return str(unit) if unit else "spread units"


def _text_data(text: Mapping[str, Any], traits: Sequence[str]) -> dict[str, Any]:
    return {
        "tokens": text["tokens"],
        "special": text["special"],
        "traits": {name: text["traits"][name] for name in traits if name in text["traits"]},
    }


# --------------------------------------------------------------------------------------------
# the page


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _script_json(data: object) -> str:
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    for char, escaped in (
        ("&", "\\u0026"),
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(char, escaped)
    return text


def _selector(traits: Sequence[str]) -> str:
    options = "".join(f'<option value="{_e(name)}">{_e(name)}</option>' for name in traits)
    return f'<label class="pick">trait <select id="trait">{options}</select></label>'


def _legend() -> str:
    return (
        '<div class="legend"><span id="lo"></span><span class="bar"></span><span id="hi"></span>'
        f' <span class="note">clipped at the {ROBUST_QUANTILE:.0%} quantile of |projection| over all non-special '
        'tokens, in <span id="unit"></span>; grey tokens are special and excluded</span></div>'
    )


def _summary(texts: Sequence[Mapping[str, Any]]) -> str:
    head = "".join(
        f'<th data-key="{key}" data-type="{kind}" tabindex="0">{label}</th>'
        for key, kind, label in (
            ("index", "num", "#"),
            ("preview", "str", "text"),
            ("tokens", "num", "tokens"),
            ("mean", "num", "mean"),
            ("max", "num", "max"),
            ("last", "num", "last"),
        )
    )
    rows = []
    for index, text in enumerate(texts):
        preview = " ".join(text["text"].split())
        preview = preview if len(preview) <= _PREVIEW else preview[: _PREVIEW - 1] + "…"
        real = sum(not s for s in text["special"])
        rows.append(
            f'<tr data-x="{index}"><td class="index" data-v="{index}">{index + 1}</td>'
            f'<td class="preview" data-v="{_e(preview)}"><a href="#text-{index}">{_e(preview)}</a></td>'
            f'<td class="tokens" data-v="{real}">{real}</td>'
            '<td class="mean"></td><td class="max"></td><td class="last"></td></tr>'
        )
    return (
        '<section id="summary"><h2>Summary <span class="note">(click a column to sort)</span></h2>'
        f'<table id="summary-table"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></section>'
    )


def _text_block(index: int, text: Mapping[str, Any]) -> str:
    pieces, cursor, source = [], 0, text["text"]
    for i, token in enumerate(text["tokens"]):
        cls = "t sp" if text["special"][i] else "t"
        if text["offsets"] is None:
            piece = token
        else:
            start, end = text["offsets"][i]
            start = max(start, cursor)
            if start > cursor:
                pieces.append(_e(source[cursor:start]))
            piece = source[start:end] if end > start else ""
            cursor = max(cursor, end)
            if not piece and text["special"][i]:
                piece = token
        pieces.append(f'<span class="{cls}" data-i="{i}">{_e(piece)}</span>')
    if text["offsets"] is not None and cursor < len(source):
        pieces.append(_e(source[cursor:]))
    return (
        f'<article class="text" id="text-{index}"><h3>text {index + 1}</h3>'
        f'<div class="toks" data-x="{index}">{"".join(pieces)}</div></article>'
    )


def _provenance(vectors: Mapping[str, Any], run: Mapping[str, Any]) -> str:
    blocks = []
    if run:
        blocks.append(f'<div class="vec"><h3>run</h3>{_table(run)}</div>')
    for name, info in vectors.items():
        body = _table(info) if isinstance(info, Mapping) else f"<p>{_e(_value(info))}</p>"
        blocks.append(f'<div class="vec" data-trait="{_e(str(name))}"><h3>{_e(str(name))}</h3>{body}</div>')
    return f'<section id="provenance"><h2>Vectors and provenance</h2>{"".join(blocks)}</section>'


def _table(info: Mapping[str, Any], prefix: str = "") -> str:
    rows = []
    for key, value in info.items():
        if isinstance(value, Mapping) and value:
            rows.append(f"<tr><th>{_e(prefix + str(key))}</th><td>{_table(value)}</td></tr>")
        else:
            rows.append(f"<tr><th>{_e(prefix + str(key))}</th><td>{_e(_value(value))}</td></tr>")
    return f'<table class="kv">{"".join(rows)}</table>'


def _value(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.5rem auto;max-width:72rem;padding:0 1rem;
color:#1b1b1b;background:#fff}
header{display:flex;flex-wrap:wrap;gap:1rem;align-items:center;border-bottom:1px solid #ddd;padding-bottom:.6rem}
h1{font-size:1.3rem;margin:0 1rem 0 0}h2{font-size:1.1rem;margin-top:1.6rem}h3{font-size:.95rem;margin:.8rem 0 .3rem}
.note{color:#666;font-size:.85rem;font-weight:normal}
.legend{display:flex;align-items:center;gap:.4rem;font-size:.85rem}
.bar{display:inline-block;width:9rem;height:.8rem;border:1px solid #ccc;
background:linear-gradient(to right,rgb(33,102,172),rgb(255,255,255),rgb(178,24,43))}
.toks{white-space:pre-wrap;word-break:break-word;line-height:1.9;font-family:ui-monospace,Menlo,Consolas,monospace;
font-size:.9rem;border:1px solid #eee;padding:.5rem .7rem;border-radius:4px}
.t{border-radius:2px;padding:.1rem 0}.t.sp{background:#e8e8e8;color:#9a9a9a;font-size:.75rem}
table{border-collapse:collapse;font-size:.85rem}
#summary-table th,#summary-table td{border-bottom:1px solid #eee;padding:.25rem .5rem;text-align:left}
#summary-table th{cursor:pointer;user-select:none;background:#f6f6f6}
#summary-table th[aria-sort=descending]::after{content:" \\25BC"}
#summary-table th[aria-sort=ascending]::after{content:" \\25B2"}
#summary-table td.mean,#summary-table td.max,#summary-table td.last,#summary-table td.tokens{text-align:right;
font-variant-numeric:tabular-nums}
.kv th{text-align:left;font-weight:600;padding:.15rem .8rem .15rem 0;vertical-align:top;color:#444}
.kv td{padding:.15rem 0;word-break:break-all}
.vec{display:inline-block;vertical-align:top;margin:0 1.5rem 1rem 0;padding:.4rem .8rem;border:1px solid #eee;
border-radius:4px}.vec.current{border-color:#b2182b}
"""

_SCRIPT = """
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("traitvec-data").textContent);
  var select = document.getElementById("trait");
  var table = document.getElementById("summary-table");
  var sortKey = null, sortDir = -1;
  function fmt(v) { return v === null || v === undefined ? "\\u2013" : (v >= 0 ? "+" : "") + v.toFixed(3); }
  function colour(v, scale) {
    var t = Math.max(-1, Math.min(1, v / scale)), a = Math.abs(t);
    var c = t >= 0 ? [178, 24, 43] : [33, 102, 172];
    return "rgb(" + c.map(function (x) { return Math.round(255 + (x - 255) * a); }).join(", ") + ")";
  }
  function recolour(trait) {
    var scale = data.scale[trait], unit = data.units[trait];
    document.querySelectorAll("div.toks").forEach(function (div) {
      var text = data.texts[Number(div.dataset.x)], values = text.traits[trait];
      div.querySelectorAll("span.t").forEach(function (span) {
        var i = Number(span.dataset.i), label = JSON.stringify(text.tokens[i]);
        if (text.special[i]) { span.title = label + " \\u00b7 special token, excluded"; return; }
        var v = values ? values.per_token[i] : null;
        span.style.backgroundColor = v === null ? "" : colour(v, scale);
        span.style.color = v !== null && Math.abs(v / scale) > 0.6 ? "#fff" : "";
        span.title = label + " \\u00b7 " + trait + " = " + fmt(v) + " " + unit;
      });
    });
    table.querySelectorAll("tbody tr").forEach(function (row) {
      var values = data.texts[Number(row.dataset.x)].traits[trait] || {};
      ["mean", "max", "last"].forEach(function (key) {
        var cell = row.querySelector("td." + key), v = values[key];
        cell.textContent = fmt(v);
        cell.dataset.v = v === null || v === undefined ? "" : String(v);
      });
    });
    document.getElementById("lo").textContent = fmt(-scale);
    document.getElementById("hi").textContent = fmt(scale);
    document.getElementById("unit").textContent = unit;
    document.querySelectorAll("div.vec[data-trait]").forEach(function (div) {
      div.classList.toggle("current", div.dataset.trait === trait);
    });
    if (sortKey !== null) { sortRows(); }
  }
  function sortRows() {
    var th = table.querySelector('th[data-key="' + sortKey + '"]'), numeric = th.dataset.type === "num";
    var rows = Array.prototype.slice.call(table.querySelectorAll("tbody tr"));
    rows.sort(function (a, b) {
      var x = a.querySelector("td." + sortKey).dataset.v, y = b.querySelector("td." + sortKey).dataset.v;
      if (x === "" || y === "") { return x === y ? Number(a.dataset.x) - Number(b.dataset.x) : (x === "" ? 1 : -1); }
      var d = numeric ? Number(x) - Number(y) : x.localeCompare(y);
      return d !== 0 ? sortDir * d : Number(a.dataset.x) - Number(b.dataset.x);
    });
    var body = table.tBodies[0];
    rows.forEach(function (row) { body.appendChild(row); });
    table.querySelectorAll("th").forEach(function (h) {
      if (h === th) { h.setAttribute("aria-sort", sortDir < 0 ? "descending" : "ascending"); }
      else { h.removeAttribute("aria-sort"); }
    });
  }
  table.querySelectorAll("th").forEach(function (th) {
    function go() {
      var key = th.dataset.key;
      sortDir = key === sortKey ? -sortDir : (th.dataset.type === "num" && key !== "index" ? -1 : 1);
      sortKey = key;
      sortRows();
    }
    th.addEventListener("click", go);
    th.addEventListener("keydown", function (e) {
      if (e.key === "Enter" || e.key === " ") { e.preventDefault(); go(); }
    });
  });
  select.addEventListener("change", function () { recolour(select.value); });
  if (data.traits.length) { recolour(select.value); }
})();
"""
