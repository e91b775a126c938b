"""The latest donations and cheers of a channel, for the dashboard and Claude's context."""

from __future__ import annotations

from redis.asyncio import Redis

from shared.clock import format_ms
from shared.keys import Keys
from shared.money import usd
from shared.readmodel.models import PaidEvent
from shared.readmodel.ranges import Paid

RECENT_DONATIONS = """
-- The latest ARGV[1] donations and bits cheers, newest first, as their JSON records.
local out, rank, limit = {}, 0, tonumber(ARGV[1])
while #out < limit do
  local ids = redis.call('ZREVRANGE', KEYS[1], rank, rank + 99)
  if #ids == 0 then break end
  local records = redis.call('HMGET', KEYS[2], unpack(ids))
  for i = 1, #records do
    if records[i] and #out < limit then
      local kind = cjson.decode(records[i])['type']
      if kind == 'donation' or kind == 'bits' then out[#out + 1] = records[i] end
    end
  end
  rank = rank + 100
end
return out
"""


async def recent_donations(redis: Redis, keys: Keys, channel: str, limit: int) -> list[PaidEvent]:
    """The latest ``limit`` donations and bits cheers, newest first (one script call).

    Each is shaped like the ``data`` of the dashboard's ``donation`` message
    (amount in USD, timestamp RFC 3339 UTC). Subs in between are skipped on the
    server, 100 paid events at a time.
    """
    if limit <= 0:
        return []
    analytics = keys.analytics(channel)
    script = redis.register_script(RECENT_DONATIONS)
    records = await script(keys=[analytics.paid, analytics.paid_data], args=[limit])
    return [paid_event(Paid.parse(record)) for record in records]


def paid_event(p: Paid) -> PaidEvent:
    """A donation or cheer record as a :class:`PaidEvent`."""
    return PaidEvent(
        id=p.id,
        username=p.user,
        amount=usd(p.cents),
        message=p.message,
        timestamp=format_ms(p.ts_ms),
        type="bits" if p.type == "bits" else "donation",
    )
