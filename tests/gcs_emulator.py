"""gcp-storage-emulator, answering suffix byte ranges as Cloud Storage does.

  python tests/gcs_emulator.py start --host=127.0.0.1 --port=9023 \\
      --in-memory --default-bucket=cpcjax-test

takes the emulator's own arguments. Up to 2026.7.19 the emulator's object
downloads differ from Cloud Storage's in three ways this wrapper mends:
`Range: bytes=-N` (the last N bytes, which array_record's reader asks for
first) gets the whole object, which that reader takes for a corrupt file;
`ifGenerationNotMatch` is ignored, and the `x-goog-generation` header is
missing, which TensorStore needs to revalidate what it cached (Orbax's
checkpoints then fail now and then with "Malformed StorageGeneration").
"""

import re
import sys
from http import HTTPStatus

from gcp_storage_emulator.handlers import objects

_download = objects.download


def download(request, response, storage, *args, **kwargs):
    bucket, name = request.params["bucket_name"], request.params["object_id"]
    try:
        obj = storage.get_file_obj(bucket, name)
        size = len(storage.get_file(bucket, name))
    except Exception:  # a missing object: the emulator's own answer
        return _download(request, response, storage, *args, **kwargs)
    generation = str(obj["generation"])
    if request.query.get("ifGenerationNotMatch", [None])[0] == generation:
        response.status = HTTPStatus.NOT_MODIFIED
        return None
    headers = request._request_handler.headers
    suffix = re.fullmatch(r"\s*bytes=-(\d+)\s*", headers.get("range") or "")
    if suffix:
        del headers["range"]
        headers["Range"] = f"bytes={max(0, size - int(suffix.group(1)))}-"
    _download(request, response, storage, *args, **kwargs)
    response["x-goog-generation"] = generation
    response["x-goog-metageneration"] = str(obj.get("metageneration", "1"))
    return None


# The server builds its routes from `objects` when it is imported: patch first.
objects.download = download

from gcp_storage_emulator.__main__ import main  # noqa: E402

if __name__ == "__main__":
    main(sys.argv[1:])
