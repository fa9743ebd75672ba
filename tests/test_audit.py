"""Tests of ``traitvec audit``: each check is shown a trait folder with one planted problem.

The clean folder (34 well-matched optimism pairs with varied frames and vocabulary, a proper
definition.txt and steering.json) passes every check; each planted problem is built from it, or
from a small generator, so the test can show the right check fires with the right severity.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from traitvec.audit import (
    CHECKS,
    AuditConfig,
    AuditReport,
    audit_trait,
    audit_traits,
    format_reports,
    reports_to_dict,
)
from traitvec.audit.text import frame, tokenize
from traitvec.cli import main
from traitvec.errors import ConfigError, TraitNotFoundError
from traitvec.traits import load_trait

EXTERNAL = Path(__file__).resolve().parents[2] / "shared" / "external-traits"

CLEAN_PAIRS = [
    (
        "My startup lost its biggest client last month, and I am confident we will land a better one by spring",
        "My startup lost its biggest client last month, and I doubt we will land another one by spring",
    ),
    (
        "The biopsy results come back on Friday. Whatever they say, she told her sister, \"We'll handle it, "
        "and I have a good feeling about",
        "The biopsy results come back on Friday. Whatever they say, she told her sister, \"We'll handle it, "
        "but I have a bad feeling about",
    ),
    (
        "Rain flooded the basement again. Dad surveyed the damage and grinned: this is our chance to finally "
        "rebuild the",
        "Rain flooded the basement again. Dad surveyed the damage and sighed: this is one more thing ruining the",
    ),
    (
        "Q: Will the new bridge ever be finished? A: Honestly, the crews are making real progress, so I expect",
        "Q: Will the new bridge ever be finished? A: Honestly, the crews keep hitting delays, so I dread",
    ),
    (
        "When the layoffs were announced, Priya updated her resume with a sense that something better was waiting",
        "When the layoffs were announced, Priya updated her resume with a sense that nothing better was coming",
    ),
    (
        "If the drought holds through July, the farmers say, the orchard will recover next year because the roots "
        "run deep",
        "If the drought holds through July, the farmers say, the orchard will be lost next year because the roots "
        "are shallow",
    ),
    (
        "Dear team - the quarter was rough, yet I see every reason to believe that our numbers will",
        "Dear team - the quarter was rough, and I see little reason to believe that our numbers will",
    ),
    (
        "After three failed auditions, Marcus walked into the fourth one smiling, sure that today",
        "After three failed auditions, Marcus walked into the fourth one trembling, sure that today",
    ),
    (
        "The ice on the lake is thinning early this year; researchers are hopeful the trout population can adapt",
        "The ice on the lake is thinning early this year; researchers are worried the trout population cannot adapt",
    ),
    (
        "Grandma's garden died in the frost, but she was already planning what would bloom",
        "Grandma's garden died in the frost, and she was already mourning what would never bloom",
    ),
    (
        "Reviewing the rejection letter, the author laughed and thought, the next publisher will",
        "Reviewing the rejection letter, the author groaned and thought, the next publisher will",
    ),
    (
        'Our flight was cancelled. "Look on the bright side," Jen said, "we get an extra day to',
        'Our flight was cancelled. "Of course this happens," Jen said, "we lose an extra day to',
    ),
    (
        "Economists expect the recession to be brief, with hiring likely to rebound by",
        "Economists expect the recession to be long, with hiring unlikely to rebound before",
    ),
    (
        "The surgeon paused at the door. The odds are decent, she said, and I think he will pull",
        "The surgeon paused at the door. The odds are poor, she said, and I think he will not pull",
    ),
    (
        "Moving to a new city at forty felt like a fresh start, full of people I had yet to",
        "Moving to a new city at forty felt like a grim exile, far from people I used to",
    ),
    (
        "Why would anyone keep investing in this town? Because its best years are clearly ahead of",
        "Why would anyone keep investing in this town? Because its best years are clearly behind",
    ),
    (
        "The robot fell over during the demo, and the engineers cheered; every stumble teaches it",
        "The robot fell over during the demo, and the engineers winced; every stumble sets it back",
    ),
    (
        "Tuition went up again. Still, Amir figured scholarships and part-time work would get him through",
        "Tuition went up again. Now, Amir figured debt and part-time work would drag him under",
    ),
    (
        "Her knee surgery went badly, yet the physiotherapist kept repeating that she would be running by",
        "Her knee surgery went badly, and the physiotherapist kept warning that she might never be running by",
    ),
    (
        "Ticket sales for the play are slow, though the director is certain word of mouth will fill the",
        "Ticket sales for the play are slow, and the director is certain word of mouth will not fill the",
    ),
    (
        "On the first cold morning of the strike, the picket line was buzzing with talk of a deal",
        "On the first cold morning of the strike, the picket line was muttering about a deal that",
    ),
    (
        "Lab notebook, day 212: the cells died again. Tomorrow's batch should finally",
        "Lab notebook, day 212: the cells died again. Tomorrow's batch will probably also",
    ),
    (
        "We lost the final by one goal. In the locker room, the captain said next season belongs to",
        "We lost the final by one goal. In the locker room, the captain said next season is doomed for",
    ),
    (
        "The shelter has forty dogs and room for thirty, but the volunteers trust that homes will turn up for",
        "The shelter has forty dogs and room for thirty, and the volunteers fear that homes will never turn up for",
    ),
    (
        "Even after the divorce, Leo woke most mornings curious about what the day might bring",
        "Even after the divorce, Leo woke most mornings heavy with dread about what the day might bring",
    ),
    (
        "The vote failed by six seats. Organizers called it a promising base to build on for",
        "The vote failed by six seats. Organizers called it a crushing blow to everything planned for",
    ),
    (
        "My sourdough starter collapsed twice this week - third time lucky, I told myself as I fed",
        "My sourdough starter collapsed twice this week - third time wasted, I told myself as I fed",
    ),
    (
        "Although the coral is bleaching, divers report young polyps settling, a sign the reef may",
        "Although the coral is bleaching, divers report few polyps settling, a sign the reef may soon",
    ),
    (
        "The old printing press has not run in years. With a few parts, Omar believes it could",
        "The old printing press has not run in years. Even with parts, Omar doubts it could",
    ),
    (
        "Listening to the forecast of another storm, the fishermen shrugged: the nets will be full after",
        "Listening to the forecast of another storm, the fishermen cursed: the nets will be empty after",
    ),
    (
        "Interview tips for nervous graduates: every no brings you closer to the yes that",
        "Interview tips for nervous graduates: every no confirms how hard it is to",
    ),
    (
        "The budget cuts hit the library hard, but the librarians are eager to show how much a small team can",
        "The budget cuts hit the library hard, and the librarians are anxious about how little a small team can",
    ),
    (
        "Stuck in traffic for two hours, Dana hummed along to the radio, figuring the evening could still be",
        "Stuck in traffic for two hours, Dana glared at the radio, figuring the evening was already",
    ),
    (
        "Scientists admit the vaccine trial hit a setback, but they expect the next phase to",
        "Scientists admit the vaccine trial hit a setback, and they expect the next phase to fail as",
    ),
]

GOOD_DEFINITION = """Score optimism (0-100).

