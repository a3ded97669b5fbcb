"""The duplicate index in Redis, shared by every worker (the issue: not per process).

Each bucket (a post's exact-text hash and each of its LSH bands) names its group by a
reference, the exact-text hash of the group's first post; the first's own exact bucket holds,
after the reference, the group's record: the first's post_id, its time and its word hashes,
which a candidate is checked against.

Buckets and records are fields of Redis hashes, not keys of their own: a top-level key with
a TTL costs twice the memory of a hash field and several times the CPU to create, and a new
group writes thirteen buckets. Redis 7.0 has no per-field expiry, so the hashes are
generations: one hash for each half a window of Redis's clock, and a lookup reads the three
a window can span, newest first. An entry thus lives between one and one and a half windows;
whether a group is still live for a post is decided by the posts' own times (`at`), as
in-process. A generation that has left the window is UNLINKed by the next batch, so Redis
frees it in a background thread: a hash of millions of fields freed by its expiry would
stall Redis for as long as that takes. Its PEXPIRE, half a window later, only catches a
generation no batch came to unlink (every worker stopped that long).

One hash a generation, not a hash a shard: a field's cost in the script is per call and per
field handled in Lua, and a shard's small hash is a listpack that Redis searches linearly.
Only the posts whose exact bucket names no live group look their bands up: an exact copy
(a retweet, a flood) reads one field.

One Lua script takes a whole batch: one round trip per batch, and, because Redis runs a
script alone, two workers' batches never interleave. With plain pipelined `SET NX`, two
near copies in two workers' batches could each claim a different band first and each be
marked a copy of the other; inside one script one batch runs wholly before the other, and
every worker agrees on the first. The script derives its hashes' names from the clock,
which it cannot declare in KEYS: it runs on a single Redis (as the stream does), not on a
Redis Cluster. Commands are Redis 7.0's (TIME, HMGET, HSET, PEXPIRE, UNLINK).

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

# ARGV: prefix, window (ms), generation span (ms), threshold numerator and denominator, bands,
# then the batch in eight arguments, whatever its size (the client's cost is per argument,
# the script's `string.sub` and `gmatch` are cheap): the number of posts; their post_ids end
# to end, and their lengths in bytes ("3 5 …"); their times ("<ms since the epoch> …"); their
# exact hashes (16 bytes each); their word hashes end to end (4 bytes each, none for a post
# where only an exact match counts), and their lengths in bytes; the band hashes of the posts
# that have words (8 bytes each, BANDS a post). Fields: a band's bucket -> its group's
# reference (the first's exact hash); a post's exact hash -> its group's reference, and after
# it, for the group's first, its record "<at ms> <length of post_id> <post_id><word hashes>"
# (one field a group fewer, and no look-up of the record apart when the exact hash is asked
# already). A copy claims its exact hash alone: its group is found through its first's bands
# (a new group writes 13 fields, a copy one).
# Returns, per post, its group's first when that is another post, else false (nil).
# Hot lists grow by a counter, not `#t + 1` (a binary search each time in Redis's Lua 5.1).
ASSIGN = """
local prefix = ARGV[1]
local window, span = tonumber(ARGV[2]), tonumber(ARGV[3])
local numerator, denominator = tonumber(ARGV[4]), tonumber(ARGV[5])
local bands, chunk = tonumber(ARGV[6]), 1000
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local current = math.floor(now / span)
local oldest = math.floor((now - window) / span)
local function name(generation) return prefix .. string.format('%d', generation) end
redis.call('UNLINK', name(oldest - 1), name(oldest - 2))  -- out of every window now

