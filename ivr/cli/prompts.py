"""``ivr prompts build | import | list``: the audio the calls play."""

from __future__ import annotations

import sys
from pathlib import Path

import click

import prompts as catalogue
from rating.errors import NotFound

from ..settings import Settings
from ._app import CliError, _open, _settings, emit, json_option, main, run, yes_option


def _sounds_dir(ctx: click.Context, given: str | None) -> Path:
    return Path(given or _settings(ctx).sounds_dir or catalogue.SOUNDS_DIR)


@main.group("prompts")
def prompts_group() -> None:
    """Prompts in German and English, and a project's own recordings."""


@prompts_group.command("build")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Sounds directory (default: packaged).")
@click.option("--language", "languages", multiple=True, type=click.Choice(list(catalogue.LANGUAGES)),
              help="Only this language (repeatable; default: all).")
@json_option
@click.pass_context
def prompts_build(ctx: click.Context, out_dir: str | None, languages: tuple[str, ...], as_json: bool) -> None:
    """Render every prompt with espeak-ng into 8 kHz mono 16-bit WAV (reproducible)."""
    from prompts.build import build

    target = _sounds_dir(ctx, out_dir)
    with click.progressbar(length=1, label="building prompts", file=sys.stderr) as bar:
        def progress(done: int, total: int, name: str) -> None:
            bar.length = total
            bar.update(done - bar.pos)

        try:
            written = build(out_dir=target, languages=languages or catalogue.LANGUAGES, progress=progress)
        except catalogue.PromptError as exc:
            raise CliError(str(exc)) from None
    emit(as_json, {"sounds_dir": str(target), "files": len(written)},
         [f"{len(written)} prompt files in {target}"])


async def _check_project(settings: Settings, name: str) -> None:
    """A recording for a project that does not exist would never play. Raises NotFound."""
    store = await _open(settings)
    try:
        if await store.project_by_name(name) is None:
            raise NotFound(f"no project {name!r}")
    finally:
        await store.close()


@prompts_group.command("import")
@click.argument("source", type=click.Path(exists=True, dir_okay=False))
@click.option("--project", required=True, help="Project whose calls play the recording.")
@click.option("--prompt", "prompt_id", required=True, type=click.Choice([p.value for p in catalogue.Prompt]),
              help="Which prompt it replaces, e.g. welcome.")
@click.option("--language", type=click.Choice(list(catalogue.LANGUAGES)), default="de", show_default=True,
              help="Which language's prompt it replaces.")
@click.option("--sounds-dir", type=click.Path(file_okay=False), help="Sounds directory Asterisk plays from"
              " (default: the engine's).")
@yes_option
@json_option
@click.pass_context
def prompts_import(ctx: click.Context, source: str, project: str, prompt_id: str, language: str,
                   sounds_dir: str | None, yes: bool, as_json: bool) -> None:
    """Import an mp3/wav/ogg recording (e.g. the project's spoken greeting)."""
    run(_check_project(_settings(ctx), project))
    try:
        name = catalogue.import_recording(Path(source), project, prompt_id, language,
                                          sounds_dir=_sounds_dir(ctx, sounds_dir), replace=yes)
    except catalogue.PromptError as exc:
        raise CliError(str(exc)) from None
    emit(as_json, {"project": project, "prompt": prompt_id, "language": language, "sound": name},
         [f"{project}: calls in {language} now play {name} for {prompt_id}"])


@prompts_group.command("list")
@click.option("--language", type=click.Choice(list(catalogue.LANGUAGES)), default="de", show_default=True,
              help="Show the texts in this language.")
@json_option
def prompts_list(language: str, as_json: bool) -> None:
    """Every prompt a call can play, with its text."""
    rows = [{"prompt": p.value, "sound": catalogue.sound(p), "text": catalogue.text_of(catalogue.sound(p), language)}
            for p in catalogue.Prompt]
    emit(as_json, rows, [f"{r['prompt']:<20} {r['text']}" for r in rows])
