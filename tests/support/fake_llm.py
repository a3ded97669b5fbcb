"""A loopback server speaking the OpenAI chat API (the real providers are unreachable here):
it answers `Label these N posts` with N well-formed negative labels, as a provider would."""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class OpenAIChat(BaseHTTPRequestHandler):
    """Answers `Label these N posts` with N well-formed labels, as a provider would."""

    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompt = body["messages"][-1]["content"]
        count = int(re.search(r"Label these (\d+) posts", prompt).group(1))  # type: ignore[union-attr]
        items = [
            {
                "sentiment": "negative",
                "confidence": 0.8,
                "emotion": "anger",
                "emotion_confidence": 0.7,
            }
        ] * count
        answer = {"choices": [{"message": {"role": "assistant", "content": json.dumps(items)}}]}
        payload = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *_args: object) -> None:
        pass


@contextlib.contextmanager
def openai_chat() -> Iterator[str]:
    """The server running; yields its LLM_BASE_URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), OpenAIChat)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
