"""Reading a classify request, bounded before any work: body bytes, time to receive the body, images per
request and pixels per request (read from each image's header, before anything is decoded)."""

from __future__ import annotations

import asyncio

from dnx.runtime.serve.service import Refused, ServeConfig

IMAGE_TYPES = ("image/", "application/octet-stream")


class ClientGone(Exception):
    """The client closed its connection before its request body arrived (counted as status 499)."""


async def read_body(request, limit: int, timeout_s: float) -> bytes:
    """The whole body, or 413 over ``limit`` bytes, or 408 when it has not arrived within ``timeout_s``
    (a slow or stalled client holds its connection for that long at most, and no admission slot)."""
    from starlette.requests import ClientDisconnect

    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Refused(413, f"body is {int(declared):,} bytes, over the {limit:,}-byte limit")
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise Refused(413, f"body is over the {limit:,}-byte limit")
                chunks.append(chunk)
    except TimeoutError:
        raise Refused(408, f"the request body did not arrive within {timeout_s:g} s ({size:,} bytes received)",
                      {"Connection": "close"}) from None
    except ClientDisconnect:
        raise ClientGone() from None
    return b"".join(chunks)


async def images_of(request, body: bytes, max_images: int) -> list[bytes]:
    """The encoded images of a request: the body itself, or each file of a multipart body."""
    from starlette.requests import Request

    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        async def replay():
            return {"type": "http.request", "body": body, "more_body": False}

        try:
            async with Request(request.scope, replay).form(max_files=max_images, max_fields=max_images) as form:
                blobs = [await v.read() for _, v in form.multi_items() if hasattr(v, "read")]
        except Exception as exc:  # python-multipart's and starlette's parse errors
            raise Refused(400, "cannot parse the multipart body: "
                               f"{str(exc).splitlines()[0] if str(exc) else exc}") from None
        if not blobs:
            raise Refused(400, "the multipart body has no image files")
        return blobs
    if not kind.startswith(IMAGE_TYPES):
        raise Refused(415, f"content type {kind or '(none)'} is not accepted; send image bytes (image/jpeg, "
                           "image/png, application/octet-stream) or multipart/form-data")
    if not body:
        raise Refused(400, "the request body is empty; send the image bytes")
    return [body]


def header_pixels(blob: bytes) -> int:
    """Width x height from an image's header, without decoding it; 0 when the header cannot be read (the
    decode then reports why, as a 400 naming the image)."""
    import io
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(blob)) as img:
                return int(img.width) * int(img.height)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return 0


def check_pixel_budget(blobs: list[bytes], budget: int) -> None:
    """413 when the images of one request hold more than ``budget`` pixels in all (a multipart body of
    many large images would otherwise take seconds of CPU each)."""
    total = 0
    for blob in blobs:
        total += header_pixels(blob)
        if total > budget:
            raise Refused(413, f"the request's {len(blobs)} images hold over {budget:,} pixels in all "
                               "(--max-request-pixels); send fewer or smaller images per request")


def top_k_of(request, config: ServeConfig, classes: int) -> int:
    raw = request.query_params.get("top_k")
    if raw is None:
        return min(config.default_top_k, classes)
    try:
        k = int(raw)
    except ValueError:
        raise Refused(400, f"top_k must be an integer, got {raw!r}") from None
    if not 1 <= k <= classes:
        raise Refused(400, f"top_k must be from 1 to {classes} (the model's classes), got {k}")
    return k
