"""The duplicate index in Redis, shared by every worker (the issue: not per process).

Each bucket (a post's exact-text hash and each of its LSH bands) names its group by a
reference, the exact-text hash of the group's first post; the first's own exact bucket holds,
after the reference, the group's record: the first's post_id, its time and its word hashes,
which a candidate is checked against.

Buckets and records are fields of Redis hashes, not keys of their own: a top-level key with
a TTL costs twice the memory of a hash field and several times the CPU to create, and a new
group writes thirteen buckets. Redis 7.0 has no per-field expiry, so the hashes are
generations: each covers half a window of Redis's clock and expires (PEXPIRE) a window after
its last write, and a lookup reads the three generations a window can span, newest first.
An entry thus lives between one and one and a half windows; whether a group is still live
for a post is decided by the posts' own times (`at`), as in-process. Each generation is
split into `SHARDS` hashes by the field's last byte, so no hash grows large enough for its
expiry to stall Redis.

One Lua script takes a whole batch: one round trip per batch, and, because Redis runs a
script alone, two workers' batches never interleave. With plain pipelined `SET NX`, two
near copies in two workers' batches could each claim a different band first and each be
marked a copy of the other; inside one script one batch runs wholly before the other, and
every worker agrees on the first. The script derives its hashes' names from the clock and
the fields, which it cannot declare in KEYS: it runs on a single Redis (as the stream does),
not on a Redis Cluster. Commands are Redis 7.0's (TIME, HMGET, HSET, PEXPIRE).

The logic is `LocalDuplicateIndex._place`'s, step for step; the integration tests hold the
two to the same answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from redis.asyncio import Redis

from sentiment_platform.services.analysis.duplicates import (
    KEY_VERSION,
    THRESHOLD,
    Fingerprint,
    PostText,
    fingerprints,
)
from sentiment_platform.services.analysis.minhash import BANDS

SHARDS = 256  # hashes per generation

# ARGV: prefix, window (ms), generation span (ms), shards, threshold numerator and
# denominator, bands, then the batch in eight arguments, whatever its size (the client's cost
# is per argument, the script's `string.sub` and `gmatch` are cheap): the number of posts;
# their post_ids end to end, and their lengths in bytes ("3 5 …"); their times ("<ms since
# the epoch> …"); their exact hashes (16 bytes each); their word hashes end to end (4 bytes
# each, none for a post where only an exact match counts), and their lengths in bytes; the
# band hashes of the posts that have words (8 bytes each, BANDS a post). Fields: a band's
# bucket -> its group's reference (the first's exact hash); a post's exact hash -> its group's
# reference, and after it, for the group's first, its record "<at ms> <length of post_id>
# <post_id><word hashes>" (one field a group fewer, and no look-up of the record apart when
# the exact hash is asked already). A copy claims its exact hash alone: its group is found
# through its first's bands (a new group writes 13 fields, a copy one).
# Returns, per post, its group's first when that is another post, else false (nil).
ASSIGN = """
local prefix = ARGV[1]
local window, span, shards = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local numerator, denominator = tonumber(ARGV[5]), tonumber(ARGV[6])
local bands, chunk = tonumber(ARGV[7]), 1000
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local current = math.floor(now / span)

local oldest = math.floor((now - window) / span)
local names = {}  -- names[generation][shard + 1]: the hashes' names, built once per call
for generation = oldest, current do
  local row = {}
  for shard = 1, shards do row[shard] = prefix .. string.format('%d:%d', generation, shard - 1) end
  names[generation] = row
end
local function shard_of(field) return string.byte(field, -1) % shards + 1 end

