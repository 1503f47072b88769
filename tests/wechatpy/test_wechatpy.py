"""wechatpy 1.8.18, unchanged, pointed at a running datacube server.

Environment: DATACUBE_BASE (http://127.0.0.1:PORT), DATACUBE_APPID, DATACUBE_SECRET,
FIXTURES (the directory of imported bodies).
"""
import json
import os
import sys
import unittest

from wechatpy import WeChatClient
from wechatpy.client.api import WeChatDataCube
from wechatpy.exceptions import WeChatClientException

BASE = os.environ["DATACUBE_BASE"]
APPID = os.environ["DATACUBE_APPID"]
SECRET = os.environ["DATACUBE_SECRET"]
FIXTURES = os.environ["FIXTURES"]


class DatacubeClient(WeChatClient):
    """WeChatClient with its two hard-wired hosts pointed at datacube."""

    API_BASE_URL = BASE + "/cgi-bin/"

    def fetch_access_token(self):
        return self._fetch_access_token(
            url=BASE + "/cgi-bin/token",
            params={"grant_type": "client_credential", "appid": self.appid, "secret": self.secret},
        )


WeChatDataCube.API_BASE_URL = BASE + "/datacube/"


def imported(name):
    with open(os.path.join(FIXTURES, name + ".json"), encoding="utf-8") as f:
        return json.load(f)["list"]


class WechatpyAgainstDatacube(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.client = DatacubeClient(APPID, SECRET)

    def assertSameRows(self, got, want):
        self.assertEqual(got, want)
        # Field order too, as WeChat sends it.
        self.assertEqual([list(r.keys()) for r in got], [list(r.keys()) for r in want])

    def test_getinterfacesummary_over_30_days(self):
        got = self.client.datacube.get_interface_summary("2024-04-01", "2024-04-30")
        self.assertEqual(len(got), 30)
        self.assertSameRows(got, imported("getinterfacesummary"))

    def test_getinterfacesummaryhour(self):
        got = self.client.datacube.get_interface_summary_hour("2024-04-30", "2024-04-30")
        self.assertEqual([r["ref_hour"] for r in got], [h * 100 for h in range(24)])
        self.assertSameRows(got, imported("getinterfacesummaryhour"))

    def test_getarticlesummary(self):
        got = self.client.datacube.get_article_summary("2024-04-30", "2024-04-30")
        self.assertSameRows(got, imported("getarticlesummary"))
        self.assertEqual(got[1]["title"], "四月数据回顾")

    def test_getusercumulate_with_python_dates(self):
        import datetime

        got = self.client.datacube.get_user_cumulate(datetime.date(2024, 4, 24), datetime.date(2024, 4, 30))
        self.assertSameRows(got, imported("getusercumulate"))

    def test_wechatpy_raises_wechats_errors(self):
        with self.assertRaises(WeChatClientException) as caught:
            self.client.datacube.get_user_cumulate("2024-04-01", "2024-04-30")
        self.assertEqual(caught.exception.errcode, 61501)
        self.assertTrue(caught.exception.errmsg.startswith("date range error rid: "))

    def test_a_fresh_token_after_the_old_one_is_superseded(self):
        # Another client for the same account rotates the token; wechatpy's cached one keeps
        # working for the 5-minute overlap.
        other = DatacubeClient(APPID, SECRET)
        other.fetch_access_token()
        got = self.client.datacube.get_interface_summary("2024-04-30", "2024-04-30")
        self.assertEqual(got, imported("getinterfacesummary")[-1:])


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=2).result
    failed = len(result.failures) + len(result.errors)
    print(f"{result.testsRun - failed} passed, {failed} failed")
    sys.exit(1 if failed or result.testsRun == 0 else 0)
