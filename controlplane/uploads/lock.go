package uploads

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// The per-collection upload lock (SPEC §3 rule 4) lives in Redis with a TTL, so a crashed
// uploader's lock expires; its value is the upload id, so only that upload can extend or
// release it. PostgreSQL stays the authority: admission also refuses when the collection has
// a live reservation, so a lock lost in Redis never lets two uploads run.

// releaseScript deletes the lock only if it still belongs to the upload.
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// extendScript renews the lock of the upload, or takes it again when it expired and nobody
// took it meanwhile (PostgreSQL has just confirmed the upload's reservation is live). It
// returns 0 when another upload holds the lock.
var extendScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
if not v then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
`)

type locker struct {
	rdb    *redis.Client
	prefix string
}

func (l locker) key(collectionID string) string { return l.prefix + "upload:lock:" + collectionID }

// acquire takes the lock for uploadID; false when another upload holds it.
func (l locker) acquire(ctx context.Context, collectionID, uploadID string, ttl time.Duration) (bool, error) {
	err := l.rdb.SetArgs(ctx, l.key(collectionID), uploadID, redis.SetArgs{Mode: "NX", TTL: ttl}).Err()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	return err == nil, err
}

// extend renews the lock of uploadID; false when another upload holds it.
func (l locker) extend(ctx context.Context, collectionID, uploadID string, ttl time.Duration) (bool, error) {
	n, err := extendScript.Run(ctx, l.rdb, []string{l.key(collectionID)}, uploadID, ttl.Milliseconds()).Int64()
	return n == 1, err
}

// release drops the lock if uploadID still holds it.
func (l locker) release(ctx context.Context, collectionID, uploadID string) error {
	return releaseScript.Run(ctx, l.rdb, []string{l.key(collectionID)}, uploadID).Err()
}
