"""A developer's WeChat message server, written with wechatpy 1.8.18 (PyPI) as its users
write them, for datacube's push and proxy tests.

    python server.py TOKEN AES_KEY APPID

Prints "listening on PORT" once ready. What it answers:
- GET: URL verification (echostr back when the signature checks);
- text "sleep": answers after 6 s, past WeChat's 5 s;
- text "boom": the handler raises (HTTP 500);
- image: "success"; voice: an empty body; anything else: a text reply naming the type,
  encrypted when the push was.
"""

import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from wechatpy import create_reply, parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidSignatureException
from wechatpy.utils import check_signature

TOKEN, AES_KEY, APPID = sys.argv[1], sys.argv[2], sys.argv[3]
crypto = WeChatCrypto(TOKEN, AES_KEY, APPID)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body):
        data = body.encode("utf-8") if isinstance(body, str) else body
        try:
            self.send_response(status)
            self.send_header("Content-Type", "text/xml; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the caller gave up waiting (the "sleep" handler)

    def query(self):
        q = parse_qs(urlparse(self.path).query)
        return {k: v[0] for k, v in q.items()}

    def do_GET(self):
        q = self.query()
        try:
            check_signature(TOKEN, q.get("signature", ""), q.get("timestamp", ""), q.get("nonce", ""))
        except InvalidSignatureException:
            return self.answer(403, "bad signature")
        self.answer(200, q.get("echostr", ""))

    def do_POST(self):
        q = self.query()
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        try:
            check_signature(TOKEN, q.get("signature", ""), q.get("timestamp", ""), q.get("nonce", ""))
            encrypted = q.get("encrypt_type") == "aes"
            xml = crypto.decrypt_message(body, q["msg_signature"], q["timestamp"], q["nonce"]) if encrypted else body
            msg = parse_message(xml)
            if msg.type == "text" and msg.content == "sleep":
                time.sleep(6)
            if msg.type == "text" and msg.content == "boom":
                raise RuntimeError("the handler failed")
            if msg.type == "image":
                return self.answer(200, "success")
            if msg.type == "voice":
                return self.answer(200, "")
            reply = create_reply("got your %s" % msg.type, msg).render()
            if encrypted:
                reply = crypto.encrypt_message(reply, q["nonce"], q["timestamp"])
            self.answer(200, reply)
        except InvalidSignatureException:
            self.answer(403, "bad signature")
        except Exception as e:  # what a framework does with a failing handler
            self.answer(500, "internal error: %s" % e)


class Server(ThreadingHTTPServer):
    # The default listen backlog (5) drops connections when a pusher opens dozens at once.
    request_queue_size = 256


server = Server(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print("listening on %d" % server.server_address[1], flush=True)
server.serve_forever()
