-- Schema 3: the replicas' heartbeats (README "Limits", "Enforcement and
-- its bounds"). Each replica upserts its row every few seconds; a row is
-- live while its heartbeat is within the TTL of the database's clock, so
-- the replicas' own clocks play no part. A clean stop deletes its row; a
-- crashed replica's row goes stale and is pruned after an hour.
CREATE TABLE replicas (
    id           text COLLATE "C" PRIMARY KEY,
    host         text NOT NULL DEFAULT '',          -- the replica's host name, for people reading the list
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now()
);
