"""wechatpy 1.8.18's WeChatComponent, unchanged, as a third-party platform against datacube.

The whole flow of the component reference: datacube pushes an encrypted component_verify_ticket
to the component's event URL (served here, parsed by wechatpy), wechatpy gets a component token
and a pre-auth code, an administrator completes the authorization (datacube's admin API stands in
for WeChat's authorization page) and datacube pushes `authorized`, on which wechatpy calls
query_auth by itself; then datacube calls with the authorizer token, 61007 outside the sets
granted, token refresh after expiry (by datacube's clock), and revocation.

Environment: DATACUBE_BASE, DATACUBE_APPID (the account), DATACUBE_ADMIN (admin token),
FIXTURES.
"""
import datetime
import http.server
import json
import os
import threading
import unittest
import urllib.parse
import urllib.request

from wechatpy.client.api import WeChatDataCube
from wechatpy.component import WeChatComponent
from wechatpy.exceptions import WeChatClientException

BASE = os.environ["DATACUBE_BASE"]
APPID = os.environ["DATACUBE_APPID"]
ADMIN = os.environ["DATACUBE_ADMIN"]
FIXTURES = os.environ["FIXTURES"]

COMPONENT_APPID = "wx0c0a0b0c0d0e0f01"
COMPONENT_SECRET = "component-secret-0123456789abcdef"
COMPONENT_TOKEN = "componenttoken"
COMPONENT_AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"


class Component(WeChatComponent):
    """WeChatComponent with its one host pointed at datacube."""

    API_BASE_URL = BASE + "/cgi-bin"


WeChatDataCube.API_BASE_URL = BASE + "/datacube/"


def admin(method, path, body=None):
    req = urllib.request.Request(
        BASE + path,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Authorization": "Bearer " + ADMIN},
    )
    with urllib.request.urlopen(req) as r:
        return json.load(r)


def imported(name):
    with open(os.path.join(FIXTURES, name + ".json"), encoding="utf-8") as f:
        return json.load(f)["list"]


class Receiver(http.server.BaseHTTPRequestHandler):
    """The component's 授权事件接收URL: every push goes through wechatpy's parse_message."""

    component = None
    messages = []

    def do_POST(self):
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlparse(self.path).query))
        body = self.rfile.read(int(self.headers["Content-Length"]))
        try:
            msg = self.component.parse_message(
                body, query["msg_signature"], query["timestamp"], query["nonce"]
            )
            self.messages.append(msg)
            answer = b"success"
        except Exception as e:  # the test reads the failure from `messages`
            self.messages.append(e)
            answer = b"failed"
        self.send_response(200)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


