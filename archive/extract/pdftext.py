"""The text layer of a PDF page by pypdf, on the file's meter: stopped when its time or output budget is spent.

pypdf cannot be interrupted from outside, and one page can cost minutes: a 2 KB file can invoke one compressed
form XObject hundreds of times, each drawing a hundred thousand characters. So the page's operators pass by a
visitor that consults the meter at every form XObject invoked (each one parses its content stream anew) and
every 64 operators, and counts the characters pypdf reports as it goes. pypdf catches every Exception a form
raises, so the visitor's error leaves it as a BaseException and becomes an ExtractionError again here.

Some producers draw a run of glyphs twice or more at (almost) the same place: fake bold, a shadow, a text layer laid
over itself. pypdf would give the words as often as they are drawn; here a run that shows the same string with the
same operator within OVERDRAWN points (a fifth of its font size, if less) of one shown just before on the page is
emptied before pypdf reads it (within one content stream: a form XObject invoked again is read again), as
poppler's pdftotext drops such overlapping duplicates, and counted.

pypdf also stops reading form XObjects after 5,000 on a page, dropping the rest of its text with only a log
line: that limit is lifted while the meter bounds the work instead, and a page over whatever limit holds is
quarantined too-costly, never cut short.
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from . import ExtractionError
from .budget import TOO_COSTLY, Meter

CHECK_EVERY = 64  # operators between two looks at the clock (a form XObject is always looked at)
# pypdf parses the content stream of a page only when it shows text (its Tj, TJ, ', " or Do operators);
# a visitor would make it parse the rest too, so such pages are skipped here as pypdf would.
_TEXT_OPERATOR = re.compile(rb"T[jJ]|Do|['\"]")
_FORM_LIMIT = "xform_maximum_invocations_per_extraction"
UNLIMITED = 1 << 62
OVERDRAWN = 1.5  # points either way (a fifth of the font size at most) within which a run drawn again is the same
_SHOWS = (b"Tj", b"TJ", b"'", b'"')


class _Stop(BaseException):
    """An ExtractionError on its way out through pypdf's `except Exception` around each form XObject."""

    def __init__(self, error: ExtractionError):
        super().__init__(error.detail)
        self.error = error


@contextmanager
def form_limit_lifted() -> Iterator[None]:
    """Within the block (this thread or task only), pypdf reads every form XObject a page invokes."""
    try:
        from pypdf import apply_configuration, get_configuration
    except ImportError:  # a pypdf before 7: no such setting
        yield
        return
    if not hasattr(get_configuration(), _FORM_LIMIT):
        yield
        return
    with apply_configuration(**{_FORM_LIMIT: UNLIMITED}):
        yield


def page_text(page: Any, meter: Meter, number: int, pages: int, overdrawn: list[int] | None = None) -> str:
    """The text of page number (from 1) of pages, as page.extract_text() gives it, less the runs drawn again at
    the same place (their count added to overdrawn[0])."""
    if not _shows_text(page):
        return ""
    where = f" at page {number} of {pages}"
    operators = forms = 0
    runs = _Overdrawn()

    def before(operator: bytes, operands: Any, cm: Any, tm: Any) -> None:
        nonlocal operators, forms
        operators += 1
        if operator in _SHOWS and operands and runs.again(operator, operands, cm, tm):
            if overdrawn is not None:
                overdrawn[0] += 1
        elif operator == b"Tf":
            runs.font(operands)
        elif operator == b"Do":
            runs.shown.clear()  # a form invoked again draws its text again on purpose: each is read
        if operator == b"Do":
            forms += 1
        elif operators % CHECK_EVERY:
            return
        try:
            meter.check(where)
        except ExtractionError as exc:
            raise _Stop(exc) from None

    def shown(text: str, cm: Any, tm: Any, font: Any, size: Any) -> None:
        if text:
            try:
                meter.count(len(text), where)
            except ExtractionError as exc:
                raise _Stop(exc) from None

    try:
        text = page.extract_text(visitor_operand_before=before, visitor_text=shown) or ""
    except _Stop as stop:
        raise stop.error from None
    limit = _form_limit()
    if limit is not None and forms > limit:
        raise ExtractionError(
            TOO_COSTLY,
            f"page {number} of {pages} invokes XObjects {forms:,} times; pypdf reads no more than "
            f"{limit:,} form XObjects a page, so its text would be cut short",
        )
    return text


