"""The saved model's format: a JSON manifest and named numeric arrays, signed with HMAC-SHA256.

A saved model is one blob (the `model` column of `segment_models`):

    MAGIC (b"segflow-model/1\\n") | 32-byte HMAC-SHA256 of MAGIC + archive | archive

The archive is a zip (an .npz that also holds `manifest.json`): `manifest.json` is UTF-8 JSON
text, and each array is `<name>.npy`. The manifest lists every array's name, dtype and shape
under "arrays"; loading verifies the HMAC before anything is parsed, then refuses any member the
manifest does not list, any dtype that is not a plain number or boolean, and any array whose
header disagrees with the manifest. Arrays are read with `numpy.load(..., allow_pickle=False)`:
nothing in a model is unpickled or run.

The key never sits beside the tables: the Prefect Secret block named by `publish.model_key_secret`,
else the environment variable SEGFLOW_MODEL_KEY, else a key generated once into
~/.segflow/model.key (mode 0600). Keys are text of at least 32 characters.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
import secrets
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segflow.errors import ConfigError

MAGIC = b"segflow-model/1\n"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
TAG_BYTES = hashlib.sha256().digest_size
# bool, signed and unsigned integers, floats: never objects, strings, structured or void dtypes
NUMERIC_KINDS = frozenset("biuf")
KEY_VARIABLE = "SEGFLOW_MODEL_KEY"
MIN_KEY_CHARACTERS = 32


class UnreadableModel(ValueError):
    """A blob that is not a model this key signed in this format; nothing of it was used."""


def pack(manifest: dict[str, Any], arrays: dict[str, np.ndarray], key: bytes) -> bytes:
    """The signed blob of a manifest (plain JSON values) and its arrays."""
    listed = {}
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:  # stored, as numpy.savez writes: floats barely compress
        for name, array in arrays.items():
            array = np.ascontiguousarray(array)
            if array.dtype.kind not in NUMERIC_KINDS:
                raise TypeError(f"array {name!r} has dtype {array.dtype}; a saved model holds numbers only")
            listed[name] = {"dtype": array.dtype.str, "shape": list(array.shape)}
            with zipped.open(f"{name}.npy", "w") as member:
                np.lib.format.write_array(member, array, allow_pickle=False)
        text = json.dumps({**manifest, "format_version": FORMAT_VERSION, "arrays": listed}, allow_nan=False)
        zipped.writestr(MANIFEST, text.encode())
    payload = archive.getvalue()
    return MAGIC + hmac.digest(key, MAGIC + payload, "sha256") + payload


def unpack(blob: bytes, key: bytes) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The manifest and arrays of a signed blob, or UnreadableModel saying why it is refused."""
    if not blob.startswith(MAGIC):
        if blob[:1] == b"\x80":  # a pickle's PROTO opcode: what segflow saved before this format
            raise UnreadableModel(
                "it was saved by an earlier segflow as a pickle, which segflow no longer loads "
                "(loading a pickle can run any code)"
            )
        raise UnreadableModel(f"it is not a segflow model (it does not start with {MAGIC!r})")
    tag, payload = blob[len(MAGIC) : len(MAGIC) + TAG_BYTES], blob[len(MAGIC) + TAG_BYTES :]
    if not hmac.compare_digest(tag, hmac.digest(key, MAGIC + payload, "sha256")):
        raise UnreadableModel(
            "its signature (HMAC-SHA256) does not verify with this machine's model key: it was written "
            "with another key, or changed after it was written"
        )
    try:
        with zipfile.ZipFile(io.BytesIO(payload)) as zipped:
            manifest = json.loads(zipped.read(MANIFEST))
            if manifest["format_version"] != FORMAT_VERSION:
                raise UnreadableModel(
                    f"it has format version {manifest['format_version']!r}; "
                    f"this segflow reads version {FORMAT_VERSION}"
                )
            listed = manifest["arrays"]
            checked_listing(listed, set(zipped.namelist()) - {MANIFEST})
        with np.load(io.BytesIO(payload), allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in listed}
    except UnreadableModel:
        raise
    except (zipfile.BadZipFile, json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise UnreadableModel(f"its contents cannot be read ({type(error).__name__}: {error})") from error
    for name, array in arrays.items():
        spec = listed[name]
        if array.dtype.str != spec["dtype"] or list(array.shape) != spec["shape"]:
            raise UnreadableModel(
                f"array {name!r} is {array.dtype.str} {list(array.shape)}, "
                f"the manifest says {spec['dtype']} {spec['shape']}"
            )
    return manifest, arrays


def with_prefix(prefix: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Arrays named `prefix` + name, to keep the parts of a model apart in one archive."""
    return {f"{prefix}{name}": array for name, array in arrays.items()}


def without_prefix(prefix: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The arrays named `prefix` + name, under their own names."""
    return {name.removeprefix(prefix): array for name, array in arrays.items() if name.startswith(prefix)}


def checked_listing(listed: dict[str, dict], members: set[str]) -> None:
    """Refuse members the manifest does not list (and the reverse), and any dtype that is not numeric."""
    expected = {f"{name}.npy" for name in listed}
    if members != expected:
        raise UnreadableModel(
            f"its arrays {sorted(members)} differ from those its manifest lists {sorted(expected)}"
        )
    for name, spec in listed.items():
        if np.dtype(spec["dtype"]).kind not in NUMERIC_KINDS:
            raise UnreadableModel(f"array {name!r} has dtype {spec['dtype']}; a model holds numbers only")


@dataclass(frozen=True)
class ModelKey:
    """The key that signs and verifies saved models, and where it came from (never the key itself)."""

    key: bytes
    source: str
    created: bool = False


def model_key(secret_block: str | None) -> ModelKey:
    """The model key: a Prefect Secret block if config names one, else $SEGFLOW_MODEL_KEY, else the
    user's key file, generated on first use."""
    if secret_block is not None:
        from prefect.blocks.system import Secret

        try:
            text = Secret.load(secret_block).get()
        except ValueError as error:
            raise ConfigError(
                f"publish.model_key_secret: cannot load the Prefect Secret block {secret_block!r} ({error})"
            ) from error
        return ModelKey(
            checked_key(str(text), f"Prefect Secret block {secret_block!r}"), f"Secret {secret_block}"
        )
    if os.environ.get(KEY_VARIABLE):
        return ModelKey(checked_key(os.environ[KEY_VARIABLE], f"${KEY_VARIABLE}"), f"${KEY_VARIABLE}")
    return key_file_key(Path.home() / ".segflow" / "model.key")


def checked_key(text: str, source: str) -> bytes:
    key = text.strip()
    if len(key) < MIN_KEY_CHARACTERS:
        raise ConfigError(
            f"the model key from {source} has {len(key)} characters; use at least {MIN_KEY_CHARACTERS} "
            "(e.g. `openssl rand -hex 32`)"
        )
    return key.encode()


def key_file_key(path: Path) -> ModelKey:
    """The key in a file only its owner may read; created (0600, in a 0700 folder) if absent."""
    created = False
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        draft = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_hex(32) + "\n")
        try:
            os.link(draft, path)  # never replaces a key another run wrote in the meantime
            created = True
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise ConfigError(
            f"the model key file {path} can be read or written by other users (mode {mode:o}): "
            f"`chmod 600 {path}`, or set {KEY_VARIABLE} or publish.model_key_secret"
        )
    return ModelKey(checked_key(path.read_text(), str(path)), str(path), created)
