"""The audit's cross-distribution check: can a bag-of-words classifier find the label without the trait?

Phase 6 of the dataset guide asks whether anything other than the trait (topic, setting, voice)
predicts the label. We train a logistic regression on binary bag-of-words features from which the
trait's own words have been removed, cross-validated with :class:`~sklearn.model_selection.GroupKFold`
so the two sides of a pair are never split across folds, and score it by *paired accuracy*: the
share of held-out pairs whose positive line gets the higher positive probability (ties count half).

Trait words are the words in the symmetric difference of a pair's two word sets, taken

- from every *scenario-matched* pair: one whose two sides share at least ``scenario_jaccard`` (0.2)
  of their content words (Jaccard over non-stopwords, leaving out template words found in more
  than ``vocab_share``, 10%, of all lines, so a shared frame such as "felt ... about" does not make
  two different scenarios look alike). Such a pair keeps its scenario fixed (the
  dentist, the cavity, the molars), so whatever differs inside it is the trait, however varied the
  vocabulary that expresses it (a formal/casual pair differs in almost every word); and
- from any pair when the word differs inside at least ``trait_word_pairs`` (3) pairs: the trait's
  recurring vocabulary, even where the two sides share no scenario.

What remains are words that differ inside only one or two pairs whose sides are about different
things. Only a word seen in two or more pairs can carry a label signal to a held-out pair, and a
topic confound (positives about offices and deadlines, negatives about kitchens and children,
spread over many different words) is exactly a mass of such words. In a dataset whose pairs all
share their scenario every differing word is removed and the classifier is at chance, which is
right: a scenario shared inside each pair cannot predict the label. The price: a confound that
changes *inside* scenario-matched pairs (a harmful request refused vs a harmless one answered)
looks like the trait to this check; the lexical checks and a human reading the pairs must catch it.
"""

from __future__ import annotations

from collections import Counter
from types import MappingProxyType

import numpy as np
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold

from ._common import binom_tail, skipped
from .config import AuditConfig
from .findings import Example, Finding, Severity
from .registry import pair_check
from .text import PairText, content_words, words

__all__ = ["trait_words", "scenario_overlap", "check_cross_distribution"]


def trait_words(data: PairText, cfg: AuditConfig) -> Counter[str]:
    """The words treated as the trait's own, each with the number of pairs it differs inside.

    Example:
        >>> removed = trait_words(PairText.from_trait(trait), AuditConfig())
        >>> removed.most_common(2)
        [('but', 30), ('would', 25)]
    """
    lines = (*data.pos, *data.neg)
    frequency = Counter(w for text in lines for w in content_words(text))
    template = frozenset(w for w, c in frequency.items() if c > cfg.vocab_share * len(lines))
    differs: Counter[str] = Counter()
    matched: set[str] = set()
    for pos, neg in zip(data.pos, data.neg, strict=True):
        diff = set(words(pos)) ^ set(words(neg))
        differs.update(diff)
        if scenario_overlap(pos, neg, ignore=template) >= cfg.scenario_jaccard:
            matched |= diff
    return Counter({w: c for w, c in differs.items() if c >= cfg.trait_word_pairs or w in matched})


def scenario_overlap(pos: str, neg: str, ignore: frozenset[str] = frozenset()) -> float:
    """Jaccard overlap of the content words (non-stopwords) of a pair's two sides; 0 when both have none.

    Args:
        pos: the positive prefill.
        neg: its negative partner.
        ignore: words not counted, such as template words used all over the dataset.

    Example:
        >>> scenario_overlap("The dentist set down her instruments", "The dentist put her tools down")
        0.2
    """
    a, b = content_words(pos) - ignore, content_words(neg) - ignore
    return len(a & b) / len(a | b) if a | b else 0.0


