//! The Lua scripts the shared cache runs in Redis: each is one atomic step, so replicas never
//! interleave between a read and the write it decides.

use std::sync::LazyLock;

use redis::Script;

pub use crate::service::PROVISIONAL_POLL;

/// Sets a report entry unless the key holds one whose Graph call was sent later. Values start
/// with that time as 16 digits. A time further ahead of Redis' clock than ARGV[3] ms is no
/// replica's honest write (a forgery, or a clock gone wrong) and is overwritten.
pub static STORE_LATER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local current = redis.call('GET', KEYS[1])
if current then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local at = tonumber(string.sub(current, 1, 16))
  if at and at <= now + tonumber(ARGV[3]) and at > tonumber(string.sub(ARGV[1], 1, 16)) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
",
    )
});

/// Extends a lock's lease only if it still holds this holder's token.
pub static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
",
    )
});

/// Deletes a lock only if it still holds this holder's token.
pub static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
",
    )
});

/// Graph's budget over every replica, on Redis' clock: the rules of a replica's own books.
/// KEYS: the app window, the tenant window (sorted sets of call starts, in ms), the app's pause.
/// ARGV: per window its calls, hold and length (ms); the reserve; 1 for a refresh; the member
/// (`p` + id for a call Graph has not judged yet, `c` + id otherwise); the provisional poll (ms);
/// the age (ms) past which a provisional place counts as a call: its replica never said how the
/// call ended (it died, or Redis failed it), and Graph may have counted it.
/// Returns {0, 0, 0} when counted, {1, wait, wait} when paused, {2, wait, retry-after} when
/// the windows have no room.
pub static TAKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local paused = redis.call('PTTL', KEYS[3])
if paused > 0 then
  return {1, paused, paused}
end
local reserve = tonumber(ARGV[7])
local refresh = ARGV[8] == '1'
local poll = tonumber(ARGV[10])
local wait, told = -1, -1
for i = 1, 2 do
  local key = KEYS[i]
  local calls = tonumber(ARGV[3 * i - 2])
  local hold = tonumber(ARGV[3 * i - 1])
  local per = tonumber(ARGV[3 * i])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - hold)
  local used = redis.call('ZCARD', key)
  if used < calls then
    if refresh and calls - used <= reserve then
      wait, told = math.max(wait, 0), math.max(told, 0)
    end
  else
    local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    local frees = math.max(0, tonumber(oldest[2]) + hold - now)
    local provisional = false
    local starts = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
    for j = 1, #starts, 2 do
      if string.sub(starts[j], 1, 1) == 'p' and tonumber(starts[j + 1]) > now - tonumber(ARGV[11]) then
        provisional = true
        break
      end
    end
    if provisional then
      wait, told = math.max(wait, math.min(poll, frees)), math.max(told, math.min(frees, per))
    else
      wait, told = math.max(wait, frees), math.max(told, math.min(frees, per))
    end
  end
end
if wait >= 0 then
  return {2, wait, told}
end
for i = 1, 2 do
  redis.call('ZADD', KEYS[i], now, ARGV[9])
  redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[3 * i - 1]) + 1000)
end
return {0, 0, 0}
",
    )
});

/// A provisional call (`p` + id) becomes one that counts (`c` + id), at the same start.
pub static CONFIRM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
for i = 1, 2 do
  local at = redis.call('ZSCORE', KEYS[i], 'p' .. ARGV[1])
  if at then
    redis.call('ZREM', KEYS[i], 'p' .. ARGV[1])
    redis.call('ZADD', KEYS[i], at, 'c' .. ARGV[1])
  end
end
return 1
",
    )
});

/// Uncounts a call, provisional or not.
pub static GIVE_BACK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
for i = 1, 2 do
  redis.call('ZREM', KEYS[i], 'p' .. ARGV[1], 'c' .. ARGV[1])
end
return 1
",
    )
});

/// Pauses a key for ARGV[1] ms, never shortening a longer pause.
pub static PAUSE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local left = redis.call('PTTL', KEYS[1])
if left < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
return 1
",
    )
});