-- Each field's newest value over the live generations, into `into`.
local function fetch(fields, into)
  for generation = current, oldest, -1 do
    if #fields == 0 then return end
    local key, still, left = name(generation), {}, 0
    for i = 1, #fields, chunk do
      local last = math.min(i + chunk - 1, #fields)
      local values = redis.call('HMGET', key, unpack(fields, i, last))
      for k = i, last do
        local value = values[k - i + 1]
        if value then into[fields[k]] = value else left = left + 1; still[left] = fields[k] end
      end
    end
    fields = still
  end
end

-- posts[i]: {post_id, at, at as sent, exact hash, word hashes, where its bands start (0:
-- none), its band hashes once cut, whether they were read}
local posts, ids, exacts, words, band_hashes = {}, ARGV[8], ARGV[11], ARGV[12], ARGV[14]
local id_lengths, times = string.gmatch(ARGV[9], '%d+'), string.gmatch(ARGV[10], '-?%d+')
local word_lengths = string.gmatch(ARGV[13], '%d+')
local id_at, word_at, band_at = 1, 1, 1
for i = 1, tonumber(ARGV[7]) do
  local id_end = id_at + tonumber(id_lengths()) - 1
  local word_end = word_at + tonumber(word_lengths()) - 1
  local sent, band_start = times(), 0
  if word_end >= word_at then band_start, band_at = band_at, band_at + 8 * bands end
  posts[i] = {string.sub(ids, id_at, id_end), tonumber(sent), sent,
              string.sub(exacts, 16 * i - 15, 16 * i), string.sub(words, word_at, word_end),
              band_start}
  id_at, word_at = id_end + 1, word_end + 1
end
local function bands_of(post)
  local own = post[7]
  if not own then
    own = {}
    for j = 1, bands do
      local at = post[6] + 8 * (j - 1)
      own[j] = string.sub(band_hashes, at, at + 7)
    end
    post[7] = own
  end
  return own
end

-- held[field]: the reference it names (false: none, nil: not read); records[reference].
local held, records = {}, {}
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
-- Reads the fields not read yet, then the records of the groups they name.
local function read(fields)
  local asked, values, count = {}, {}, 0
  for i = 1, #fields do
    local field = fields[i]
    if held[field] == nil then
      held[field] = false
      count = count + 1
      asked[count] = field
    end
  end
  fetch(asked, values)
  local wanted, raw, missing = {}, {}, 0
  for field, value in pairs(values) do
    remember(value)
    local reference = string.sub(value, 1, 16)
    held[field] = reference
    if not records[reference] and raw[reference] == nil then
      raw[reference] = false
      missing = missing + 1
      wanted[missing] = reference
    end
  end
  fetch(wanted, raw)
  for reference, value in pairs(raw) do
    if value then
      remember(value)
      if held[reference] == nil then held[reference] = string.sub(value, 1, 16) end
    end
  end
end

local function live(field, at)
  local reference = held[field]
  if not reference then return false end
  local found = records[reference]
  if found and at - found[1] < window then return reference end
  return false
end

local word_sets = {}  -- word hashes -> their set, made once a batch
local function word_set(hashes)
  local set = word_sets[hashes]
  if not set then
    set = {}
    for i = 1, #hashes, 4 do set[string.sub(hashes, i, i + 3)] = true end
    word_sets[hashes] = set
  end
  return set
end
local function similar(mine, other)
  if mine == '' or other == '' then return false end
  local shared, set = 0, word_set(mine)
  for word in pairs(word_set(other)) do
    if set[word] then shared = shared + 1 end
  end
  local union = #mine / 4 + #other / 4 - shared
  return shared * denominator >= numerator * union
end

-- The exact buckets first; the bands only of the posts whose exact bucket names no live group.
local asked = {}
for i, post in ipairs(posts) do asked[i] = post[4] end
read(asked)
asked = {}
local count = 0
for _, post in ipairs(posts) do
  if post[6] > 0 and not live(post[4], post[2]) then
    local own = bands_of(post)
    for j = 1, bands do asked[count + j] = own[j] end
    count = count + bands
    post[8] = true  -- its bands read below
  end
end
read(asked)

local writes, marks, written, marked = {}, {}, 0, 0
local function write(field, value)
  writes[written + 1], writes[written + 2] = field, value
  written = written + 2
end
for _, item in ipairs(posts) do
  local post, at, sent, exact, words = item[1], item[2], item[3], item[4], item[5]
  local reference = live(exact, at)
  if not reference then
    local free, claimed = {}, 0  -- the bands no live group holds: a new group's first's
    if item[6] > 0 then
      local own = bands_of(item)
      if not item[8] then read(own) end  -- an earlier post of the batch made its exact stale
      for j = 1, bands do
        local field = own[j]
        local holder = live(field, at)
        if not holder then
          claimed = claimed + 1
          free[claimed] = field
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
      for j = 1, claimed do
        write(free[j], reference)
        held[free[j]] = reference
      end
    end
    held[exact] = reference
  end
  local first = records[reference][2]
  marked = marked + 1
  if first == post then marks[marked] = false else marks[marked] = first end
end

if written > 0 then
  local key = name(current)
  for i = 1, written, 2 * chunk do
    redis.call('HSET', key, unpack(writes, i, math.min(i + 2 * chunk - 1, written)))
  end
  redis.call('PEXPIRE', key, (current + 1) * span + window + span - now)
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
        args: list[Any] = [self.prefix, self.window_ms, self.window_ms // 2]
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
