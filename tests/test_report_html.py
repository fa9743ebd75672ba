"""The monitor's HTML report: escaping and determinism here, behaviour in a real headless Chromium.

The browser tests drive Debian's ``chromium`` through ``chromedriver`` (selenium); they are skipped
only when no Chromium can be found (``.ci/run`` installs it when it can).
"""

from __future__ import annotations

import json
import math
import re
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from traitvec.errors import ConfigError
from traitvec.render.html import monitor_report_html

HOSTILE = '</script><script>window.__pwned = 1;</script><img src=x onerror="window.__pwned = 2"> "quoted" \u2028 é ✓'
TEXTS = [
    "The harvest failed, yet the farmers were hopeful about next year.",
    "Everything failed and nothing will ever improve.",
    "A neutral report on the committee budget.\nSecond line, indented:\n    done.",
    HOSTILE,
]


def _values(text: str, tokens: list[str], offsets: list[tuple[int, int]], word: str, sign: float) -> list[float]:
    """A planted projection: high on the tokens of ``word``, small and varied elsewhere."""
    start = text.find(word)
    out = []
    for i, (s, e) in enumerate(offsets):
        inside = start >= 0 and s < start + len(word) and e > start
        out.append(round(sign * (3.0 if inside else 0.1 * math.sin(i + len(tokens))), 4))
    return out


def sample_document() -> dict[str, Any]:
    """A document shaped like ``projections.json``: tiny-tokenizer tokens and offsets, two planted traits."""
    from tiny import make_tokenizer

    tokenizer = make_tokenizer()
    texts = []
    for text in TEXTS:
        enc = tokenizer(text, return_offsets_mapping=True)
        ids = enc["input_ids"]
        offsets = [tuple(o) for o in enc["offset_mapping"]]
        tokens = tokenizer.convert_ids_to_tokens(ids)
        special = [i in tokenizer.all_special_ids for i in ids]
        traits = {}
        for name, word, sign in (("states/optimism", "hopeful", 1.0), ("states/pessimism", "failed", 1.0)):
            per_token = _values(text, tokens, offsets, word, sign)
            per_token = [None if s else v for v, s in zip(per_token, special, strict=True)]
            real = [v for v in per_token if v is not None]
            traits[name] = {"per_token": per_token, "mean": sum(real) / len(real), "max": max(real), "last": real[-1]}
        texts.append(
            {
                "text": text,
                "tokens": tokens,
                "offsets": [list(o) for o in offsets],
                "special": special,
                "traits": traits,
            }
        )
    provenance = {
        "method": "mean_diff",
        "position": "prefill-mean",
        "layer": 2,
        "model": "tiny-llama",
        "trait_hash": "ab12" * 16,
        "unit": "spread units",
    }
    return {
        "name": "sample <monitor> run",
        "experiment": "tiny",
        "texts": texts,
        "vectors": {"states/optimism": provenance, "states/pessimism": {**provenance, "layer": 1}},
    }


def _token_index(doc: dict[str, Any], text: int, word: str) -> int:
    item = doc["texts"][text]
    start = item["text"].find(word)
    return next(i for i, (s, e) in enumerate(item["offsets"]) if s <= start < e)


# --------------------------------------------------------------------------------------------
# without a browser


def test_output_is_deterministic_and_self_contained() -> None:
    page = monitor_report_html(sample_document())
    assert page == monitor_report_html(sample_document())
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page)
    assert '<link rel="stylesheet"' not in page and "@import" not in page
    assert "default-src 'none'" in page


