"""Which locale of a template a recipient gets."""

from __future__ import annotations

import pytest

from activities.templates import pick_locale

pytestmark = pytest.mark.fast


@pytest.mark.parametrize(
    ("available", "wanted", "chosen"),
    [
        pytest.param(["en", "de", "de-AT"], "de-AT", "de-AT", id="exact"),
        pytest.param(["en", "DE-at"], "de-AT", "DE-at", id="exact-any-case"),
        pytest.param(["en", "pt"], "pt_BR", "pt", id="language-of-underscore-tag"),
        pytest.param(["en", "de"], "de-CH", "de", id="language-of-region"),
        pytest.param(["fr", "en"], "ja", "en", id="english-when-absent"),
        pytest.param(["fr", "en"], None, "en", id="english-when-unknown"),
        pytest.param(["fr", "de"], "ja", "de", id="first-by-name-without-english"),
        pytest.param(["en-GB", "en"], "en-US", "en", id="language-before-sibling-region"),
        pytest.param([], "en", None, id="no-version-at-all"),
    ],
)
def test_exact_then_language_then_english_then_any(
    available: list[str], wanted: str | None, chosen: str | None
) -> None:
    assert pick_locale(available, wanted) == chosen
