"""The official METS and PREMIS schemas (tests/standards/), loaded offline: mets.xsd's import of the XLink schema by
its Library of Congress URL is answered with the local copy, and any other URL fails the test instead of being
fetched."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from lxml import etree

STANDARDS = Path(__file__).resolve().parent / "standards"
METS_NS = "http://www.loc.gov/METS/"
PREMIS_NS = "http://www.loc.gov/premis/v3"
LOCAL_COPIES = {"http://www.loc.gov/standards/xlink/xlink.xsd": STANDARDS / "xlink.xsd"}


class LocalCopies(etree.Resolver):
    def resolve(self, url, pubid, context):
        if url in LOCAL_COPIES:
            return self.resolve_filename(str(LOCAL_COPIES[url]), context)
        if "://" in url and not url.startswith("file:"):
            raise AssertionError(f"a schema asked for {url}, which has no local copy in {STANDARDS}")
        return None


def _parse(source: str | Path, *, text: bool = False) -> etree._ElementTree:
    parser = etree.XMLParser(no_network=True)
    parser.resolvers.add(LocalCopies())
    if text:
        return etree.ElementTree(etree.fromstring(source, parser, base_url=f"{STANDARDS}/"))
    return etree.parse(str(source), parser)


@lru_cache(maxsize=None)
def premis_schema() -> etree.XMLSchema:
    return etree.XMLSchema(_parse(STANDARDS / "premis-v3-0.xsd"))


@lru_cache(maxsize=None)
def mets_schema() -> etree.XMLSchema:
    """METS with PREMIS beside it: the PREMIS in a METS mdWrap's xmlData (processContents lax) is validated too."""
    wrapper = f"""<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:archive:test:schemas">
      <xs:import namespace="{METS_NS}" schemaLocation="mets.xsd"/>
      <xs:import namespace="{PREMIS_NS}" schemaLocation="premis-v3-0.xsd"/>
    </xs:schema>"""
    return etree.XMLSchema(_parse(wrapper, text=True))


def problems(schema: etree.XMLSchema, document: etree._Element | etree._ElementTree) -> list[str]:
    """The schema's complaints about the document, one line each (none: it is valid)."""
    if schema.validate(document):
        return []
    return [f"line {e.line}: {e.message}" for e in schema.error_log]