def test_user_text_is_escaped_and_the_embedded_json_cannot_close_its_script() -> None:
    doc = sample_document()
    page = monitor_report_html(doc)
    assert "window.__pwned = 1;</script>" not in page
    assert "&lt;/script&gt;&lt;script&gt;window.__pwned = 1;&lt;/script&gt;" in page
    assert 'onerror="window' not in page
    match = re.search(r'<script type="application/json" id="traitvec-data">(.*?)</script>', page, re.S)
    assert match is not None
    raw = match.group(1)
    assert not set(raw) & {"<", ">", "&", "\u2028", "\u2029"}
    data = json.loads(raw)
    assert data["traits"] == ["states/optimism", "states/pessimism"]
    assert data["texts"][3]["tokens"] == doc["texts"][3]["tokens"]
    assert "".join(doc["texts"][3]["tokens"]).count("script") == 3
    assert "<title>sample &lt;monitor&gt; run</title>" in page


def test_special_tokens_and_non_finite_values_are_excluded() -> None:
    doc = {
        "texts": [
            {
                "text": "ab",
                "tokens": ["<bos>", "a", "b"],
                "offsets": [[0, 0], [0, 1], [1, 2]],
                "special": [True, False, False],
                "traits": {"x/y": {"per_token": [99.0, float("nan"), 2.0]}},
            }
        ],
        "vectors": {},
    }
    data = json.loads(re.search(r'id="traitvec-data">(.*?)</script>', monitor_report_html(doc), re.S).group(1))
    values = data["texts"][0]["traits"]["x/y"]
    assert values["per_token"] == [None, None, 2.0]
    assert values["mean"] == values["max"] == values["last"] == 2.0
    assert data["scale"]["x/y"] == 2.0


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d.update(texts="no"), '"texts" must be a list'),
        (lambda d: d["texts"][1].update(special=[True]), 'texts[1]: "special" has 1 entries'),
        (lambda d: d["texts"][0]["offsets"].__setitem__(2, [5, 1]), "texts[0].offsets: [5, 1] is not"),
        (lambda d: d["texts"][2]["traits"]["states/optimism"]["per_token"].pop(), 'texts[2].traits["states/optimism"]'),
    ],
)
def test_malformed_documents_name_the_text_and_key(change: Any, expected: str) -> None:
    doc = sample_document()
    change(doc)
    with pytest.raises(ConfigError) as info:
        monitor_report_html(doc)
    assert expected in str(info.value)
    assert info.value.setting == "monitor_report_html(document=)"


# --------------------------------------------------------------------------------------------
# in a real headless Chromium


def _chromium() -> tuple[str, str] | None:
    binary = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    driver = shutil.which("chromedriver")
    return (binary, driver) if binary and driver else None


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    found = _chromium()
    if found is None:
        pytest.skip("no chromium + chromedriver on this machine (Debian: apt-get install chromium chromium-driver)")
    from selenium import webdriver  # in the test extra; a missing selenium beside chromium is an error
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=found[1]), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def page(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, Any], str]:
    doc = sample_document()
    path = tmp_path_factory.mktemp("report") / "report.html"
    path.write_text(monitor_report_html(doc), encoding="utf-8")
    browser.get_log("performance")  # drop what the blank start page logged
    browser.get(path.as_uri())
    return browser, doc, path.as_uri()


def _background(driver: Any, text: int, token: int) -> str:
    return driver.execute_script(
        "return getComputedStyle(document.querySelector("
        "'div.toks[data-x=\"' + arguments[0] + '\"] span.t[data-i=\"' + arguments[1] + '\"]')).backgroundColor",
        text,
        token,
    )