class ComponentFlow(unittest.TestCase):
    def test_the_whole_flow(self):
        component = Component(
            COMPONENT_APPID, COMPONENT_SECRET, COMPONENT_TOKEN, COMPONENT_AES_KEY
        )
        Receiver.component = component
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        event_url = "http://127.0.0.1:%d/events" % server.server_address[1]
        admin("POST", "/admin/components", {
            "appid": COMPONENT_APPID, "secret": COMPONENT_SECRET, "token": COMPONENT_TOKEN,
            "aes_key": COMPONENT_AES_KEY, "event_url": event_url,
        })

        # 1. The ticket push, decrypted and stored by wechatpy.
        pushed = admin("POST", "/admin/components/%s/ticket" % COMPONENT_APPID)
        self.assertTrue(pushed["pushed"], pushed)
        self.assertTrue(pushed["ticket"].startswith("ticket@@@"))
        ticket_msg = Receiver.messages[-1]
        self.assertEqual(ticket_msg.type, "component_verify_ticket", ticket_msg)
        self.assertEqual(component.component_verify_ticket, pushed["ticket"])

        # 2. Component token (from the ticket) and a pre-auth code.
        pre = component.create_preauthcode()
        self.assertEqual(pre["expires_in"], 1800)
        self.assertTrue(pre["pre_auth_code"].startswith("preauthcode@@@"))

        # 3. The account authorizes sets 1, 2 and 3 (messages, users, interface; not 7,
        #    articles). datacube pushes `authorized`; wechatpy calls query_auth itself.
        done = admin("POST", "/admin/components/%s/grants" % COMPONENT_APPID, {
            "authorizer_appid": APPID, "func_ids": [2, 1, 3],
            "pre_auth_code": pre["pre_auth_code"],
        })
        self.assertTrue(done["pushed"], done)
        authorized = Receiver.messages[-1]
        self.assertEqual(authorized.type, "authorized")
        self.assertEqual(authorized.authorizer_appid, APPID)
        self.assertEqual(authorized.authorization_code, done["authorization_code"])
        info = authorized.query_auth_result["authorization_info"]
        self.assertEqual(info["authorizer_appid"], APPID)
        self.assertEqual(
            [f["funcscope_category"]["id"] for f in info["func_info"]], [2, 1, 3]
        )
        self.assertEqual(info["authorizer_refresh_token"], done["authorizer_refresh_token"])
        # The code was used by query_auth: a second use is 61010.
        with self.assertRaises(WeChatClientException) as used:
            component.query_auth(done["authorization_code"])
        self.assertEqual(used.exception.errcode, 61010)
        # The pre-auth code is single-use too.
        with self.assertRaises(urllib.error.HTTPError):
            admin("POST", "/admin/components/%s/grants" % COMPONENT_APPID, {
                "authorizer_appid": APPID, "func_ids": [2],
                "pre_auth_code": pre["pre_auth_code"],
            })

        # 4. Datacube calls with the authorizer token.
        client = component.get_client_by_appid(APPID)
        first_token = client.access_token
        rows = client.datacube.get_user_cumulate("2024-04-24", "2024-04-30")
        self.assertEqual(rows, imported("getusercumulate"))
        self.assertEqual(
            client.datacube.get_interface_summary("2024-04-01", "2024-04-30"),
            imported("getinterfacesummary"),
        )
        self.assertEqual(client.datacube.get_upstream_msg("2024-04-01", "2024-04-07"), [])
        # Set 7 was not granted: the article endpoints answer 61007.
        with self.assertRaises(WeChatClientException) as refused:
            client.datacube.get_article_summary("2024-04-10", "2024-04-10")
        self.assertEqual(refused.exception.errcode, 61007)
        self.assertIn("api is unauthorized to component", refused.exception.errmsg)
        info = component.get_authorizer_info(APPID)
        self.assertEqual(info["authorizer_info"]["verify_type_info"]["id"], 0)

        # 5. Two hours and a minute later (datacube's clock) both tokens have expired: the
        #    datacube call answers 42001, wechatpy refreshes the authorizer token — whose
        #    api_authorizer_token call answers 42001 for the component token, so it gets a new
        #    component token from the ticket first — and retries.
        now = admin("GET", "/admin/clock")["unix"]
        later = datetime.datetime.fromtimestamp(now + 7260, datetime.timezone.utc)
        admin("POST", "/admin/clock", {"now": later.isoformat()})
        rows_again = client.datacube.get_user_cumulate("2024-04-24", "2024-04-30")
        self.assertEqual(rows_again, rows)
        self.assertNotEqual(client.access_token, first_token, "a new authorizer token")

        # 6. Revoked: `unauthorized` is pushed; the token dies (40001) and the refresh token
        #    is refused (61003).
        admin("DELETE", "/admin/components/%s/grants/%s" % (COMPONENT_APPID, APPID))
        self.assertEqual(Receiver.messages[-1].type, "unauthorized")
        self.assertEqual(Receiver.messages[-1].authorizer_appid, APPID)
        with self.assertRaises(WeChatClientException) as gone:
            client.datacube.get_user_cumulate("2024-04-24", "2024-04-30")
        self.assertEqual(gone.exception.errcode, 61003)
        server.shutdown()
        server.server_close()
        failures = [m for m in Receiver.messages if isinstance(m, Exception)]
        self.assertEqual(failures, [], "every push was accepted by wechatpy")


if __name__ == "__main__":
    unittest.main(verbosity=2)
