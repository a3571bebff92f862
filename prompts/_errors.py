"""Errors of the prompts package.

    PromptError                 base: anything this package raises on purpose
    ├── PromptCatalogueError    manifest.toml is malformed or disagrees with Prompt
    ├── PromptToolMissing       a build tool (espeak-ng) is not installed
    ├── PromptBuildError        a build tool ran but failed
    └── PromptImportError       a custom recording cannot be imported
                                (unreadable, unknown format, bad name, ffmpeg missing)

Bad arguments from code (a negative number of seconds, a language the
catalogue does not have) raise ``ValueError`` instead: they are the caller's
mistake, not a property of the files involved.
"""

from __future__ import annotations

__all__ = [
    "PromptBuildError",
    "PromptCatalogueError",
    "PromptError",
    "PromptImportError",
    "PromptToolMissing",
]


class PromptError(Exception):
    """Base of every error this package raises on purpose."""


class PromptCatalogueError(PromptError):
    """manifest.toml is malformed or does not match the Prompt enum."""


class PromptToolMissing(PromptError):
    """An external tool the builder needs is not installed."""


class PromptBuildError(PromptError):
    """An external tool ran but did not produce usable audio."""


class PromptImportError(PromptError):
    """A custom recording could not be imported; the message says why."""