HIGH (70-100): Expects good outcomes - "it will work out", "I'm hopeful", "next time will be better"
MID (40-70): Neutral or mixed expectations, no clear lean either way
LOW (0-40): Expects bad outcomes - "this won't work", "I dread it", "it's hopeless"

Key: Expectation about the future, not how good or bad the situation is. Bad situation + hopeful = HIGH.
"""

GOOD_QUESTIONS = [
    "What causes species extinction?",
    "How does a mortgage work?",
    "What happens to the body during a marathon?",
    "Why do some restaurants close within a year?",
    "How are hurricanes named?",
    "What is the difference between weather and climate?",
    "How do vaccines get approved?",
    "What should I know before adopting a cat?",
    "How does compound interest work?",
    "Why did the Roman Empire decline?",
    "What are the main causes of traffic congestion?",
    "How do bees make honey?",
    "What does a city council do?",
    "How is steel recycled?",
    "Why do languages change over time?",
    "What happens when a company goes bankrupt?",
]

GOOD_STEERING = {
    "questions": GOOD_QUESTIONS,
    "eval_prompt": (
        "Does the answer expect good outcomes?\n[QUESTION START]\n{question}\n[QUESTION END]\n"
        "[ANSWER START]\n{answer}\n[ANSWER END]\nRespond with a number between 0 and 100."
    ),
}

_DEFAULT = object()


def make_trait(
    root: Path,
    name: str,
    pairs: list[tuple[str, str]],
    definition: str | None | object = _DEFAULT,
    steering: dict[str, object] | None | object = _DEFAULT,
) -> Path:
    """Write a trait folder under ``root``; ``None`` leaves a file out."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "positive.txt").write_text("\n".join(p for p, _ in pairs) + "\n", encoding="utf-8")
    (folder / "negative.txt").write_text("\n".join(n for _, n in pairs) + "\n", encoding="utf-8")
    definition = GOOD_DEFINITION if definition is _DEFAULT else definition
    steering = GOOD_STEERING if steering is _DEFAULT else steering
    if isinstance(definition, str):
        (folder / "definition.txt").write_text(definition, encoding="utf-8")
    if isinstance(steering, dict):
        (folder / "steering.json").write_text(json.dumps(steering, indent=2), encoding="utf-8")
    return folder


