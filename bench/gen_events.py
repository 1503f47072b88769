#!/usr/bin/env python3
"""Events for the ingest benchmark (issue 19): ACCOUNTS accounts, about TOTAL events over
the year 2025, every kind of event (the 2025 ones too), each with an id; written account
after account, each account in time order. Every line starts with its "time" (all in
+08:00, fixed width), so that `LC_ALL=C sort` gives one time-ordered stream of all accounts.

    gen_events.py ACCOUNTS TOTAL SEED > events.ndjson
"""
import random
import sys
import datetime

accounts, total, seed = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
out = sys.stdout
start = int(datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone(datetime.timedelta(hours=8))).timestamp())
year = 365 * 86400
china = datetime.timezone(datetime.timedelta(hours=8))
# (kind, share of events)
KINDS = [("message", 30), ("reply", 22), ("read", 25), ("share", 3), ("favorite", 1),
         ("follow", 5), ("unfollow", 1.5), ("zaikan", 1), ("like", 1.5), ("comment", 0.5),
         ("praise", 0.2), ("leave", 9)]
names = [k for k, _ in KINDS]
weights = [w for _, w in KINDS]
MSG = ["text"] * 6 + ["image", "voice", "video", "shortvideo", "link", "location"]
SCENES = ["session", "history", "feed", "friends", "other", "kanyikan", "souyisou", "home", "recommend"]
SHARE = ["friends", "feed", "other"]
FROM = ["session", "feed", "other"]
SOURCES = [0, 1, 17, 30, 43, 51, 57, 100, 149, 161, 200]

def stamp(t):
    # RFC 3339, China time, fixed width.
    return datetime.datetime.fromtimestamp(t, china).strftime("%Y-%m-%dT%H:%M:%S+08:00")

stamps = {}
def cached_stamp(t):
    s = stamps.get(t)
    if s is None:
        s = stamp(t)
        if len(stamps) > 4_000_000:
            stamps.clear()
        stamps[t] = s
    return s

for a in range(1, accounts + 1):
    rng = random.Random(seed * 100_003 + a)
    appid = f"wxbench{a:011d}"
    n = total // accounts
    users = max(200, n // 20)
    # Articles: one send a day or so, at 20:00 China time.
    sends = []
    for d in range(365):
        if rng.random() < 0.8:
            t = start + d * 86400 + 12 * 3600 + rng.randrange(3600)
            sends.append((t, f"{2247480000 + a * 1000 + d}_{1 + (d % 3)}"))
    times = sorted(start + rng.randrange(year) for _ in range(n))
    kinds = rng.choices(names, weights, k=n)
    lines = []
    si = 0
    recent = []  # msgids sent so far (reads go to the latest few)
    for i, (t, kind) in enumerate(zip(times, kinds)):
        while si < len(sends) and sends[si][0] <= t:
            st, msgid = sends[si]
            if si % 2:
                lines.append(f'{{"time":"{cached_stamp(st)}","type":"publish","appid":"{appid}","id":"p{si}","msgid":"{msgid}","title":"Article {si} of {appid}","publish_type":{si % 4 // 3},"content_url":"https://mp.weixin.qq.com/s/{msgid}"}}')
            else:
                lines.append(f'{{"time":"{cached_stamp(st)}","type":"publish","appid":"{appid}","id":"p{si}","msgid":"{msgid}","title":"Article {si} of {appid}"}}')
            recent.append(msgid)
            if len(recent) > 5:
                recent.pop(0)
            si += 1
        ts = cached_stamp(t)
        openid = f"oBench{a:04d}u{rng.randrange(users):07d}"
        head = f'{{"time":"{ts}","type":"{kind}","appid":"{appid}","id":"e{i}"'
        if kind == "message":
            lines.append(f'{head},"openid":"{openid}","msg_type":"{rng.choice(MSG)}"}}')
        elif kind == "reply":
            lines.append(f'{head},"cost_ms":{rng.randrange(20, 3000)},"ok":{"false" if rng.random() < 0.02 else "true"}}}')
        elif kind == "follow":
            lines.append(f'{head},"openid":"{openid}","source":{rng.choice(SOURCES)}}}')
        elif kind == "unfollow":
            lines.append(f'{head},"openid":"{openid}"}}')
        elif not recent:
            lines.append(f'{{"time":"{ts}","type":"message","appid":"{appid}","id":"e{i}","openid":"{openid}","msg_type":"text"}}')
        else:
            msgid = rng.choice(recent)
            if kind == "read":
                page = "int" if rng.random() < 0.9 else "ori"
                lines.append(f'{head},"msgid":"{msgid}","openid":"{openid}","page":"{page}","scene":"{rng.choice(SCENES)}"}}')
            elif kind == "share":
                lines.append(f'{head},"msgid":"{msgid}","openid":"{openid}","scene":"{rng.choice(SHARE)}","from":"{rng.choice(FROM)}"}}')
            elif kind == "praise":
                lines.append(f'{head},"msgid":"{msgid}","openid":"{openid}","money":{rng.randrange(100, 5000)}}}')
            elif kind == "leave":
                lines.append(f'{head},"msgid":"{msgid}","openid":"{openid}","active_ms":{rng.randrange(1000, 600000)},"progress":{rng.randrange(0, 101)}}}')
            else:  # favorite, zaikan, like, comment
                lines.append(f'{head},"msgid":"{msgid}","openid":"{openid}"}}')
    out.write("\n".join(lines))
    out.write("\n")
