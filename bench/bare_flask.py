"""The ingest baseline: a bare Flask endpoint that parses a Mango form and answers 200.

It reads the three form fields and `json.loads` the payload (no signature check, nothing stored), and
is served by granian WSGI exactly the way `bridge.daemon.serve` serves callbridge (same Granian
arguments, spawned workers), so the ratio callbridge / baseline isolates callbridge's own work.

    .venv/bin/python bench/bare_flask.py --port 8090 --workers 2 --threads 4
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
from pathlib import Path

from flask import Flask, Response, jsonify, request

app = Flask("bare")


@app.post("/mango/<path:path>")
def notification(path: str) -> Response | tuple[Response, int]:
    form = request.form
    key, sign, text = form.get("vpbx_api_key"), form.get("sign"), form.get("json")
    if not (key and sign and text):
        return jsonify({"success": False}), 400
    json.loads(text)
    return jsonify({"success": True})


@app.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


def main() -> None:
    from granian import Granian
    from granian.constants import Interfaces

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    here = str(Path(__file__).resolve().parent)
    # Spawned workers import `bare_flask:app` from this folder.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))
    sys.path.insert(0, here)
    multiprocessing.set_start_method("spawn", force=True)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    Granian(
        "bare_flask:app",
        address=args.host,
        port=args.port,
        interface=Interfaces.WSGI,
        workers=args.workers,
        blocking_threads=args.threads,
        backlog=2048,
        log_access=False,
        respawn_failed_workers=True,
    ).serve()


if __name__ == "__main__":
    main()
