-- A membership change's Clerk time (proxy.Revocation.Happened): it orders
-- the changes of one membership on every replica and after a restart as
-- the webhook ordered them; the cutoff (at) is when a change was applied.
-- NULL for a record kept before it was (ordered by cutoffs, as before).
ALTER TABLE revocations ADD COLUMN happened timestamptz;
