-- The latest Clerk time applied to each Clerk object a webhook writes (a
-- user, an organisation, a membership), and whether it was a deletion
-- (proxy.ClerkVersion): an older message delivered late or resent is not
-- applied, and a deletion's tombstone keeps an older creation from
-- bringing the object back.
CREATE TABLE clerk_versions (
    key     text COLLATE "C" PRIMARY KEY,
    at_ms   bigint NOT NULL,
    deleted boolean NOT NULL DEFAULT false
);