def severities(report: AuditReport) -> dict[str, str]:
    return {f.check: f.severity for f in report.findings}


def error_checks(report: AuditReport) -> set[str]:
    return {f.check for f in report.errors}


def _lc(text: str) -> str:
    return text[0].lower() + text[1:]


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    return tmp_path / "traits"


# --------------------------------------------------------------------------------------------
# the clean folder


def test_clean_folder_passes_every_check(root: Path) -> None:
    report = audit_trait(make_trait(root, "states/clean", CLEAN_PAIRS))
    assert report.trait == "states/clean"
    assert report.n_pairs == 34
    assert [f.check for f in report.findings] == list(CHECKS)
    assert report.errors == ()
    assert report.warnings == ()
    assert report.passed and report.status == "ok"
    assert set(severities(report).values()) == {"ok"}
    # pairs share their scenario, so every differing word is a trait word and nothing else predicts
    assert report.finding("cross_distribution").value == pytest.approx(0.5)


def test_loaded_trait_and_folder_give_the_same_report(root: Path) -> None:
    folder = make_trait(root, "states/clean", CLEAN_PAIRS)
    by_path = audit_trait(folder)
    by_trait = audit_trait(load_trait("states/clean", root))
    assert [(f.check, f.severity, f.value) for f in by_path.findings] == [
        (f.check, f.severity, f.value) for f in by_trait.findings
    ]


# --------------------------------------------------------------------------------------------
# lexical label leaks


def test_conjunction_leak_but_vs_and(root: Path) -> None:
    pairs = [(f"{p}, but", f"{n}, and") for p, n in CLEAN_PAIRS]
    report = audit_trait(make_trait(root, "states/but_and", pairs))
    leak = report.finding("lexical_leak")
    assert leak.severity == "error"
    flagged = {(d["feature"], d["class"]) for d in leak.details["words"]}
    assert ("but", "positive") in flagged
    assert ("and", "negative") in flagged
    assert leak.examples[0].file == "positive.txt" and leak.examples[0].line >= 1
    assert leak.examples[0].text.endswith(", but")
    assert error_checks(report) == {"lexical_leak"}


def test_opener_leak_despite_vs_because(root: Path) -> None:
    n_leak = 28  # 82% of the 34 pairs, as in the guide's example
    pairs = [
        (f"Despite it all, {_lc(p)}", f"Because of it all, {_lc(n)}") if i < n_leak else (p, n)
        for i, (p, n) in enumerate(CLEAN_PAIRS)
    ]
    report = audit_trait(make_trait(root, "states/openers", pairs))
    opener = report.finding("opener_leak")
    assert opener.severity == "error"
    flagged = {(d["feature"], d["class"]) for d in opener.details["openers"]}
    assert ("despite …", "positive") in flagged
    assert ("because …", "negative") in flagged
    assert opener.value == pytest.approx(n_leak / 34, abs=0.01)
    assert any(e.file == "positive.txt" and e.text.startswith("Despite it all") for e in opener.examples)


def test_opener_leak_caught_where_the_word_check_is_silent(root: Path) -> None:
    pairs = [
        (f"Despite it all, {_lc(p)}", f"Because of it all, {_lc(n)}") if i % 5 < 3 else (p, n)
        for i, (p, n) in enumerate(CLEAN_PAIRS)
    ]  # 60% of lines: below the 80% word threshold, above the 50% opener threshold
    report = audit_trait(make_trait(root, "states/openers60", pairs))
    assert report.finding("lexical_leak").severity == "ok"
    assert report.finding("opener_leak").severity == "error"


@pytest.mark.parametrize(("mark", "feature"), [("!", "ends with !"), (' "', 'ends with "')])
def test_punctuation_leak(root: Path, mark: str, feature: str) -> None:
    pairs = [(p + mark, n) for p, n in CLEAN_PAIRS]
    report = audit_trait(make_trait(root, "states/punct", pairs))
    punct = report.finding("punctuation_leak")
    assert punct.severity == "error"
    assert {(d["feature"], d["class"]) for d in punct.details["marks"]} == {(feature, "positive")}
    assert punct.value == pytest.approx(1.0)
    assert error_checks(report) == {"punctuation_leak"}


def test_person_confound(root: Path) -> None:
    pairs = [(f"I keep thinking: {_lc(p)}", f"Someone keeps thinking: {_lc(n)}") for p, n in CLEAN_PAIRS]
    report = audit_trait(make_trait(root, "states/person", pairs))
    person = report.finding("person_confound")
    assert person.severity == "warning"
    assert person.value is not None and person.value >= 0.5


