"""The emulator's HTTP server: SageMaker's JSON 1.1 protocol on 127.0.0.1, S3 from moto's server.

A request is ``POST /`` with ``X-Amz-Target: SageMaker.<Operation>`` and a JSON body; the answer
is the operation's JSON output, or an error as ``{"__type": code, "message": …}`` with HTTP 400
(client errors, throttling) or 5xx — what botocore's and aiobotocore's JSON parsers read, so both
talk to the emulator through ``endpoint_url``. Operations the emulator does not run itself
(the model registry: ``CreateModelPackageGroup``, ``CreateModelPackage``, ``DescribeModelPackage``,
``ListModelPackages``, ``UpdateModelPackage`` …) are forwarded byte for byte to moto's server,
which routes them by the request's signature scope.

Any other request (S3's REST calls: ``GET``/``PUT``/``HEAD``/``DELETE``/``POST`` on buckets and
keys) is proxied to moto's server too, so one ``endpoint_url`` in the Airflow connection serves
both SageMaker and S3 (a per-service ``service_config.s3.endpoint_url`` straight to moto works as well).

``GET /_emulator/report`` returns API calls by operation, injected faults and billing
(:meth:`cvtune.emulator.metering.Meter.report`); ``GET /_emulator/logs/<job>`` a training job's log.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import threading
import urllib.parse
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cvtune.emulator.clock import Clock
from cvtune.emulator.faults import HTTP_STATUS, MESSAGES, Faults
from cvtune.emulator.quotas import Quotas
from cvtune.emulator.service import Service, ServiceConfig, ServiceError, Timing

log = logging.getLogger("cvtune.emulator")
TARGET_PREFIX = "SageMaker."
CREDENTIALS = {"aws_access_key_id": "emulator", "aws_secret_access_key": "emulator"}


@dataclass
class EmulatorConfig:
    """How the emulator behaves. ``time_scale``: real seconds per emulated second of simulated waits."""

    port: int = 0
    s3_endpoint: str | None = None  # None: start a moto server of our own
    region: str = "us-east-1"
    time_scale: float = 1.0
    timing: Timing = field(default_factory=Timing)
    quotas: Quotas = field(default_factory=Quotas)
    faults: Faults = field(default_factory=Faults)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Handler(BaseHTTPRequestHandler):
    server_version = "cvtune-sagemaker-emulator"
    protocol_version = "HTTP/1.1"
    # headers and body go out as two writes: with Nagle on, the client's delayed ACK holds the
    # body back ~40 ms on every keep-alive call (4 s emulated per call at a 1/100 time scale)
    disable_nagle_algorithm = True
    emulator: Emulator  # set on the subclass made per server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug("%s " + format, self.address_string(), *args)

    def _send(self, status: int, body: bytes, content_type: str = "application/x-amz-json-1.1",
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, code: str, message: str) -> None:
        self._send(status, json.dumps({"__type": code, "message": message}).encode())

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _proxy(self, body: bytes | None = None) -> None:
        """The request as it came, to moto's server; its answer as it came back."""
        if body is None:
            body = self._body()
        endpoint = urllib.parse.urlparse(str(self.emulator.s3_endpoint))
        conn = http.client.HTTPConnection(str(endpoint.hostname), endpoint.port, timeout=120)
        hop = ("host", "content-length", "transfer-encoding", "connection")
        headers = {k: v for k, v in self.headers.items() if k.lower() not in hop}
        headers["Host"] = endpoint.netloc
        try:
            conn.request(self.command, self.path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
            self.send_response(response.status)
            for key, value in response.getheaders():
                if key.lower() not in hop:
                    self.send_header(key, value)
            length = response.getheader("Content-Length")
            self.send_header("Content-Length", length if self.command == "HEAD" and length else str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
        finally:
            conn.close()

    def do_PUT(self) -> None:  # noqa: N802
        self._proxy()

    def do_HEAD(self) -> None:  # noqa: N802
        self._proxy(b"")

    def do_DELETE(self) -> None:  # noqa: N802
        self._proxy()

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        path = urllib.parse.urlparse(self.path).path
        if not path.startswith("/_emulator/"):
            return self._proxy(b"")
        if path == "/_emulator/report":
            self._send(200, json.dumps(self.emulator.service.report(), indent=2).encode(), "application/json")
        elif path.startswith("/_emulator/logs/"):
            text = self.emulator.service.logs.get(path.rsplit("/", 1)[1])
            self._send(200 if text is not None else 404, (text or "").encode(), "text/plain")
        else:
            self._send(404, b"not found", "text/plain")

    def do_POST(self) -> None:  # noqa: N802
        body = self._body()
        target = self.headers.get("X-Amz-Target", "")
        if not target.startswith(TARGET_PREFIX):
            return self._proxy(body)  # S3 (DeleteObjects, multipart uploads …)
        operation = target[len(TARGET_PREFIX):]
        service = self.emulator.service
        service.meter.call(operation)
        code = service.faults.draw(operation)
        if code is not None:
            service.meter.error(operation, code)
            return self._error(HTTP_STATUS[code], code, MESSAGES[code])
        try:
            params = json.loads(body or b"{}")
        except ValueError:
            return self._error(400, "SerializationException", "the request body is not JSON")
        if not self.emulator.runs(operation, params):
            return self._proxy(body)
        try:
            result = service.handle(operation, params)
        except ServiceError as exc:
            service.meter.error(operation, exc.code)
            return self._error(exc.status, exc.code, exc.message)
        except Exception as exc:  # noqa: BLE001 - answered as AWS would, logged for us
            log.exception("%s failed", operation)
            service.meter.error(operation, "InternalFailure")
            return self._error(500, "InternalFailure", str(exc))
        self._send(200, json.dumps(result, default=str).encode())


class Emulator:
    """The emulator in this process: ``start()`` / ``stop()``, or ``with Emulator(config) as emu:``."""

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config = config or EmulatorConfig()
        self._moto: Any = None
        self._http: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.s3_endpoint = self.config.s3_endpoint
        self.service: Service = None  # type: ignore[assignment]  # set by start()

    @property
    def endpoint(self) -> str:
        assert self._http is not None, "start() the emulator first"
        return f"http://127.0.0.1:{self._http.server_address[1]}"

    def s3_client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.session.Session(**CREDENTIALS).client(
            "s3", endpoint_url=self.s3_endpoint, region_name=self.config.region,
            config=Config(retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=50),
        )

    def start(self) -> Emulator:
        if self.s3_endpoint is None:
            from moto.server import ThreadedMotoServer

            port = free_port()
            self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
            self._moto.start()
            self.s3_endpoint = f"http://127.0.0.1:{port}"
        service_config = ServiceConfig(region=self.config.region, timing=self.config.timing,
                                       quotas=self.config.quotas, faults=self.config.faults)
        self.service = Service(service_config, Clock(self.config.time_scale), self.s3_client())
        handler = type("Handler", (_Handler,), {"emulator": self})
        self._http = ThreadingHTTPServer(("127.0.0.1", self.config.port), handler)
        self._http.daemon_threads = True
        self._thread = threading.Thread(target=self._http.serve_forever, name="sagemaker-emulator", daemon=True)
        self._thread.start()
        log.info("SageMaker emulator on %s (S3: %s, time scale %s)", self.endpoint, self.s3_endpoint, self.config.time_scale)
        return self

    def runs(self, operation: str, params: dict[str, Any]) -> bool:
        """Whether the emulator answers ``operation`` itself (else moto does)."""
        if operation not in Service.OPERATIONS:
            return False
        if operation in ("AddTags", "ListTags", "DeleteTags"):
            return self.service.owns(str(params.get("ResourceArn", "")))
        return True

    def stop(self) -> None:
        if self.service is not None:
            with self.service.lock:
                for job in list(self.service.jobs.values()) + list(self.service.transforms.values()):
                    job.stop.set()
            for thread in self.service.threads:
                thread.join(timeout=10)
            self.service.close()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._moto is not None:
            self._moto.stop()
            self._moto = None

    def report(self) -> dict[str, Any]:
        return self.service.report()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def serve(config: EmulatorConfig, ready_file: str | None = None) -> None:
    """Run until SIGTERM/SIGINT (the CLI command); writes the endpoints to ``ready_file`` when up."""
    import signal

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    emulator = Emulator(config).start()
    info = {"endpoint": emulator.endpoint, "s3_endpoint": emulator.s3_endpoint, "region": config.region}
    print(json.dumps(info), flush=True)
    if ready_file:
        with open(ready_file + ".tmp", "w") as f:
            json.dump(info, f)
        import os

        os.replace(ready_file + ".tmp", ready_file)
    try:
        done.wait()
    finally:
        emulator.stop()