-- Every field's newest value over the live generations: an HMGET per hash, not per field.
local function fetch(fields, into)
  local by_shard = {}
  for _, field in ipairs(fields) do
    local shard = shard_of(field)
    local list = by_shard[shard]
    if not list then list = {}; by_shard[shard] = list end
    list[#list + 1] = field
  end
  for generation = current, oldest, -1 do
    local row, left = names[generation], false
    for shard, list in pairs(by_shard) do
      local still = {}
      for i = 1, #list, chunk do
        local last = math.min(i + chunk - 1, #list)
        local values = redis.call('HMGET', row[shard], unpack(list, i, last))
        for k = i, last do
          local value = values[k - i + 1]
          if value then into[list[k]] = value else still[#still + 1] = list[k] end
        end
      end
      by_shard[shard] = still
      left = left or #still > 0
    end
    if not left then return end
  end
end

-- posts[i]: {post_id, at, at as sent, exact hash, word hashes, {exact hash, band hashes...}}
local posts, ids, exacts, words, band_hashes = {}, ARGV[9], ARGV[12], ARGV[13], ARGV[15]
local id_lengths, times = string.gmatch(ARGV[10], '%d+'), string.gmatch(ARGV[11], '-?%d+')
local word_lengths = string.gmatch(ARGV[14], '%d+')
local id_at, word_at, band_at = 1, 1, 1
for i = 1, tonumber(ARGV[8]) do
  local id_end = id_at + tonumber(id_lengths()) - 1
  local word_end = word_at + tonumber(word_lengths()) - 1
  local sent, exact = times(), string.sub(exacts, 16 * i - 15, 16 * i)
  local own = {exact}
  if word_end >= word_at then
    for _ = 1, bands do
      own[#own + 1] = string.sub(band_hashes, band_at, band_at + 7)
      band_at = band_at + 8
    end
  end
  posts[i] = {string.sub(ids, id_at, id_end), tonumber(sent), sent, exact,
              string.sub(words, word_at, word_end), own}
  id_at, word_at = id_end + 1, word_end + 1
end

local held, fields = {}, {}
for _, post in ipairs(posts) do
  for _, field in ipairs(post[6]) do
    if held[field] == nil then
      held[field] = false
      fields[#fields + 1] = field
    end
  end
end
fetch(fields, held)

-- A value longer than a reference carries its group's record after it.
local records = {}
local function remember(value)
  if #value <= 16 then return end
  local first_space = string.find(value, ' ', 17, true)
  local second_space = string.find(value, ' ', first_space + 1, true)
  local length = tonumber(string.sub(value, first_space + 1, second_space - 1))
  records[string.sub(value, 1, 16)] = {
    tonumber(string.sub(value, 17, first_space - 1)),
    string.sub(value, second_space + 1, second_space + length),
    string.sub(value, second_space + length + 1),
  }
end
for field, value in pairs(held) do
  if value then
    remember(value)
    held[field] = string.sub(value, 1, 16)
  end
end
local raw, wanted = {}, {}
for _, reference in pairs(held) do
  if reference and not records[reference] and raw[reference] == nil then
    raw[reference] = false
    wanted[#wanted + 1] = reference
  end
end
fetch(wanted, raw)
for _, value in pairs(raw) do
  if value then remember(value) end
end

local function live(field, at)
  local reference = held[field]
  if not reference then return false end
  local found = records[reference]
  if found and at - found[1] < window then return reference end
  return false
end

local function similar(words, other)
  if words == '' or other == '' then return false end
  local mine, shared = {}, 0
  for i = 1, #words, 4 do mine[string.sub(words, i, i + 3)] = true end
  for i = 1, #other, 4 do
    if mine[string.sub(other, i, i + 3)] then shared = shared + 1 end
  end
  local union = #words / 4 + #other / 4 - shared
  return shared * denominator >= numerator * union
end

local writes = {}
local function write(field, value)
  local key = names[current][shard_of(field)]
  local list = writes[key]
  if not list then list = {}; writes[key] = list end
  list[#list + 1] = field
  list[#list + 1] = value
end

local marks = {}
for _, item in ipairs(posts) do
  local post, at, sent, exact, words, own = unpack(item)
  local reference = live(exact, at)
  if not reference then
    local free = {}  -- the bands no live group holds: claimed only by a new group's first
    if words ~= '' then
      for j = 2, #own do
        local holder = live(own[j], at)
        if not holder then
          free[#free + 1] = own[j]
        elseif not reference and similar(words, records[holder][3]) then
          reference = holder
        end
      end
    end
    if reference then
      write(exact, reference)
    else
      reference = exact
      records[exact] = {at, post, words}
      write(exact, exact .. sent .. ' ' .. #post .. ' ' .. post .. words)
      for _, field in ipairs(free) do
        write(field, reference)
        held[field] = reference
      end
    end
    held[exact] = reference
  end
  local first = records[reference][2]
  if first == post then marks[#marks + 1] = false else marks[#marks + 1] = first end
end

local expiry = (current + 1) * span + window - now
for key, list in pairs(writes) do
  for i = 1, #list, 2 * chunk do
    redis.call('HSET', key, unpack(list, i, math.min(i + 2 * chunk - 1, #list)))
  end
  redis.call('PEXPIRE', key, expiry)
end
return marks
"""


class RedisDuplicateIndex:
    """The index in Redis under `prefix`, shared by every worker that uses the same prefix.

    Whether a group is still live is decided by the posts' `at` (pass the time the worker
    received them); memory is bounded by Redis's own clock, through the generations. The
    client may decode responses or not.
    """

    def __init__(self, client: Redis, window: timedelta, prefix: str = "dedup:") -> None:
        self.window_ms = int(window.total_seconds() * 1000)
        if self.window_ms < 2:
            raise ValueError("the duplicate window must be at least two milliseconds")
        self.prefix = f"{prefix}{KEY_VERSION}:"
        self._script = client.register_script(ASSIGN)

    async def assign(
        self, posts: Sequence[PostText], found: Sequence[Fingerprint] | None = None
    ) -> list[str | None]:
        if found is None:
            found = fingerprints([text for _, text, _ in posts])
        asked = [i for i, fingerprint in enumerate(found) if fingerprint.exact]  # long enough
        marks: list[str | None] = [None] * len(posts)
        if not asked:
            return marks
        ids = [posts[i][0].encode() for i in asked]
        sent = [found[i] for i in asked]
        words = [fingerprint.words for fingerprint in sent]
        args: list[Any] = [self.prefix, self.window_ms, self.window_ms // 2, SHARDS]
        args += [THRESHOLD.numerator, THRESHOLD.denominator, BANDS, len(asked)]
        args += [b"".join(ids), " ".join(map(str, map(len, ids)))]
        args.append(" ".join([str(int(posts[i][2].timestamp() * 1000)) for i in asked]))
        args.append(b"".join([fingerprint.exact for fingerprint in sent]))
        args += [b"".join(words), " ".join(map(str, map(len, words)))]
        args.append(b"".join([fingerprint.bands for fingerprint in sent]))
        reply = await self._script(args=args)
        for index, first in zip(asked, reply, strict=True):
            if first is not None:
                marks[index] = first.decode() if isinstance(first, bytes) else str(first)
        return marks
