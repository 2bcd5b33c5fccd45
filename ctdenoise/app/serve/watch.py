"""What `serve` watches for: CT series whose attributes match every rule (`--match
ATTRIBUTE=REGEX`, by default a low-dose SeriesDescription as `pull` reads it), from a study
date on (`--since`), and the poll that journals them with their instance counts.

Rules are matched here, on what the QIDO-RS answer carries, rather than by the server, whose
matching of patterns varies. A series the journal knows as its own derived output is never
journalled; any other derived series that matches is found out by the worker, from its
first instance, and skipped.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Sequence
from dataclasses import dataclass

from ctdenoise.app.pull import DOSE_ATTRIBUTE, LDCT_PATTERN
from ctdenoise.app.serve.journal import Journal
from ctdenoise.dicomweb_io.client import Pacs, SeriesEntry

DEFAULT_RULE = f"{DOSE_ATTRIBUTE}={LDCT_PATTERN}"
_COUNT = "NumberOfSeriesRelatedInstances"
_CT = "CT"


class RuleError(ValueError):
    """A rule or date that cannot be used; the message is one line."""


@dataclass(frozen=True)
class Rules:
    """Which series `serve` denoises: every (attribute, pattern) matches, and the study is
    dated on or after `since` (YYYYMMDD; "" for any date)."""

    matches: tuple[tuple[str, re.Pattern], ...]
    since: str = ""

    @property
    def fields(self) -> list[str]:
        """The attributes a QIDO-RS search must return for the rules to be applied."""
        return sorted({"Modality", "StudyDate", _COUNT, *(attribute for attribute, _ in self.matches)})

    def accepts(self, entry: SeriesEntry) -> bool:
        values = entry.attributes
        if values.get("Modality") != _CT:
            return False
        if self.since and str(values.get("StudyDate", "") or "") < self.since:
            return False
        return all(pattern.search(str(values.get(attribute, "") or "")) for attribute, pattern in self.matches)


def parse_rules(texts: Sequence[str], since: str = "") -> Rules:
    """`ATTRIBUTE=REGEX` texts (none: DEFAULT_RULE) and a YYYY-MM-DD date as Rules."""
    from pydicom.datadict import tag_for_keyword

    matches = []
    for text in texts or [DEFAULT_RULE]:
        attribute, equals, pattern = text.partition("=")
        if not equals or tag_for_keyword(attribute) is None:
            raise RuleError(
                f"--match {text}: give ATTRIBUTE=REGEX with a DICOM keyword, e.g. SeriesDescription=(?i)low"
            )
        try:
            matches.append((attribute, re.compile(pattern)))
        except re.error as exc:
            raise RuleError(f"--match {text}: not a regular expression ({exc})") from None
    return Rules(tuple(matches), _study_date(since))


def _study_date(since: str) -> str:
    if not since:
        return ""
    try:
        return datetime.date.fromisoformat(since).strftime("%Y%m%d")
    except ValueError:
        raise RuleError(f"--since {since}: give a date as YYYY-MM-DD") from None


def poll(pacs: Pacs, rules: Rules, journal: Journal) -> int:
    """Journal every matching CT series on the PACS with its instance count; how many matched.
    The server lists only studies from `rules.since` on, and the rules check that date again."""
    matched = 0
    for entry in pacs.series(rules.fields, modality=_CT, study_date=f"{rules.since}-" if rules.since else ""):
        if not rules.accepts(entry) or journal.is_derived(entry.series):
            continue
        matched += 1
        if journal.is_final(entry.series):
            continue
        count = entry.attributes.get(_COUNT)
        instances = int(count) if count not in (None, "") else len(pacs.instances(entry.study, entry.series))
        journal.observe(entry.study, entry.series, instances)
    return matched
