// Statistics code tested the way a co-wechat-api user tests it: against datacube (one server
// for the file, reset before each test), events posted by the test, a fault the SDK's retry
// survives, and a moved clock.
import { after, before, beforeEach, test } from "node:test";
import assert from "node:assert/strict";
import API from "co-wechat-api";
import { startDatacube } from "wechat-datacube";

const APPID = "wx1234567890abcdef";
const SECRET = "0123456789abcdef0123456789abcdef";
let dc;

/** co-wechat-api, unchanged but for its host. */
function sdk(secret = SECRET) {
  const base = dc.url;
  class Local extends API {
    request(url, opts, retry) {
      return super.request(url.replace("https://api.weixin.qq.com", base), opts, retry);
    }
  }
  return new Local(APPID, secret);
}

const follow = (openid, time, source = 30) => ({ type: "follow", appid: APPID, time, openid, source });

before(async () => {
  dc = await startDatacube({ clock: "2026-05-02T09:00:00+08:00" });
});
after(async () => {
  await dc.stop();
});
beforeEach(async () => {
  await dc.reset();
});

test("followers posted are what the SDK reads", async () => {
  await dc.addAccount(APPID, SECRET);
  await dc.postEvents([
    follow("o1", "2026-05-01T10:00:00+08:00"),
    follow("o2", "2026-05-01T11:00:00+08:00", 17),
    { type: "unfollow", appid: APPID, time: "2026-05-01T12:00:00+08:00", openid: "o1" },
  ]);
  const { list } = await sdk().getUserSummary("2026-05-01", "2026-05-01");
  const bySource = Object.fromEntries(list.map((r) => [r.user_source, [r.new_user, r.cancel_user]]));
  assert.deepEqual(bySource[30], [1, 1]);
  assert.deepEqual(bySource[17], [1, 0]);
});

test("nothing of the test before is left", async () => {
  await assert.rejects(sdk().getUserSummary("2026-05-01", "2026-05-01"), { code: 40013 });
  await dc.addAccount(APPID, SECRET);
  const { list } = await sdk().getUserSummary("2026-05-01", "2026-05-01");
  assert.deepEqual(list, []);
});

test("a failed call is retried by the SDK", async () => {
  await dc.addAccount(APPID, SECRET);
  await dc.postEvents([follow("o1", "2026-05-01T10:00:00+08:00")]);
  // The next call answers 40001: co-wechat-api fetches a new token and asks again.
  await dc.faults("getusersummary:40001@first1");
  const { list } = await sdk().getUserSummary("2026-05-01", "2026-05-01");
  assert.deepEqual(
    list.filter((r) => r.user_source === 30).map((r) => r.new_user),
    [1]
  );
  assert.equal((await dc.faultsInForce()).rules[0].calls, 2);
});

test("a day is read once the clock has passed it", async () => {
  await dc.addAccount(APPID, SECRET);
  await dc.postEvents([follow("o1", "2026-05-02T10:00:00+08:00")]);
  const api = sdk();
  await assert.rejects(api.getUserSummary("2026-05-02", "2026-05-02"), { code: 61501 });
  await dc.setClock("2026-05-03T09:00:00+08:00");
  const { list } = await api.getUserSummary("2026-05-02", "2026-05-02");
  assert.deepEqual(
    list.filter((r) => r.user_source === 30).map((r) => r.new_user),
    [1]
  );
});

test("wrong secrets never change what the right one gets", async () => {
  await dc.addAccount(APPID, SECRET);
  for (let i = 0; i < 20; i++) {
    await assert.rejects(sdk(`wrong-${i}`).getUserSummary("2026-05-01", "2026-05-01"), {
      code: 40125,
    });
  }
  const { list } = await sdk().getUserSummary("2026-05-01", "2026-05-01");
  assert.deepEqual(list, []);
});