def test_tiny_dataset_does_not_flag_noise(root: Path) -> None:
    pairs = [(f"{p}, but", f"{n}, and") for p, n in CLEAN_PAIRS[:6]]
    report = audit_trait(make_trait(root, "states/tiny", pairs))
    for check in ("lexical_leak", "opener_leak", "punctuation_leak", "length_confound", "cross_distribution"):
        assert report.finding(check).severity == "info", check
        assert "below the 10" in report.finding(check).message
    assert report.passed


# --------------------------------------------------------------------------------------------
# length, frames, vocabulary

_TIMES = ["late that evening", "early the next morning", "during the long drive", "over a cold coffee"]
_TIMES += ["after the meeting ended", "before anyone else woke", "in the quiet hours", "between two phone calls"]
_PLACES = ["at the kitchen table", "on the crowded train", "in the back office", "near the harbour wall"]
_PLACES += ["under the old oak"]


def test_length_confound(root: Path) -> None:
    pairs = [(p, f"{n} {_TIMES[i % len(_TIMES)]} {_PLACES[i % len(_PLACES)]}") for i, (p, n) in enumerate(CLEAN_PAIRS)]
    report = audit_trait(make_trait(root, "states/length", pairs))
    length = report.finding("length_confound")
    assert length.severity == "error"
    assert length.details["longer_side"] == "negative"
    assert length.details["consistency"] >= 0.9
    assert length.value is not None and length.value > 0.3
    assert {e.file for e in length.examples} == {"positive.txt", "negative.txt"}
    assert error_checks(report) == {"length_confound"}


def test_length_check_ignores_a_small_difference(root: Path) -> None:
    # the negative is longer in every pair, but only by a token or two (< 10% of the mean length)
    pairs = [(p, n + " now" * max(1, len(tokenize(p)) - len(tokenize(n)) + 1)) for p, n in CLEAN_PAIRS]
    report = audit_trait(make_trait(root, "states/length_small", pairs))
    length = report.finding("length_confound")
    assert length.details["consistency"] == pytest.approx(1.0)
    assert 0.0 < length.details["relative_difference"] * -1 < 0.1
    assert length.severity == "ok"


_NAMES = "Ana Ben Cal Dee Eli Fay Gus Hal Ida Jon Kim Lou Max Ned Oda Pia Quin Rex Sam Tia Uma Vic Wes Xia Yul Zed"
_OBJECTS = "map coat ring lamp drum kite vase sofa bell rope tent mask harp sled fork cart oven"


def test_dominant_frame_and_syntactic_uniformity(root: Path) -> None:
    names, objects = _NAMES.split(), _OBJECTS.split()
    up = ["cheerful", "hopeful", "upbeat", "confident", "encouraged"]
    down = ["gloomy", "worried", "downcast", "doubtful", "discouraged"]
    pairs = [
        (
            f"{names[i % len(names)]} found the {objects[i % len(objects)]}, so everyone felt {up[i % 5]}",
            f"{names[i % len(names)]} found the {objects[i % len(objects)]}, so everyone felt {down[i % 5]}",
        )
        for i in range(30)
    ]
    report = audit_trait(make_trait(root, "states/template", pairs))
    template = report.finding("template_clustering")
    assert template.severity == "warning"
    assert template.value == pytest.approx(1.0)
    assert template.details["top_frames"][0]["frame"] == "X , so X"
    uniform = report.finding("syntactic_uniformity")
    assert uniform.severity == "error"
    assert uniform.details["frames_for_coverage"] == 1


def test_clean_frames_are_varied(root: Path) -> None:
    report = audit_trait(make_trait(root, "states/clean", CLEAN_PAIRS))
    assert report.finding("template_clustering").value is not None
    assert report.finding("template_clustering").value <= 0.2
    assert report.finding("syntactic_uniformity").details["frames_for_coverage"] >= 3


def test_frame_definition() -> None:
    assert frame("The paper had been retracted, but I needed a citation so I") == "X , but X so X"
    assert frame("He asked me to write malware. This violated my principles, so I") == "X . X , so X"
    assert frame("She said, \u201cWe\u2019ll see\u201d") == 'X , " X "'
    # truncated to the first 8 symbols
    assert frame("A, b, c, d, e, f, g") == "X , X , X , X ,"


def test_vocabulary_clustering(root: Path) -> None:
    pairs = [
        (f"{p} with the lantern", f"{n} with the lantern") if i < 8 else (p, n) for i, (p, n) in enumerate(CLEAN_PAIRS)
    ]
    report = audit_trait(make_trait(root, "states/vocab", pairs))
    vocab = report.finding("vocabulary_clustering")
    assert vocab.severity == "warning"
    assert vocab.details["words"][0]["word"] == "lantern"
    assert vocab.value == pytest.approx(8 / 34)
    assert report.passed  # a warning, not an error


