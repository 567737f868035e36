"""JUnit XML for ``nb2prod ci``: one testsuite; testcases for the check, each stage and each gate."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Case:
    """One testcase: ``outcome`` is passed, failed or skipped; ``message`` says why."""

    classname: str
    name: str
    outcome: str = "passed"
    message: str = ""
    detail: str = ""
    time_s: float = 0.0


def write(path: str | Path, suite: str, cases: list[Case]) -> None:
    """Write ``cases`` as a JUnit XML file with one ``<testsuite>``."""
    failures = sum(c.outcome == "failed" for c in cases)
    skipped = sum(c.outcome == "skipped" for c in cases)
    root = ET.Element("testsuites", tests=str(len(cases)), failures=str(failures), skipped=str(skipped))
    node = ET.SubElement(root, "testsuite", name=suite, tests=str(len(cases)), failures=str(failures), errors="0",
                         skipped=str(skipped), time=f"{sum(c.time_s for c in cases):.3f}")
    for case in cases:
        element = ET.SubElement(node, "testcase", classname=case.classname, name=case.name, time=f"{case.time_s:.3f}")
        if case.outcome == "failed":
            failure = ET.SubElement(element, "failure", message=case.message)
            failure.text = case.detail or case.message
        elif case.outcome == "skipped":
            ET.SubElement(element, "skipped", message=case.message)
    ET.indent(root)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
