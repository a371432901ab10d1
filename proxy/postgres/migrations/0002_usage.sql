-- Schema 2: plans' quota counters and metered usage (README "Limits",
-- "Usage billing"), as proxy/bolt keeps them in quotas.go, meters.go and
-- outbox.go.

-- One row per counter and replica: the replica's absolute count, never a
-- delta; a save keeps the larger of the old and new values. A counter's
-- total is its replicas' sum.
CREATE TABLE quota_counts (
    subject   text COLLATE "C" NOT NULL,
    plan      text COLLATE "C" NOT NULL,
    route     text COLLATE "C" NOT NULL,
    win_start timestamptz NOT NULL,
    replica   text COLLATE "C" NOT NULL,
    win_end   timestamptz NOT NULL,
    used      bigint NOT NULL CHECK (used >= 0),
    PRIMARY KEY (subject, plan, route, win_start, replica)
);
CREATE INDEX quota_counts_by_end ON quota_counts (win_end);

-- A meter window's count as one writer (one opening of the store: a
-- replica's process) counted it, absolute, the larger kept; billed is the
-- part already written to the outbox, moved in the transaction that
-- writes the row.
CREATE TABLE meter_counts (
    subject    text COLLATE "C" NOT NULL,
    event_name text COLLATE "C" NOT NULL,
    win_start  timestamptz NOT NULL,
    writer     text COLLATE "C" NOT NULL,
    win_end    timestamptz NOT NULL,
    customer   text NOT NULL,
    used       bigint NOT NULL,
    billed     bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (subject, event_name, win_start, writer),
    CHECK (0 <= billed AND billed <= used)
);
-- The windows with units not yet billed, by their end: what a flush closes.
CREATE INDEX meter_counts_open ON meter_counts (win_end) WHERE used > billed;

-- The usage outbox: one row a meter event. The row's columns never change
-- once written; its state (status 0 pending, 1 sent, 2 flagged, attempts,
-- times, note) changes until it is sent, and never after (the trigger
-- below). seq is taken from a sequence in the writing transaction: never
-- reused, not by a failed transaction, not by another replica.
CREATE SEQUENCE usage_seq;
CREATE TABLE usage_outbox (
    seq        bigint PRIMARY KEY DEFAULT nextval('usage_seq'),
    writer     text NOT NULL,
    subject    text COLLATE "C" NOT NULL,
    customer   text NOT NULL,
    event_name text COLLATE "C" NOT NULL,
    win_start  timestamptz NOT NULL,
    at         timestamptz NOT NULL,
    value      bigint NOT NULL CHECK (value > 0),
    status     smallint NOT NULL DEFAULT 0 CHECK (status IN (0, 1, 2)),
    attempts   integer NOT NULL DEFAULT 0,
    first_at   timestamptz,
    next_at    timestamptz,
    done_at    timestamptz,
    note       text NOT NULL DEFAULT ''
);
CREATE INDEX usage_outbox_pending ON usage_outbox (seq) WHERE status = 0;
CREATE INDEX usage_outbox_flagged ON usage_outbox (seq) WHERE status = 2;
CREATE INDEX usage_outbox_sent    ON usage_outbox (at) WHERE status = 1;
CREATE INDEX usage_outbox_usage   ON usage_outbox (subject, event_name, at);

-- Rows by status, kept with each write on the transaction's shard (as
-- list_counts): the outbox's stats without a count of its rows.
CREATE TABLE usage_outbox_counts (
    status smallint NOT NULL,
    shard  smallint NOT NULL,
    n      bigint NOT NULL,
    PRIMARY KEY (status, shard)
);

-- A row is immutable; a sent row is settled: its state never changes
-- again (TG001), and only a sent row is ever deleted (pruning).
CREATE FUNCTION usage_outbox_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.status <> 1 THEN
            RAISE EXCEPTION 'usage row % is not sent: only sent rows are pruned', OLD.seq USING ERRCODE = 'TG002';
        END IF;
        RETURN OLD;
    END IF;
    IF OLD.status = 1 THEN
        RAISE EXCEPTION 'usage row % already sent', OLD.seq USING ERRCODE = 'TG001';
    END IF;
    IF (NEW.seq, NEW.writer, NEW.subject, NEW.customer, NEW.event_name, NEW.win_start, NEW.at, NEW.value)
        IS DISTINCT FROM (OLD.seq, OLD.writer, OLD.subject, OLD.customer, OLD.event_name, OLD.win_start, OLD.at, OLD.value) THEN
        RAISE EXCEPTION 'usage row % is immutable', OLD.seq USING ERRCODE = 'TG002';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER usage_outbox_guard BEFORE UPDATE OR DELETE ON usage_outbox
    FOR EACH ROW EXECUTE FUNCTION usage_outbox_guard();