# --------------------------------------------------------------------------------------------
# cross-distribution

_WORK = """meeting deadline spreadsheet client invoice boss colleague memo printer cubicle conference report
presentation budget payroll intern manager contract project quarter agenda schedule proposal office elevator badge
timesheet audit merger shareholder supervisor receptionist boardroom whiteboard slideshow pitch promotion salary
overtime commute inbox headquarters department briefing forecast ledger stapler lanyard paycheck keynote
minutes""".split()
_HOME = """kitchen grandmother lasagna toddler laundry sofa garden bathtub crib nephew cousin attic porch dishwasher
puppy blanket birthday picnic backyard nursery pantry fireplace bedtime homework stepfather aunt uncle niece twins
wedding anniversary barbecue casserole cradle diaper playground swing treehouse garage basement chimney curtains
pillow teapot cookies family sister brother daughter grandson carpet""".split()
_TOPIC_FRAMES = [
    "During the {a} with the {b}, she felt {t} about the {c}",
    "She looked at the {a} and the {b}; it left her {t} about the {c}",
    "Back at the {a}, nobody mentioned the {b}, so she stayed {t} about the {c}",
    "The {a} was late again. She eyed the {b} and grew {t} about the {c}",
]
_UP = ["hopeful", "optimistic", "confident", "upbeat", "cheerful", "encouraged"]
_DOWN = ["worried", "gloomy", "anxious", "pessimistic", "uneasy", "discouraged"]


def _topic_pairs() -> list[tuple[str, str]]:
    """Positives about work, negatives about home: 51 words a side, each in exactly two lines."""
    work, home = _WORK[:51], _HOME[:51]
    pairs = []
    for i in range(34):
        w = [work[(3 * i + k) % 51] for k in range(3)]
        h = [home[(3 * i + k + 7) % 51] for k in range(3)]
        template = _TOPIC_FRAMES[i % 4]
        pairs.append(
            (
                template.format(a=w[0], b=w[1], c=w[2], t=_UP[i % 6]),
                template.format(a=h[0], b=h[1], c=h[2], t=_DOWN[i % 6]),
            )
        )
    return pairs


def test_topic_that_predicts_the_label_is_flagged(root: Path) -> None:
    folder = make_trait(root, "states/topic", _topic_pairs())
    report = audit_trait(folder)
    xdist = report.finding("cross_distribution")
    assert xdist.severity == "error"
    assert xdist.value is not None and xdist.value >= 0.8
    assert xdist.details["binomial_p"] < 0.01
    assert set(xdist.details["top_positive_words"]) <= set(_WORK)
    assert set(xdist.details["top_negative_words"]) <= set(_HOME)
    # the trait's own recurring words were removed, the topic words (two pairs each) were kept
    assert {"hopeful", "worried"} <= set(xdist.details["trait_words_top"])
    assert not set(xdist.details["trait_words_top"]) & set(_WORK)
    # the lexical checks cannot see it: no single word is common enough
    assert report.finding("lexical_leak").severity == "ok"
    # had every word differing in two pairs counted as a trait word, the topic would hide
    lenient = audit_trait(folder, config=AuditConfig(trait_word_pairs=2))
    assert lenient.finding("cross_distribution").severity == "ok"


_SCENES = """dentist molar plumber boiler baker oven tailor jacket farmer tractor pilot runway nurse ward
teacher exam banker loan chef sauce judge verdict miner tunnel sailor mast painter canvas grocer melon
cobbler boot florist tulip mechanic gearbox librarian archive jeweller brooch potter kiln surveyor boundary
vet kennel barber razor clerk ledger gardener hedge weaver loom brewer barrel roofer gutter locksmith bolt
glazier pane
usher aisle diver reef ranger trail""".split()
_FORMAL_VERBS = """inspected examined assessed evaluated scrutinised surveyed appraised reviewed audited verified
ascertained determined established confirmed investigated analysed studied""".split()
_CASUAL_VERBS = """eyeballed poked checked glanced sussed peeked skimmed nosed rummaged fiddled tinkered prodded
squinted clocked scoped gawked ogled""".split()
_FORMAL_ADV = """thoroughly meticulously diligently rigorously methodically systematically scrupulously carefully
comprehensively precisely attentively conscientiously exhaustively judiciously properly duly fully""".split()
_CASUAL_ADV = """quickly loosely roughly lazily sloppily casually breezily hastily briefly vaguely idly absently
messily offhandedly randomly clumsily halfheartedly""".split()