@pair_check("cross_distribution")
def check_cross_distribution(data: PairText, cfg: AuditConfig) -> Finding:
    """Paired accuracy of a pair-grouped, cross-validated classifier with the trait words removed."""
    name = "cross_distribution"
    threshold = (
        f"paired accuracy >= {cfg.xdist_error:.2f} (error) or >= {cfg.xdist_warning:.2f} (warning), each with "
        f"binomial p < {cfg.xdist_p}; {cfg.xdist_folds}-fold GroupKFold by pair, trait words removed"
    )
    if data.n < max(cfg.min_pairs, 2):
        return skipped(name, data, cfg)
    removed = trait_words(data, cfg)
    docs = [[w for w in words(t) if w not in removed] for t in (*data.pos, *data.neg)]
    y = np.array([1] * data.n + [0] * data.n)
    groups = np.array(list(range(data.n)) * 2)
    shown = ", ".join(f"{w}({c})" for w, c in removed.most_common(8))
    base_details = {"trait_words_removed": len(removed), "trait_words_top": dict(removed.most_common(20))}
    fix = (
        "Something other than the trait predicts the label: read the listed words. If they are scenario or "
        "topic words, match the scenario inside each pair (vary topics across pairs, control within) or put "
        "the topic on both sides; if they express the trait itself, the pairs diverge early and the check "
        "cannot tell the two apart (guide, Phase 6)."
    )
    vectorizer = CountVectorizer(analyzer=lambda doc: doc, binary=True)
    try:
        x = vectorizer.fit_transform(docs)
    except ValueError:  # nothing left after removing the trait words
        return Finding(
            name,
            "ok",
            f"no words left after removing {len(removed)} trait words; pairs differ only in the trait",
            threshold,
            0.5,
            fix=fix,
            details=MappingProxyType(base_details),
        )
    prob = np.full(2 * data.n, 0.5)
    for train, test in GroupKFold(n_splits=min(cfg.xdist_folds, data.n)).split(x, y, groups):
        model = LogisticRegression(C=1.0, max_iter=2000).fit(x[train], y[train])
        prob[test] = model.predict_proba(x[test])[:, 1]
    pos_p, neg_p = prob[: data.n], prob[data.n :]
    close = np.isclose(pos_p, neg_p, rtol=0.0, atol=1e-9)
    correct = int(((pos_p > neg_p) & ~close).sum())
    ties = int(close.sum())
    accuracy = (correct + 0.5 * ties) / data.n
    p_value = binom_tail(correct, data.n - ties)

    model = LogisticRegression(C=1.0, max_iter=2000).fit(x, y)
    vocab = vectorizer.get_feature_names_out()
    order = np.argsort(model.coef_[0])
    top_pos = [str(vocab[i]) for i in order[::-1][:6] if model.coef_[0][i] > 0]
    top_neg = [str(vocab[i]) for i in order[:6] if model.coef_[0][i] < 0]
    details = base_details | {
        "paired_accuracy": accuracy,
        "binomial_p": p_value,
        "ties": ties,
        "top_positive_words": top_pos,
        "top_negative_words": top_neg,
    }
    message = f"paired accuracy {accuracy:.2f} (p={p_value:.2g}) with {len(removed)} trait words removed" + (
        f" [{shown}{', ...' if len(removed) > 8 else ''}]" if removed else ""
    )
    if accuracy >= cfg.xdist_warning and p_value < cfg.xdist_p:
        severity: Severity = "error" if accuracy >= cfg.xdist_error else "warning"
        message += (
            f"; the label is predictable without the trait words. Most predictive: positive "
            f"{', '.join(top_pos) or '-'}; negative {', '.join(top_neg) or '-'}"
        )
        examples = _word_examples(data, top_pos[:2], 1) + _word_examples(data, top_neg[:2], 0)
        return Finding(name, severity, message, threshold, accuracy, examples, fix, MappingProxyType(details))
    return Finding(name, "ok", message, threshold, accuracy, fix=fix, details=MappingProxyType(details))


def _word_examples(data: PairText, wanted: list[str], side: int) -> tuple[Example, ...]:
    texts = data.pos if side else data.neg
    out = []
    for word in wanted:
        for i, text in enumerate(texts):
            if word in words(text):
                out.append(data.example(side, i))
                break
    return tuple(out)
