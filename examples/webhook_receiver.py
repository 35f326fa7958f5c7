#!/usr/bin/env python3
"""A tiny webhook receiver that verifies tokengate's deliveries with the
official Standard Webhooks library (pip install standardwebhooks).

    python3 examples/webhook_receiver.py --port 9000 --secret-file secret.txt --out events.jsonl

It answers 204 to every verified delivery (or --status CODE, to play a
failing receiver) and appends one JSON line per request to --out:
{"verified": true, "webhook_id": ..., "timestamp": ..., "signature": ...,
"body": <the raw body>, "event": <the verified payload>}, or
{"verified": false, "error": ...} (answered 400). The secret is read from
--secret-file on every request (the tests write it after registering the
endpoint), or from --secret. With --port 0 it picks a free port; either
way its first line on stdout is "listening on <port>".
"""

import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--secret", help="whsec_... (or use --secret-file)")
    parser.add_argument("--secret-file", help="a file holding whsec_..., read on every request")
    parser.add_argument("--out", required=True, help="JSON lines file to append each request to")
    parser.add_argument("--status", type=int, default=204, help="status for verified deliveries")
    args = parser.parse_args()
    lock = threading.Lock()

    def secret():
        if args.secret_file:
            with open(args.secret_file, encoding="utf-8") as f:
                return f.read().strip()
        return args.secret

    def record(line):
        with lock, open(args.out, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                event = Webhook(secret()).verify(body, headers)
            except (WebhookVerificationError, OSError, ValueError) as e:
                record({"verified": False, "error": str(e)})
                self.send_response(400)
                self.end_headers()
                return
            record({
                "verified": True,
                "webhook_id": headers.get("webhook-id"),
                "timestamp": headers.get("webhook-timestamp"),
                "signature": headers.get("webhook-signature"),
                "body": body.decode("utf-8"),
                "event": event,
            })
            self.send_response(args.status)
            self.end_headers()

        def log_message(self, *_):
            pass

    class Server(ThreadingHTTPServer):
        # tokengate sends up to 16 deliveries at once; the default backlog
        # of 5 would drop connections (and the sender retries a second later).
        request_queue_size = 64

    server = Server(("127.0.0.1", args.port), Handler)
    print(f"listening on {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