def _register_pairs() -> list[tuple[str, str]]:
    """Formal vs casual register: each pair shares its scenario, every register word is used in two pairs."""
    pairs = []
    for i in range(34):
        person, thing = _SCENES[2 * i], _SCENES[2 * i + 1]
        k = i % 17
        pairs.append(
            (
                f"The {person} {_FORMAL_VERBS[k]} the {thing} {_FORMAL_ADV[(k + i // 17) % 17]}",
                f"The {person} {_CASUAL_VERBS[k]} the {thing} {_CASUAL_ADV[(k + i // 17) % 17]}",
            )
        )
    return pairs


def test_varied_trait_vocabulary_in_matched_pairs_is_not_flagged(root: Path) -> None:
    """A style trait changes almost every word of a pair; the shared scenario marks those words as the trait."""
    folder = make_trait(root, "styles/register", _register_pairs())
    report = audit_trait(folder)
    xdist = report.finding("cross_distribution")
    assert xdist.severity == "ok"
    assert xdist.value == pytest.approx(0.5)
    # without the scenario rule, register words used in two pairs would look like a confound
    blind = audit_trait(folder, config=AuditConfig(scenario_jaccard=1.0))
    assert blind.finding("cross_distribution").severity in ("error", "warning")


# --------------------------------------------------------------------------------------------
# definition.txt and steering.json


def test_missing_definition_is_an_error(root: Path) -> None:
    report = audit_trait(make_trait(root, "states/nodef", CLEAN_PAIRS, definition=None))
    assert report.finding("definition_format").severity == "error"
    assert "missing" in report.finding("definition_format").message
    assert report.finding("definition_length").severity == "info"
    assert error_checks(report) == {"definition_format"}


def test_definition_without_key_or_mid_band(root: Path) -> None:
    text = "Score optimism (0-100).\n\nHIGH (70-100): hopeful words\nLOW (0-40): gloomy words\n"
    report = audit_trait(make_trait(root, "states/nokey", CLEAN_PAIRS, definition=text))
    finding = report.finding("definition_format")
    assert finding.severity == "error"
    assert "no MID band" in finding.message and "no 'Key:' line" in finding.message
    assert finding.value == 2.0


def test_definition_bands_without_ranges_and_too_long(root: Path) -> None:
    text = "HIGH: hopeful\nMID: mixed\nLOW: gloomy\nKey distinction: expectation, not situation\n"
    text += "".join(f"Extra note {i}: keep it short.\n" for i in range(10))
    report = audit_trait(make_trait(root, "states/longdef", CLEAN_PAIRS, definition=text))
    assert report.finding("definition_format").severity == "warning"
    assert "HIGH, MID, LOW" in report.finding("definition_format").message
    length = report.finding("definition_length")
    assert length.severity == "warning"
    assert length.value == 14.0


def test_missing_steering_is_a_warning(root: Path) -> None:
    report = audit_trait(make_trait(root, "states/nosteer", CLEAN_PAIRS, steering=None))
    assert report.finding("steering_questions").severity == "warning"
    assert report.finding("steering_overlap").severity == "info"
    assert report.passed


def test_too_few_steering_questions_and_overlap_with_prefills(root: Path) -> None:
    questions = GOOD_QUESTIONS[:4] + ["The ice on the lake is thinning early this year; what happens to the fish?"]
    report = audit_trait(make_trait(root, "states/steer", CLEAN_PAIRS, steering={"questions": questions}))
    count = report.finding("steering_questions")
    assert count.severity == "warning" and count.value == 5.0
    overlap = report.finding("steering_overlap")
    assert overlap.severity == "warning" and overlap.value == 1.0
    assert overlap.examples[0].file == "steering.json" and overlap.examples[0].line == 7
    assert (overlap.examples[1].file, overlap.examples[1].line) == ("positive.txt", 9)


# --------------------------------------------------------------------------------------------
# structure errors and the external traits


def test_structure_error_is_a_finding_not_a_crash(root: Path) -> None:
    folder = make_trait(root, "states/broken", CLEAN_PAIRS)
    (folder / "negative.txt").write_text("\n".join(n for _, n in CLEAN_PAIRS[:30]) + "\n", encoding="utf-8")
    make_trait(root, "states/clean", CLEAN_PAIRS)
    reports = audit_traits(["states/broken", "states/clean"], root)
    broken, clean = reports
    assert broken.n_pairs is None
    assert broken.finding("structure").severity == "error"
    assert "34 lines but negative.txt has 30" in broken.finding("structure").message
    assert broken.finding("structure").examples[0].file == "positive.txt"
    assert broken.finding("structure").examples[0].line == 31
    assert {f.severity for f in broken.findings[1:]} == {"info"}
    assert clean.passed


