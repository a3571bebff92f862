"""The prompts callers hear: catalogue, remaining-time sentence, built audio.

    from prompts import Prompt, sound, remaining_time
    await channel.stream_file(sound(Prompt.ENTER_PIN))        # "ivr/enter-pin"
    for name in remaining_time(750, "de"):                    # "Sie haben noch zwölf
        await channel.stream_file(name)                       #  Minuten und dreißig …"

Sound names are relative to Asterisk's per-language directory: install (or
point ``astsoundsdir`` at) ``SOUNDS_DIR``, whose layout is
``<lang>/ivr/<name>.wav``, and set ``CHANNEL(language)``.

Modules: ``_catalogue`` (manifest.toml, Prompt, texts), ``_numbers`` (number
pieces), ``_remaining`` (the sentence), ``_audio`` (8 kHz conversion),
``build`` (espeak-ng renderer, ``python -m prompts.build``), ``importer``
(custom recordings). Only ``build`` and ``importer`` load pydub, and only
when called.
"""

from ._catalogue import LANGUAGES, SOUNDS_DIR, Prompt, all_sounds, sound, text_of
from ._errors import (
    PromptBuildError,
    PromptCatalogueError,
    PromptError,
    PromptImportError,
    PromptToolMissing,
)
from ._remaining import MAX_SECONDS, remaining_time, remaining_time_text
from ._warning import WARNING_LENGTHS, warning_length, warning_sound
from .importer import custom_sound, import_recording

__all__ = [
    "LANGUAGES",
    "MAX_SECONDS",
    "SOUNDS_DIR",
    "WARNING_LENGTHS",
    "Prompt",
    "PromptBuildError",
    "PromptCatalogueError",
    "PromptError",
    "PromptImportError",
    "PromptToolMissing",
    "all_sounds",
    "custom_sound",
    "import_recording",
    "remaining_time",
    "remaining_time_text",
    "sound",
    "text_of",
    "warning_length",
    "warning_sound",
]
