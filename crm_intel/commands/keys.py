"""``crm-intel keys new``: a new API key, shown once, and its entry in a key file."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Annotated

import typer

from crm_intel.commands.common import console, fail

app = typer.Typer(help="API keys for the scoring service.", no_args_is_help=True)


@app.command("new")
def new(
    key_id: Annotated[
        str, typer.Option("--id", help="The key's id: logged with every request it makes.")
    ],
    scopes: Annotated[
        str,
        typer.Option(
            help="What it may do, '|' or ',' separated: score, attribution, models:read, "
            "models:write, metrics."
        ),
    ],
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            help="Add the entry to this key file (CRM_INTEL_API_KEYS_FILE); created if missing.",
        ),
    ] = None,
) -> None:
    """Make a new key. It is printed once, here: only its SHA-256 digest is kept."""
    import yaml

    from crm.io import atomic_file
    from serving.auth import KeyConfigError, digest, parse_scopes, read_key_file

    names = [s.strip() for s in scopes.replace(",", "|").split("|") if s.strip()]
    key = secrets.token_urlsafe(32)
    entry = {"id": key_id, "sha256": digest(key).hex(), "scopes": names}
    try:
        existing = read_key_file(file) if file is not None and file.exists() else []
        if any(k.key_id == key_id for k in existing):
            raise KeyConfigError(f"{file} already has a key with id {key_id!r}")
        parse_scopes(names, f"key {key_id!r}")
        if file is not None:
            text = file.read_text(encoding="utf-8") if file.exists() else "keys:\n"
            block = yaml.safe_dump([entry], default_flow_style=False, sort_keys=False)
            block = "".join(f"  {line}\n" for line in block.splitlines())
            with atomic_file(file) as tmp:  # replaced only once the new file loads
                Path(tmp).write_text(text.rstrip("\n") + "\n" + block, encoding="utf-8")
                read_key_file(Path(tmp))
    except KeyConfigError as err:
        raise fail(str(err)) from None
    console.print(f"key {key_id!r} ({', '.join(names)}); shown once, keep it now:")
    typer.echo(key)
    if file is None:
        console.print("its entry for a key file (CRM_INTEL_API_KEYS_FILE):")
        typer.echo(yaml.safe_dump({"keys": [entry]}, sort_keys=False).rstrip())
    else:
        console.print(f"added to {file}; the service reads it when it starts")
