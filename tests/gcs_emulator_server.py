"""`gcp-storage-emulator`, plus the object-generation headers tensorstore reads (a script).

    python tests/gcs_emulator_server.py start --host 127.0.0.1 --port P --in-memory ...

The emulator (2026.7.19) answers object downloads without `x-goog-generation`, and ignores
the `ifGenerationMatch` / `ifGenerationNotMatch` conditions of a download. tensorstore (orbax's
array writer) reads an OCDBT manifest's generation from that header and fails with "Malformed
StorageGeneration" without it, as soon as one checkpoint holds more than a few arrays. Real
Cloud Storage sends the header and honours the conditions; this adds both to downloads, and
changes nothing else. (Upload conditions stay ignored: one process writes each database here.)

The emulator accepts every request, so a bucket named `denied-...` answers 403, as Cloud
Storage does for credentials without access to a bucket.
"""

from __future__ import annotations

import sys
from http import HTTPStatus

from gcp_storage_emulator import __main__ as cli
from gcp_storage_emulator import server
from gcp_storage_emulator.exceptions import NotFound
from gcp_storage_emulator.handlers import objects

_download = objects.download


def download(request, response, storage, *args, **kwargs):
    """The emulator's download, with the generation headers and the download conditions."""
    try:
        obj = storage.get_file_obj(request.params["bucket_name"], request.params["object_id"])
    except NotFound:
        obj = None
    if obj is not None:
        generation = str(obj["generation"])
        response["x-goog-generation"] = generation
        response["x-goog-metageneration"] = str(obj.get("metageneration", "1"))
        not_match = request.query.get("ifGenerationNotMatch")
        match = request.query.get("ifGenerationMatch")
        if not_match and not_match[0] == generation:
            response.status = HTTPStatus.NOT_MODIFIED
            return
        if match and match[0] != generation:
            response.status = HTTPStatus.PRECONDITION_FAILED
            return
    _download(request, response, storage, *args, **kwargs)


def forbidden(request, response, storage, *args, **kwargs):
    response.status = HTTPStatus.FORBIDDEN
    response.json({"error": {"code": 403, "message": "caller does not have storage access"}})


objects.download = download  # objects.get (alt=media) calls it by name
server.HANDLERS = (
    (
        r"^.*/b/denied-[-.\w]*(/.*)?$",
        dict.fromkeys(("GET", "POST", "PUT", "DELETE", "PATCH"), forbidden),
    ),
    *(
        (regex, {m: (download if h is _download else h) for m, h in handlers.items()})
        for regex, handlers in server.HANDLERS
    ),
)

if __name__ == "__main__":
    cli.main(sys.argv[1:])
