"""Statistics code tested the way a wechatpy user tests it: against datacube, with the
`datacube` fixture (reset before each test), events posted by the test, a fault the SDK's
retry survives, and a moved clock."""

import pytest
from wechatpy import WeChatClient
from wechatpy.client.api import WeChatDataCube
from wechatpy.exceptions import WeChatClientException

APPID = "wx1234567890abcdef"
SECRET = "0123456789abcdef0123456789abcdef"


def sdk(datacube, appid=APPID, secret=SECRET):
    """wechatpy's client, unchanged but for its host."""
    base = datacube.url

    class Client(WeChatClient):
        API_BASE_URL = base + "/cgi-bin/"

        def fetch_access_token(self):
            return self._fetch_access_token(
                url=base + "/cgi-bin/token",
                params={"grant_type": "client_credential", "appid": self.appid, "secret": self.secret},
            )

    WeChatDataCube.API_BASE_URL = base + "/datacube/"
    return Client(appid, secret)


def follow(openid, time, source=30):
    return {"type": "follow", "appid": APPID, "time": time, "openid": openid, "source": source}


def test_followers_posted_are_what_the_sdk_reads(datacube):
    datacube.add_account(APPID, SECRET)
    datacube.post_events(
        [
            follow("o1", "2026-05-01T10:00:00+08:00"),
            follow("o2", "2026-05-01T11:00:00+08:00", source=17),
            {"type": "unfollow", "appid": APPID, "time": "2026-05-01T12:00:00+08:00", "openid": "o1"},
        ]
    )
    rows = sdk(datacube).datacube.get_user_summary("2026-05-01", "2026-05-01")
    by_source = {r["user_source"]: (r["new_user"], r["cancel_user"]) for r in rows}
    assert by_source[30] == (1, 1)
    assert by_source[17] == (1, 0)
    cumulate = sdk(datacube).datacube.get_user_cumulate("2026-05-01", "2026-05-01")
    assert cumulate[0]["cumulate_user"] == 1


def test_nothing_of_the_test_before_is_left(datacube):
    # The account the test before added is gone: the SDK's token request is refused.
    with pytest.raises(WeChatClientException) as refused:
        sdk(datacube).datacube.get_user_summary("2026-05-01", "2026-05-01")
    assert refused.value.errcode == 40013
    # Added again, it has no statistics of before.
    datacube.add_account(APPID, SECRET)
    assert sdk(datacube).datacube.get_user_summary("2026-05-01", "2026-05-01") == []


def test_a_failed_call_is_retried_by_the_sdk(datacube):
    datacube.add_account(APPID, SECRET)
    datacube.post_events([follow("o1", "2026-05-01T10:00:00+08:00")])
    # The next call answers 40001: wechatpy fetches a new token and asks again.
    datacube.faults("getusersummary:40001@first1")
    rows = sdk(datacube).datacube.get_user_summary("2026-05-01", "2026-05-01")
    assert [r["new_user"] for r in rows if r["user_source"] == 30] == [1]
    assert datacube.faults_in_force()["rules"][0]["calls"] == 2


def test_a_day_is_read_once_the_clock_has_passed_it(datacube):
    datacube.add_account(APPID, SECRET)
    datacube.post_events([follow("o1", "2026-05-02T10:00:00+08:00")])
    client = sdk(datacube)
    # 2026-05-02 09:00: today is not a day the API answers for (61501).
    with pytest.raises(WeChatClientException) as refused:
        client.datacube.get_user_summary("2026-05-02", "2026-05-02")
    assert refused.value.errcode == 61501
    datacube.set_clock("2026-05-03T09:00:00+08:00")
    rows = client.datacube.get_user_summary("2026-05-02", "2026-05-02")
    assert [r["new_user"] for r in rows if r["user_source"] == 30] == [1]


def test_wrong_secrets_never_change_what_the_right_one_gets(datacube):
    datacube.add_account(APPID, SECRET)
    for i in range(20):
        with pytest.raises(WeChatClientException) as refused:
            sdk(datacube, secret=f"wrong-{i}").datacube.get_user_summary("2026-05-01", "2026-05-01")
        assert refused.value.errcode == 40125
    assert sdk(datacube).datacube.get_user_summary("2026-05-01", "2026-05-01") == []
