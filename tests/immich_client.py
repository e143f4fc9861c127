"""/predict requests built byte for byte the way Immich's server sends them.

Immich's server (Node) posts a `FormData` with undici's `fetch`. Undici serialises it as:
boundary `----formdata-undici-0` + 11 random digits; each text part
`--B\\r\\nContent-Disposition: form-data; name="N"\\r\\n\\r\\nVALUE\\r\\n`; a Blob part gets
`; filename="blob"` and `Content-Type: application/octet-stream` (the Blob has no type); the body
ends with `--B--\\r\\n` and is sent with a Content-Length. Field values have bare CR/LF normalised
to CRLF; names escape `"`, CR and LF as %22, %0D, %0A.
"""

from __future__ import annotations

import random
import re

import httpx

# `entries` exactly as SRV/repositories/machine-learning.repository.ts sends them (JSON.stringify).
CLIP_IMAGE_ENTRIES = '{"clip":{"visual":{"modelName":"ViT-B-32__openai"}}}'
CLIP_TEXT_ENTRIES = '{"clip":{"textual":{"modelName":"ViT-B-32__openai","options":{"language":"de"}}}}'
CLIP_TEXT_ENTRIES_NO_LANGUAGE = '{"clip":{"textual":{"modelName":"ViT-B-32__openai","options":{}}}}'
FACES_ENTRIES = (
    '{"facial-recognition":{"detection":{"modelName":"buffalo_l","options":{"minScore":0.7}},'
    '"recognition":{"modelName":"buffalo_l"}}}'
)
OCR_ENTRIES = (
    '{"ocr":{"detection":{"modelName":"PP-OCRv5_mobile","options":{"minScore":0.5,"maxResolution":736}},'
    '"recognition":{"modelName":"PP-OCRv5_mobile","options":{"minScore":0.8}}}}'
)


def undici_boundary(rng: random.Random | None = None) -> str:
    digits = (rng or random.Random()).randrange(10**11)
    return f"----formdata-undici-0{digits:011d}"


def _escape_name(name: str) -> str:
    return _crlf(name).replace("\n", "%0A").replace("\r", "%0D").replace('"', "%22")


def _crlf(value: str) -> str:
    return re.sub(r"\r\n|\r|\n", "\r\n", value)


def undici_form(parts: list[tuple[str, str | bytes]], boundary: str | None = None) -> tuple[bytes, dict[str, str]]:
    """Body and headers for `parts` in order: a `str` is a text field, `bytes` a Blob (file part)."""
    boundary = boundary or undici_boundary()
    body = bytearray()
    for name, value in parts:
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{_escape_name(name)}"'
        if isinstance(value, str):
            body += f"{head}\r\n\r\n{_crlf(value)}\r\n".encode()
        else:
            body += f'{head}; filename="blob"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode()
            body += value + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    headers = {
        "content-type": f"multipart/form-data; boundary={boundary}",
        "content-length": str(len(body)),
        "accept": "*/*",
        "user-agent": "node",
    }
    return bytes(body), headers


def immich_form(entries: str, *, image: bytes | None = None, text: str | None = None) -> tuple[bytes, dict[str, str]]:
    """The form Immich builds: `entries` first, then `image` (a Blob) or `text`."""
    parts: list[tuple[str, str | bytes]] = [("entries", entries)]
    if image is not None:
        parts.append(("image", image))
    if text is not None:
        parts.append(("text", text))
    return undici_form(parts)


async def post_predict(
    client: httpx.AsyncClient, entries: str, *, image: bytes | None = None, text: str | None = None
) -> httpx.Response:
    body, headers = immich_form(entries, image=image, text=text)
    return await client.post("/predict", content=body, headers=headers)
