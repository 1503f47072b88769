"""Writes a wrk script for the serving benchmarks' mixed load: getinterfacesummary for random
30-day windows over 2023-01-01..2025-12-31 with random tokens (mostly cache misses).

    python3 bench/mixed_lua.py OUT.lua '"token1","token2",…'
"""
import datetime
import sys

out, tokens = sys.argv[1], sys.argv[2]
first = datetime.date(2023, 1, 1)
windows = [(first + datetime.timedelta(d), first + datetime.timedelta(d + 29)) for d in range(0, 1066)]
with open(out, "w") as f:
    f.write("tokens = {%s}\n" % tokens.rstrip(","))
    f.write("bodies = {%s}\n" % ",".join("'{\"begin_date\":\"%s\",\"end_date\":\"%s\"}'" % w for w in windows))
    f.write("""
request = function()
  local t = tokens[math.random(#tokens)]
  return wrk.format("POST", "/datacube/getinterfacesummary?access_token=" .. t, nil, bodies[math.random(#bodies)])
end
""")
