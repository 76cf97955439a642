-- Conversations: a user's questions and answers, turn by turn. Only the owner reads them as
-- chat (auditors see the audit records each turn links to). Text is kept when the `audit`
-- policy decision allows it and otherwise only as its keyed hash, like the audit log. A
-- turn keeps the passages it cited by id, never their text: reopening a conversation reads
-- them again under the policy in force.
CREATE TABLE conversations (
    id          UUID PRIMARY KEY,
    owner       TEXT NOT NULL,
    title       TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX conversations_owner ON conversations (owner, updated_at DESC);

CREATE TABLE conversation_turns (
    conversation_id  UUID NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq              INTEGER NOT NULL,
    -- the follow-up as typed, and the standalone question that was answered
    asked            TEXT,
    asked_hmac       TEXT NOT NULL,
    question         TEXT,
    question_hmac    TEXT NOT NULL,
    rewrite          TEXT NOT NULL,
    answer           TEXT,
    answer_hmac      TEXT NOT NULL,
    -- [{number, chunk, document, document_name, title}]
    sources          JSONB NOT NULL,
    cited            INTEGER[] NOT NULL,
    no_evidence      BOOLEAN NOT NULL,
    ungrounded       BOOLEAN NOT NULL,
    model            JSONB,
    audit_records    BIGINT[] NOT NULL,
    labels           TEXT[] NOT NULL DEFAULT '{}',
    -- the owner's feedback: helpful or not, a corrected answer, a note (text kept like the
    -- turn's own, otherwise only hashed)
    helpful          BOOLEAN,
    correction       TEXT,
    correction_hmac  TEXT,
    note             TEXT,
    note_hmac        TEXT,
    feedback_at      TIMESTAMPTZ,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (conversation_id, seq)
);