class _Overdrawn:
    """The runs of text a page has shown, to tell one drawn again at (almost) the same place."""

    RECENT = 16  # the last runs of the same bytes looked at: a run is drawn again right after it, not pages later

    def __init__(self):
        self.font_size = 1.0
        self.shown: dict[tuple, deque] = {}

    def again(self, operator: bytes, operands: list, cm: Any, tm: Any) -> bool:
        """Whether this run was shown before within OVERDRAWN points, or a fifth of its size if less; if so its
        string operand is emptied (in the list pypdf reads next), else the run is remembered."""
        from pypdf.generic import ArrayObject, TextStringObject

        index = len(operands) - 1 if operator == b'"' else 0  # (" takes its string last)
        run = operands[index]
        content = tuple(_run_bytes(item) for item in run) if isinstance(run, ArrayObject) else _run_bytes(run)
        if not content or not any(content if isinstance(content, tuple) else [content]):
            return False
        try:
            a = float(tm[0]) * float(cm[0]) + float(tm[1]) * float(cm[2])
            b = float(tm[0]) * float(cm[1]) + float(tm[1]) * float(cm[3])
            x = float(tm[4]) * float(cm[0]) + float(tm[5]) * float(cm[2]) + float(cm[4])
            y = float(tm[4]) * float(cm[1]) + float(tm[5]) * float(cm[3]) + float(cm[5])
        except (TypeError, ValueError, IndexError):
            return False
        near = min(OVERDRAWN, 0.2 * abs(self.font_size) * math.hypot(a, b))
        recent = self.shown.setdefault((operator, content), deque(maxlen=self.RECENT))
        if any(abs(x - x0) <= near and abs(y - y0) <= near for x0, y0 in recent):
            operands[index] = ArrayObject() if isinstance(run, ArrayObject) else TextStringObject("")
            return True
        recent.append((x, y))
        return False

    def font(self, operands: list) -> None:
        try:
            self.font_size = float(operands[1])
        except (IndexError, TypeError, ValueError):
            pass


def _run_bytes(item: Any) -> bytes | float | None:
    if isinstance(item, bytes):
        return bytes(item)
    if isinstance(item, str):
        original = getattr(item, "original_bytes", None)
        return bytes(original) if original is not None else item.encode("utf-8", "surrogatepass")
    try:
        return float(item)
    except (TypeError, ValueError):
        return None


def _form_limit() -> int | None:
    try:
        from pypdf import get_configuration
    except ImportError:
        return None
    return getattr(get_configuration(), _FORM_LIMIT, None)


def _shows_text(page: Any) -> bool:
    """Whether the page's own content has an operator that shows text (as pypdf tests before it parses);
    True when it cannot be told, for pypdf to say why."""
    from pypdf.generic import ArrayObject, ContentStream, StreamObject

    try:
        contents = page.get("/Contents")
        if contents is None:
            return False
        contents = contents.get_object()
        if isinstance(contents, ArrayObject):  # joined as pypdf joins them, within its limits on arrays
            data = ContentStream(contents, page.pdf).get_data()
        elif isinstance(contents, StreamObject):
            data = contents.get_data()  # (decoded once: pypdf keeps it for its own reading)
        else:
            return True
    except Exception:  # noqa: BLE001 - damaged content: pypdf's own reading of it raises what it means
        return True
    return _TEXT_OPERATOR.search(data) is not None