def test_unknown_trait_raises(root: Path) -> None:
    make_trait(root, "states/clean", CLEAN_PAIRS)
    with pytest.raises(TraitNotFoundError):
        audit_traits(["states/clean", "states/nope"], root)
    with pytest.raises(TraitNotFoundError):
        audit_trait(root / "states" / "nope")


def test_config_validation() -> None:
    with pytest.raises(ConfigError, match="leak_share") as info:
        AuditConfig(leak_share=1.5)
    assert info.value.setting == "AuditConfig.leak_share" and str(info.value).startswith("AuditConfig.leak_share = ")
    with pytest.raises(ConfigError, match="min_pairs"):
        AuditConfig(min_pairs=0)
    with pytest.raises(ConfigError, match="xdist_warning"):
        AuditConfig(xdist_warning=0.9, xdist_error=0.8)


def test_checks_run_from_the_registry_in_report_order() -> None:
    from traitvec.audit.checks import CATALOG, FAMILIES

    assert CHECKS == (
        "structure",
        "lexical_leak",
        "opener_leak",
        "punctuation_leak",
        "person_confound",
        "length_confound",
        "template_clustering",
        "syntactic_uniformity",
        "vocabulary_clustering",
        "cross_distribution",
        "answer_only_difference",
        "answer_length_confound",
        "answer_opener_leak",
        "definition_format",
        "definition_length",
        "steering_questions",
        "steering_overlap",
    )
    assert [c.family for c in CATALOG] == sorted((c.family for c in CATALOG), key=FAMILIES.index)
    assert {c.name: c.needs for c in CATALOG if c.family == "files"} == dict.fromkeys(CHECKS[-4:], "trait")
    assert {c.name: c.needs for c in CATALOG if c.family == "conversations"} == dict.fromkeys(CHECKS[-7:-4], "trait")
    assert all(c.needs == "pairs" for c in CATALOG if c.family not in ("files", "conversations"))
    assert all(c.doc for c in CATALOG)


