#!/usr/bin/env python3
"""A minimal OTLP/HTTP trace receiver for tests and benchmarks.

POST /v1/traces bodies are decoded as `ExportTraceServiceRequest` with the official protobuf
definitions (the PyPI package `opentelemetry-proto`, installed by scripts/test.sh in
target/py-venv), and each span is appended to OUT as one JSON line: trace_id, span_id,
parent_span_id (hex), name, kind, service (`service.name`), attributes. `--drop` decodes and
discards (a collector that costs the server nothing but the export itself).

Usage: otlp-receiver.py [--port N] [--out FILE | --drop]
Prints `listening on <port>` once it accepts requests (port 0: a free one). Binds 127.0.0.1.
"""
import argparse
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

MAX_BODY = 32 * 1024 * 1024


def value(v):
    kind = v.WhichOneof("value")
    if kind in ("string_value", "bool_value", "int_value", "double_value"):
        return getattr(v, kind)
    if kind == "array_value":
        return [value(x) for x in v.array_value.values]
    return None


def spans(request):
    for rs in request.resource_spans:
        attrs = {a.key: value(a.value) for a in rs.resource.attributes}
        service = attrs.get("service.name", "")
        for ss in rs.scope_spans:
            for s in ss.spans:
                yield {
                    "trace_id": s.trace_id.hex(),
                    "span_id": s.span_id.hex(),
                    "parent_span_id": s.parent_span_id.hex(),
                    "name": s.name,
                    "kind": trace_pb2.Span.SpanKind.Name(s.kind),
                    "service": service,
                    "status": trace_pb2.Status.StatusCode.Name(s.status.code),
                    "attributes": {a.key: value(a.value) for a in s.attributes},
                }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--out")
    ap.add_argument("--drop", action="store_true")
    args = ap.parse_args()
    if not args.drop and not args.out:
        ap.error("--out FILE or --drop")
    out = None if args.drop else open(args.out, "a", buffering=1)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            if self.path != "/v1/traces" or length > MAX_BODY:
                self.send_response(404 if self.path != "/v1/traces" else 413)
                self.end_headers()
                return
            body = self.rfile.read(length)
            request = trace_service_pb2.ExportTraceServiceRequest()
            try:
                request.ParseFromString(body)
            except Exception as e:  # noqa: BLE001 - any decoding failure is the client's
                self.send_response(400)
                self.end_headers()
                self.wfile.write(str(e).encode())
                return
            if out is not None:
                for s in spans(request):
                    out.write(json.dumps(s) + "\n")
            reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *a):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"listening on {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
