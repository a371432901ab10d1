-- Schema 1: everything the bbolt store holds (docs/ARCHITECTURE.md, "A store").
-- IDs sort byte-wise (COLLATE "C"), as bbolt's keys do, so that listings
-- and their cursors order alike on both stores.

CREATE TABLE customers (
    id            text COLLATE "C" PRIMARY KEY,
    subject       text COLLATE "C" NOT NULL DEFAULT '',   -- user_… or org_…, '' when linked to nobody
    email         bytea NOT NULL DEFAULT '',              -- as given, NUL bytes too (text cannot hold them)
    had_trial     boolean NOT NULL DEFAULT false,
    synced_at     timestamptz,
    deleted       boolean NOT NULL DEFAULT false,
    subscriptions jsonb NOT NULL DEFAULT '[]'
);

-- One row per subject: the user Clerk told of, its customer link, and its
-- listing (what the admin console's pages are read by).
CREATE TABLE accounts (
    id          text COLLATE "C" PRIMARY KEY,
    is_user     boolean NOT NULL DEFAULT false,
    email       bytea NOT NULL DEFAULT '',
    first_seen  timestamptz,
    last_seen   timestamptz,
    org_ids     text[] NOT NULL DEFAULT '{}',
    customer_id text COLLATE "C" NOT NULL DEFAULT '',
    listed      boolean NOT NULL DEFAULT false,
    list_email  text COLLATE "C" NOT NULL DEFAULT '',      -- the email in lower case, control bytes dropped
    statuses    text[] NOT NULL DEFAULT '{}',
    plans       text[] NOT NULL DEFAULT '{}',
    list_rank   integer NOT NULL DEFAULT 0,   -- 255 minus the summary's status rank: the status sort ascending
    first_s     bigint NOT NULL DEFAULT 0,    -- first and last seen in unix seconds (0: never), the sorts' keys
    last_s      bigint NOT NULL DEFAULT 0
);
CREATE INDEX accounts_by_id     ON accounts (id) WHERE listed;
CREATE INDEX accounts_by_first  ON accounts (first_s, id) WHERE listed;
CREATE INDEX accounts_by_last   ON accounts (last_s, id) WHERE listed;
CREATE INDEX accounts_by_email  ON accounts (list_email, id) WHERE listed;
CREATE INDEX accounts_by_status ON accounts (list_rank, last_s, id) WHERE listed;
CREATE INDEX accounts_statuses  ON accounts USING gin (statuses) WHERE listed;
CREATE INDEX accounts_plans     ON accounts USING gin (plans) WHERE listed;
CREATE INDEX accounts_orgs      ON accounts USING gin (org_ids);

-- Counters kept in each write's transaction, spread over shards so that
-- concurrent commits do not queue on one row: the listing's totals (tags
-- "*", "s:<status>", "p:<plan>") and the dashboard's facts
-- (proxy.SubscriptionFacts, keyed as proxy.Fact.Key).
CREATE TABLE list_counts (
    tag   text COLLATE "C" NOT NULL,
    shard smallint NOT NULL,
    n     bigint NOT NULL,
    PRIMARY KEY (tag, shard)
);
CREATE TABLE stats (
    key    bytea NOT NULL,
    shard  smallint NOT NULL,
    count  bigint NOT NULL,
    amount bigint NOT NULL,
    PRIMARY KEY (key, shard)
);

CREATE TABLE orgs (
    id   text COLLATE "C" PRIMARY KEY,
    slug text NOT NULL DEFAULT '',
    name text NOT NULL DEFAULT ''
);

CREATE TABLE comps (
    id            text COLLATE "C" PRIMARY KEY,
    subject       text COLLATE "C" NOT NULL,
    plan          text NOT NULL,
    expires_at    timestamptz NOT NULL,
    by_whom       text NOT NULL DEFAULT '',
    reason        text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL,
    revoked       boolean NOT NULL DEFAULT false,
    revoked_at    timestamptz,
    revoked_by    text NOT NULL DEFAULT '',
    revoke_reason text NOT NULL DEFAULT ''
);
CREATE INDEX comps_by_subject ON comps (subject, created_at);

CREATE TABLE audit (
    seq     bigserial PRIMARY KEY,
    at      timestamptz NOT NULL,
    actor   text NOT NULL DEFAULT '',
    action  text NOT NULL,
    subject text COLLATE "C" NOT NULL DEFAULT '',
    detail  text NOT NULL DEFAULT ''
);
CREATE INDEX audit_by_at      ON audit (at, seq);
CREATE INDEX audit_by_subject ON audit (subject, at, seq);

CREATE TABLE history (
    seq                  bigserial PRIMARY KEY,
    customer_id          text COLLATE "C" NOT NULL,
    at                   timestamptz NOT NULL,
    subscription_id      text NOT NULL,
    plan                 text NOT NULL DEFAULT '',
    status               text NOT NULL,
    period_end           timestamptz,
    cancel_at_period_end boolean NOT NULL DEFAULT false
);
CREATE INDEX history_by_customer ON history (customer_id, at, seq);

-- Processed Stripe events and Svix messages: the primary key is the dedupe.
CREATE TABLE events (
    id           text COLLATE "C" PRIMARY KEY,
    processed_at timestamptz NOT NULL
);
CREATE INDEX events_by_time ON events (processed_at);

CREATE TABLE cursors (
    name  text PRIMARY KEY,
    value text NOT NULL
);

CREATE TABLE revocations (
    id      bigserial PRIMARY KEY,
    kind    text NOT NULL,
    sid     text NOT NULL DEFAULT '',
    user_id text NOT NULL DEFAULT '',
    org_id  text NOT NULL DEFAULT '',
    role    text NOT NULL DEFAULT '',
    at      timestamptz NOT NULL,
    expires timestamptz NOT NULL
);
CREATE INDEX revocations_by_expiry ON revocations (expires);

CREATE TABLE api_keys (
    id           text COLLATE "C" PRIMARY KEY,
    hash         bytea NOT NULL UNIQUE,
    prefix       text NOT NULL,
    subject      text COLLATE "C" NOT NULL,
    name         text NOT NULL DEFAULT '',
    scopes       text[] NOT NULL DEFAULT '{}',
    created_by   text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL,
    last_used_at timestamptz,
    expires_at   timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX api_keys_by_subject ON api_keys (subject, created_at);

-- Deferred webhook syncs (the dirty marks): the leader's worker drains them.
CREATE SEQUENCE dirty_seq;
CREATE TABLE dirty (
    customer_id text COLLATE "C" PRIMARY KEY,
    marked_at   timestamptz NOT NULL,
    due         timestamptz NOT NULL,
    seq         bigint NOT NULL,
    attempts    integer NOT NULL DEFAULT 0
);
CREATE INDEX dirty_by_due    ON dirty (due, customer_id);
CREATE INDEX dirty_by_marked ON dirty (marked_at);

-- The change log: what each commit that changes a decision touched (a
-- subject, a revocation, a key), IDs only. Replicas evict by it, from
-- NOTIFY as it happens and from here after a reconnect.
CREATE TABLE changes (
    version bigserial PRIMARY KEY,
    kind    text NOT NULL,
    id      text NOT NULL,
    at      timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX changes_by_time ON changes (at);