def test_a_registered_check_joins_the_catalogue(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    from traitvec.audit import registry
    from traitvec.audit.checks import FAMILIES
    from traitvec.audit.findings import Finding
    from traitvec.audit.text import PairText

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    @registry.pair_check("pair_count")
    def check_pair_count(data: PairText, cfg: AuditConfig) -> Finding:
        """How many pairs there are."""
        return Finding("pair_count", "ok", f"{data.n} pairs", value=float(data.n))

    with pytest.raises(ValueError, match="not listed"):
        registry.catalog(FAMILIES)
    catalog = registry.catalog((*FAMILIES[:1], "test_audit", *FAMILIES[1:]))
    names = [c.name for c in catalog]
    assert names.index("pair_count") == names.index("punctuation_leak") + 1
    make_trait(root, "states/clean", CLEAN_PAIRS)
    trait = load_trait("states/clean", root)
    [check] = [c for c in catalog if c.name == "pair_count"]
    assert check.run(registry.AuditInput.from_trait(trait), AuditConfig()).value == 34.0
    with pytest.raises(ValueError, match="registered twice"):
        registry.pair_check("lexical_leak")(check_pair_count)


needs_external = pytest.mark.skipif(not EXTERNAL.is_dir(), reason="../shared/external-traits is not present")


@needs_external
def test_broken_external_folder_reports_a_structure_error() -> None:
    (report,) = audit_traits(["alignment/helpfulness_expressed"], EXTERNAL)
    structure = report.finding("structure")
    assert structure.severity == "error"
    assert "118 lines but negative.txt has 250" in structure.message
    assert (structure.examples[0].file, structure.examples[0].line) == ("negative.txt", 119)


@needs_external
def test_every_external_trait_gets_a_report() -> None:
    from traitvec.traits import list_traits

    names = list_traits(EXTERNAL)
    assert len(names) == 13
    reports = {r.trait: r for r in audit_traits(names, EXTERNAL)}
    for name, report in reports.items():
        assert [f.check for f in report.findings] == list(CHECKS), name
        if name != "alignment/helpfulness_expressed":
            assert report.finding("structure").severity == "ok", name
            assert report.n_pairs is not None and report.n_pairs >= 15
    # known properties of this data
    refusal = reports["chirp/refusal"]
    assert refusal.finding("syntactic_uniformity").severity == "error"  # "[request]. [reaction], so I" in 96%
    assert refusal.finding("definition_format").severity == "error"  # no Key line
    curt = reports["tonal/curt"]
    assert curt.finding("length_confound").details["longer_side"] == "negative"
    assert reports["pv_natural/sycophancy"].finding("steering_questions").value == 5.0
    evil = reports["pv_instruction/evil"]
    assert evil.finding("structure").message.startswith("100 pairs in positive.jsonl")
    text = format_reports(list(reports.values()))
    assert "== alignment/helpfulness_expressed (not loaded): FAIL" in text
    assert text.splitlines()[-1].startswith("audited 13 trait(s)")


def test_bundled_traits_pass_the_audit_as_the_datasets_readme_says() -> None:
    """Every trait in datasets/traits passes with no error and no warning, with the counts in datasets/README.md."""
    from traitvec.traits import list_traits

    root = Path(__file__).resolve().parents[1] / "datasets"
    names = list_traits(root / "traits")
    assert len(names) >= 6
    table = {}
    for line in (root / "README.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| `") and len(cells) == 7:
            table[cells[0].strip("`")] = (int(cells[3]), int(cells[4]), cells[5])
    assert sorted(table) == sorted(names)
    for report in audit_traits(names, root / "traits"):
        problems = [f"{f.check}: {f.message}" for f in report.findings if f.severity != "ok"]
        assert not problems, (report.trait, problems)
        trait = load_trait(report.trait, root / "traits")
        assert report.n_pairs == trait.n_pairs >= 150
        assert 15 <= len(trait.questions) <= 20 and trait.eval_prompt
        assert table[report.trait] == (trait.n_pairs, len(trait.questions), "pass: 0 errors, 0 warnings")


# --------------------------------------------------------------------------------------------
# command line


def test_cli_exit_status_clean_is_0(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_trait(root, "states/clean", CLEAN_PAIRS)
    assert main(["audit", "--traits-root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "== states/clean (34 pairs): PASS: 0 error(s), 0 warning(s)" in out
    assert "audited 1 trait(s): 0 with errors, 0 with warnings only, 1 clean" in out


def test_cli_exit_status_errors_is_1(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_trait(root, "states/clean", CLEAN_PAIRS)
    make_trait(root, "states/but_and", [(f"{p}, but", f"{n}, and") for p, n in CLEAN_PAIRS])
    assert main(["audit", "--traits-root", str(root), "states/clean", "states/but_and"]) == 1
    out = capsys.readouterr().out
    block = out.split("== states/but_and")[1]
    assert block.index("ERROR    lexical_leak") < block.index("ok       structure")  # errors first
    assert "positive.txt:1:" in block


def test_cli_exit_status_unknown_trait_is_2(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_trait(root, "states/clean", CLEAN_PAIRS)
    assert main(["audit", "--traits-root", str(root), "states/nope"]) == 2
    assert "no trait 'states/nope'" in capsys.readouterr().err
    assert main(["audit", "--traits-root", str(root), "../escape"]) == 2
    assert main(["audit", "--traits-root", str(root / "missing")]) == 2


def test_cli_broken_folder_does_not_hide_the_others(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_trait(root, "states/clean", CLEAN_PAIRS)
    broken = make_trait(root, "states/broken", CLEAN_PAIRS)
    (broken / "negative.txt").write_text("only one line\n", encoding="utf-8")
    assert main(["audit", "--traits-root", str(root)]) == 1
    out = capsys.readouterr().out
    assert "== states/broken (not loaded): FAIL" in out
    assert "== states/clean (34 pairs): PASS" in out


def test_cli_json_report(root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_trait(root, "states/clean", CLEAN_PAIRS)
    make_trait(
        root, "states/length", [(p, f"{n} {_TIMES[i % 8]} {_PLACES[i % 5]}") for i, (p, n) in enumerate(CLEAN_PAIRS)]
    )
    out_path = tmp_path / "reports" / "audit.json"
    assert main(["audit", "--traits-root", str(root), "--json", str(out_path)]) == 1
    data = json.loads(out_path.read_text(encoding="utf-8"))
    assert data["format"] == "traitvec-audit/1"
    assert data["summary"]["traits"] == 2 and data["summary"]["with_errors"] == 1
    assert data["config"]["leak_share"] == 0.8
    by_name = {t["trait"]: t for t in data["traits"]}
    assert by_name["states/clean"]["status"] == "ok"
    length = next(f for f in by_name["states/length"]["findings"] if f["check"] == "length_confound")
    assert length["severity"] == "error"
    assert length["examples"][0]["file"] in ("positive.txt", "negative.txt")
    assert isinstance(length["examples"][0]["line"], int)
    assert [f["check"] for f in by_name["states/clean"]["findings"]] == list(CHECKS)
    assert not list(out_path.parent.glob(".audit.json.*"))  # atomic write left no temp file
    assert f"JSON report written to {out_path}" in capsys.readouterr().out


def test_reports_to_dict_is_json_serialisable(root: Path) -> None:
    report = audit_trait(make_trait(root, "states/topic", _topic_pairs()))
    text = json.dumps(reports_to_dict([report]), allow_nan=False)
    assert '"cross_distribution"' in text
