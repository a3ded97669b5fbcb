"""The Lua scripts the Redis adapters run: each is one atomic step (Redis 7.0 commands only).

A group's row in `XINFO GROUPS` is read into a table by `group_rows`; its `lag` is false when
Redis 7.0 cannot tell it (after an XDEL inside the unread part, or XGROUP SETID), and then
every entry kept in the stream is counted as unread: an over-count, never an under-count.
"""

from __future__ import annotations

_GROUPS = """
local function group_rows(stream)
  local reply = redis.pcall('XINFO', 'GROUPS', stream)
  if type(reply) == 'table' and reply['err'] then return {} end
  local rows = {}
  for _, row in ipairs(reply) do
    local group = {}
    for i = 1, #row, 2 do group[row[i]] = row[i + 1] end
    table.insert(rows, group)
  end
  return rows
end
local function backlog_of(stream, group_name)
  local length = redis.call('XLEN', stream)
  for _, group in ipairs(group_rows(stream)) do
    if group['name'] == group_name then
      local lag = group['lag']
      if not lag then lag = length end
      return group['pending'] + lag
    end
  end
  return length  -- no group yet: nothing was delivered
end
"""

# KEYS[1] stream; ARGV[1] group, ARGV[2] the backlog bound, ARGV[3] the field, ARGV[4..] posts.
# Returns {backlog} when the posts do not fit (nothing appended), else {backlog, id...}.
PUBLISH_BOUNDED = (
    _GROUPS
    + """
local backlog = backlog_of(KEYS[1], ARGV[1])
local count = #ARGV - 3
if backlog > 0 and backlog + count > tonumber(ARGV[2]) then return {backlog} end
local reply = {backlog}
for i = 4, #ARGV do
  table.insert(reply, redis.call('XADD', KEYS[1], '*', ARGV[3], ARGV[i]))
end
return reply
"""
)

# KEYS[1] stream; ARGV[1] group. Returns {length, pending, lag or -1}.
STATS = (
    _GROUPS
    + """
local length = redis.call('XLEN', KEYS[1])
for _, group in ipairs(group_rows(KEYS[1])) do
  if group['name'] == ARGV[1] then
    return {length, group['pending'], group['lag'] or -1}
  end
end
return {length, 0, length}
"""
)

# KEYS[1] stream. Deletes what every group has acknowledged: entries below each group's
# oldest pending entry, and below its last delivered one. No group: nothing is trimmed.
TRIM_ACKNOWLEDGED = (
    _GROUPS
    + """
local function before(a, b)
  local a_ms, a_seq = string.match(a, '(%d+)-(%d+)')
  local b_ms, b_seq = string.match(b, '(%d+)-(%d+)')
  if tonumber(a_ms) ~= tonumber(b_ms) then return tonumber(a_ms) < tonumber(b_ms) end
  return tonumber(a_seq) < tonumber(b_seq)
end
local floor = nil
for _, group in ipairs(group_rows(KEYS[1])) do
  local keep = group['last-delivered-id']
  if group['pending'] > 0 then
    local oldest = redis.call('XPENDING', KEYS[1], group['name'])[2]
    if before(oldest, keep) then keep = oldest end
  end
  if floor == nil or before(keep, floor) then floor = keep end
end
if floor == nil or floor == '0-0' then return 0 end
return redis.call('XTRIM', KEYS[1], 'MINID', floor)
"""
)

# KEYS[1] stream; ARGV[1] group, ARGV[2] consumer, ARGV[3..] entry ids. XCLAIM ... JUSTID
# with the same consumer resets an entry's idle time without counting a delivery; only
# entries this consumer still holds are touched, so nothing is taken back from a claimer.
TOUCH = """
local touched = 0
for i = 3, #ARGV do
  local held = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1, ARGV[2])
  if #held > 0 then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    touched = touched + 1
  end
end
return touched
"""

PUBLISH_MANY = "for i = 2, #ARGV do redis.call('PUBLISH', ARGV[1], ARGV[i]) end"

# Atomic, so a consumer that reads between the check and the delete cannot lose its entries.
PRUNE_CONSUMERS = """
local pruned = {}
for _, row in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local consumer = {}
  for i = 1, #row, 2 do consumer[row[i]] = row[i + 1] end
  if consumer['pending'] == 0 and consumer['idle'] >= tonumber(ARGV[2]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], consumer['name'])
    table.insert(pruned, consumer['name'])
  end
end
return pruned
"""