def _rgb(colour: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", colour)[:3])


def test_page_renders_every_token_and_the_original_text(page: tuple[Any, dict[str, Any], str]) -> None:
    driver, doc, _ = page
    for index, item in enumerate(doc["texts"]):
        spans = driver.execute_script(
            "return document.querySelectorAll('div.toks[data-x=\"' + arguments[0] + '\"] span.t').length", index
        )
        assert spans == len(item["tokens"])
        shown = driver.execute_script(
            "return document.querySelector('div.toks[data-x=\"' + arguments[0] + '\"]').textContent", index
        )
        assert shown == "<bos>" + item["text"]  # the special BOS shows its token string, then the text as it is
    rows = driver.execute_script("return document.querySelectorAll('#summary-table tbody tr').length")
    assert rows == len(doc["texts"])
    assert "mean_diff" in driver.find_element("id", "provenance").text


def test_selector_recolours_tokens_and_tooltips(page: tuple[Any, dict[str, Any], str]) -> None:
    from selenium.webdriver.support.ui import Select

    driver, doc, _ = page
    hopeful, failed = _token_index(doc, 0, "hopeful"), _token_index(doc, 0, "failed")
    Select(driver.find_element("id", "trait")).select_by_value("states/optimism")
    high, low = _background(driver, 0, hopeful), _background(driver, 0, failed)
    assert high != low
    r, g, b = _rgb(high)
    assert r > 150 and g < 80 and b < 80  # saturated red: the planted token is at the top of the scale
    assert min(_rgb(low)) > 200  # near white: a small value
    assert _rgb(_background(driver, 0, 0)) == (232, 232, 232)  # <bos>: special, grey
    title = driver.execute_script(
        "return document.querySelector('div.toks[data-x=\"0\"] span.t[data-i=\"' + arguments[0] + '\"]').title", hopeful
    )
    assert "states/optimism = +3.000 spread units" in title

    Select(driver.find_element("id", "trait")).select_by_value("states/pessimism")
    assert _background(driver, 0, hopeful) != high
    assert _rgb(_background(driver, 0, failed))[0] > 150 and _rgb(_background(driver, 0, failed))[2] < 80
    assert _rgb(_background(driver, 0, 0)) == (232, 232, 232)
    current = driver.execute_script("return document.querySelector('div.vec.current').dataset.trait")
    assert current == "states/pessimism"


def _order(driver: Any) -> list[int]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#summary-table tbody tr')).map(r => Number(r.dataset.x))"
    )


def test_clicking_a_header_sorts_the_table_and_a_trait_change_resorts(page: tuple[Any, dict[str, Any], str]) -> None:
    from selenium.webdriver.support.ui import Select

    driver, doc, _ = page
    Select(driver.find_element("id", "trait")).select_by_value("states/optimism")
    header = driver.find_element("css selector", '#summary-table th[data-key="mean"]')
    means = {name: [t["traits"][name]["mean"] for t in doc["texts"]] for name in doc["vectors"]}
    by = {name: sorted(range(len(v)), key=lambda i, v=v: -v[i]) for name, v in means.items()}
    header.click()
    assert _order(driver) == by["states/optimism"] != list(range(len(doc["texts"])))
    header.click()
    assert _order(driver) == by["states/optimism"][::-1]
    header.click()
    Select(driver.find_element("id", "trait")).select_by_value("states/pessimism")
    assert _order(driver) == by["states/pessimism"]
    driver.find_element("css selector", '#summary-table th[data-key="index"]').click()
    assert _order(driver) == list(range(len(doc["texts"])))


def test_script_inside_a_text_is_shown_not_run(page: tuple[Any, dict[str, Any], str]) -> None:
    driver, doc, _ = page
    assert driver.execute_script("return typeof window.__pwned") == "undefined"
    assert driver.execute_script("return document.querySelectorAll('body img').length") == 0
    assert driver.execute_script("return document.querySelectorAll('script').length") == 2
    shown = driver.execute_script("return document.querySelector('div.toks[data-x=\"3\"]').textContent")
    assert shown == "<bos>" + HOSTILE
    preview = driver.execute_script("return document.querySelector('#summary-table td.preview a').textContent")
    assert isinstance(preview, str) and preview


def test_page_makes_no_network_request(page: tuple[Any, dict[str, Any], str]) -> None:
    driver, _, url = page
    ours, anywhere = [], []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            params = message["params"]
            anywhere.append(params["request"]["url"])
            if params.get("documentURL") == url:
                ours.append(params["request"]["url"])
    assert ours == [url]  # the page itself, then nothing it asked for
    assert not [u for u in anywhere if re.match(r"(https?|wss?|ftp)://", u)], anywhere
    assert driver.execute_script("return performance.getEntriesByType('resource').length") == 0
