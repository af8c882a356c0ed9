#!/usr/bin/env bash
# dataset: a realistic chat-style PostgreSQL database for the backup/restore
# benchmark (DESIGN §8, issue 4): users, conversations, messages with
# multi-sentence English-like text and JSONB metadata, feedback, and the
# indexes such a service has (btree, unique on an expression, GIN on jsonb),
# foreign keys included.
#
#   bench/dataset.sh DBNAME
#
# Connects with psql through the usual libpq variables (PGHOST, PGPORT,
# PGUSER, PGPASSWORD); DBNAME must exist. Tables of the same names in it are
# dropped first. Prints one summary line on stdout:
#   dataset: DB MB on disk, N users, N conversations, N messages, N feedback, S s
#
# Environment:
#   BENCH_DATASET_MB=1024    target size on disk (tables + TOAST + indexes,
#                            pg_database_size), within about ±10 %
#   BENCH_DATASET_JOBS=2     concurrent psql sessions filling `messages`
#   PSQL=psql                the psql to run (the real binary, not a wrapper,
#                            preferably)
#
# Deterministic: the same size gives the same rows, byte for byte, whatever
# the number of jobs (every chunk of conversations seeds random() itself with
# setseed, and ids are computed, not drawn from sequences). With more than one
# job the chunks' rows interleave differently in the heap from run to run, so
# pg_dump emits them in a slightly different order and compressed sizes vary
# by ~0.1 %; BENCH_DATASET_JOBS=1 gives byte-identical dumps (~1.5x slower).
# Generated on the server (generate_series, random, md5): 45-70 s per GB on
# 2 cores.
#
# The text: a pool of 400,000 sentences built from a ~400-word vocabulary
# with a skewed (Zipf-like) word frequency; each message takes one or two
# runs of consecutive sentences from random places in the pool, and some
# carry unique material (order numbers, URLs with hashes, code blocks). The
# pool (~30 MB) is larger than the compressors' windows (gzip 32 KB, zstd -3
# 2 MB), so repeated sentences do not flatter any of them much; gzip -6 packs
# the plain dump about 3:1, as it does real chat logs.
set -euo pipefail

DB=${1:-}
[ -n "$DB" ] || {
	echo "usage: bench/dataset.sh DBNAME (connection from PGHOST/PGPORT/PGUSER/PGPASSWORD)" >&2
	exit 2
}
MB=${BENCH_DATASET_MB:-1024}
JOBS=${BENCH_DATASET_JOBS:-2}
PSQL=${PSQL:-psql}
for v in "$MB" "$JOBS"; do
	case $v in '' | *[!0-9]* | 0) echo "dataset: BENCH_DATASET_MB and BENCH_DATASET_JOBS must be positive numbers" >&2; exit 2 ;; esac
done

# Calibrated on PostgreSQL 15: about 1,450 messages per MB on disk (with their
# indexes) above an empty database's ~8 MB, 14.5 messages per conversation,
# 8 conversations per user.
CONVS=$(((MB - 8) * 100))
[ "$CONVS" -ge 10 ] || CONVS=10
USERS=$(((CONVS + 7) / 8))
CHUNK=5000 # conversations per message-generating session
NCHUNKS=$(((CONVS + CHUNK - 1) / CHUNK))

sql() { "$PSQL" -X -q -v ON_ERROR_STOP=1 -d "$DB" "$@"; }
t0=$EPOCHREALTIME

# ---- schema, vocabulary, the sentence pool, users, conversations ----------
sql -o /dev/null <<EOF
SET client_min_messages = warning;
SET max_parallel_workers_per_gather = 0;
DROP TABLE IF EXISTS feedback, messages, conversations, users, bench_sentences, bench_words CASCADE;

CREATE TABLE users (
    id           bigint PRIMARY KEY,
    email        text NOT NULL,
    display_name text NOT NULL,
    locale       text NOT NULL,
    plan         text NOT NULL CHECK (plan IN ('free', 'plus', 'team', 'enterprise')),
    created_at   timestamptz NOT NULL,
    last_seen_at timestamptz,
    settings     jsonb NOT NULL DEFAULT '{}'
);

CREATE TABLE conversations (
    id            bigint PRIMARY KEY,
    user_id       bigint NOT NULL REFERENCES users (id),
    title         text NOT NULL,
    model         text NOT NULL,
    message_count integer NOT NULL,
    archived      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    metadata      jsonb NOT NULL DEFAULT '{}'
);

CREATE TABLE messages (
    id              bigint PRIMARY KEY,
    conversation_id bigint NOT NULL REFERENCES conversations (id),
    seq             integer NOT NULL,
    role            text NOT NULL CHECK (role IN ('system', 'user', 'assistant', 'tool')),
    content         text NOT NULL,
    tokens          integer NOT NULL,
    created_at      timestamptz NOT NULL,
    metadata        jsonb NOT NULL DEFAULT '{}'
);

CREATE TABLE feedback (
    message_id bigint PRIMARY KEY REFERENCES messages (id),
    user_id    bigint NOT NULL REFERENCES users (id),
    rating     smallint NOT NULL CHECK (rating BETWEEN -1 AND 1),
    reasons    text[] NOT NULL DEFAULT '{}',
    comment    text,
    created_at timestamptz NOT NULL
);

-- scratch tables for the generator (dropped at the end)
CREATE TABLE bench_words (id integer PRIMARY KEY, w text NOT NULL);
INSERT INTO bench_words (id, w)
SELECT row_number() OVER (), w FROM unnest(string_to_array(
 'the to and of a in is it you that for this be on with as are can i your not or have if we at by from ' ||
 'will an but all so do use one more my what which there when they their would about like should need ' ||
 'also how just only then some into make other them time than each any these new data first way here ' ||
 'get file value set code run example function query table server user error because could want see ' ||
 'result now may using used well very most same where after before both between through over while ' ||
 'without does did had has were been being work help let me think try sure know good great problem ' ||
 'issue question answer thanks please really still even much many few last next step steps case cases ' ||
 'change changes update test tests build deploy config configuration database index column row rows ' ||
 'request response service api client version release branch commit merge review memory cpu disk ' ||
 'network latency timeout retry cache key keys list string number object array field fields type types ' ||
 'default option options command line output input log logs message messages event events job queue ' ||
 'worker process thread lock transaction schema migration backup restore container image cluster node ' ||
 'pod secret token session account password email report chart dashboard metric metrics alert page ' ||
 'customer order invoice payment price plan team project task deadline meeting week today tomorrow ' ||
 'yesterday morning afternoon evening quickly slowly carefully probably usually always never often ' ||
 'sometimes important simple complex small large fast slow easy hard clear wrong right better best ' ||
 'worse different similar possible likely unlikely correct incorrect missing empty full local remote ' ||
 'public private internal external manual automatic recent previous current original final main ' ||
 'explain describe show write read send receive create delete remove add check compare measure ' ||
 'improve reduce increase handle support return call pass fail fix debug install upgrade configure ' ||
 'enable disable start stop open close save load parse format convert translate summarize draft ' ||
 'recipe travel weather book movie music game story idea plan budget health exercise sleep coffee ' ||
 'student teacher school course lesson chapter exam essay paragraph sentence word words letter ' ||
 'python java rust go sql bash linux docker kubernetes postgres redis nginx json yaml csv http https ' ||
 'because although however therefore meanwhile otherwise instead finally additionally specifically ' ||
 'something nothing everything anything someone everyone another either neither whether though',
 ' ')) AS w;

CREATE TABLE bench_sentences (id integer PRIMARY KEY, s text NOT NULL);
SELECT setseed(0.4242);
INSERT INTO bench_sentences (id, s)
SELECT sid,
       upper(left(txt, 1)) || substr(txt, 2) ||
       (ARRAY['.', '.', '.', '.', '.', '?', '!', ':', '.', ','])[1 + (sid * 7) % 10]
  FROM (SELECT x.sid, string_agg(w.w, ' ' ORDER BY x.pos) AS txt
          FROM (SELECT sid, pos, 1 + floor((SELECT count(*) FROM bench_words) * power(random(), 2.2))::int AS wid
                  FROM generate_series(1, 400000) sid,
                       LATERAL generate_series(1, 5 + (sid * 2654435761 % 4294967296 % 14)::int) pos) x
          JOIN bench_words w ON w.id = x.wid
         GROUP BY x.sid) t;

SELECT setseed(0.1234);
INSERT INTO users (id, email, display_name, locale, plan, created_at, last_seen_at, settings)
SELECT i,
       'user' || i || '.' || substr(md5('u' || i), 1, 6) || '@' ||
           (ARRAY['example.com', 'mail.example.org', 'corp.example.net', 'uni.example.edu'])[1 + i % 4],
       initcap((SELECT w FROM bench_words WHERE id = 1 + (i * 37) % 300)) || ' ' ||
           initcap((SELECT w FROM bench_words WHERE id = 1 + (i * 101) % 300)),
       (ARRAY['en-US', 'en-GB', 'de-DE', 'fr-FR', 'zh-CN', 'ja-JP', 'es-ES', 'pt-BR'])[1 + floor(random() * 8)::int],
       (ARRAY['free', 'free', 'free', 'plus', 'plus', 'team', 'enterprise'])[1 + floor(random() * 7)::int],
       timestamptz '2023-01-01 00:00:00+00' + random() * interval '600 days',
       CASE WHEN random() < 0.9 THEN timestamptz '2024-09-01 00:00:00+00' + random() * interval '120 days' END,
       jsonb_build_object(
           'theme', (ARRAY['light', 'dark', 'system'])[1 + floor(random() * 3)::int],
           'notifications', jsonb_build_object('email', random() < 0.6, 'push', random() < 0.4),
           'default_model', (ARRAY['gpt-4o', 'gpt-4o-mini', 'claude-3-5-sonnet', 'llama-3-70b'])[1 + floor(random() * 4)::int],
           'beta_features', CASE WHEN random() < 0.2 THEN '["voice", "canvas"]'::jsonb ELSE '[]'::jsonb END,
           'timezone', (ARRAY['UTC', 'Europe/Berlin', 'America/New_York', 'Asia/Shanghai', 'Asia/Tokyo'])[1 + floor(random() * 5)::int])
  FROM generate_series(1, $USERS) i;

SELECT setseed(0.5678);
INSERT INTO conversations (id, user_id, title, model, message_count, archived, created_at, updated_at, metadata)
SELECT i, u, title, model, n, random() < 0.15, created, created + n * interval '97 seconds',
       jsonb_build_object(
           'source', (ARRAY['web', 'web', 'ios', 'android', 'api'])[1 + floor(random() * 5)::int],
           'temperature', round((random() * 1.2)::numeric, 2),
           'system_prompt', CASE WHEN random() < 0.3 THEN 'You are a helpful assistant for ' ||
               (SELECT w FROM bench_words WHERE id = 1 + (i * 13) % 300) || ' questions.' END,
           'shared', random() < 0.05,
           'labels', CASE WHEN random() < 0.25 THEN jsonb_build_array('work', 'q' || (1 + i % 4)) ELSE '[]'::jsonb END)
  FROM (SELECT i,
               1 + floor(random() * $USERS)::bigint AS u,
               (SELECT s FROM bench_sentences WHERE id = 1 + (i * 7919) % 400000) AS title,
               (ARRAY['gpt-4o', 'gpt-4o', 'gpt-4o-mini', 'claude-3-5-sonnet', 'llama-3-70b'])[1 + floor(random() * 5)::int] AS model,
               2 + floor(power(random(), 1.5) * 33)::int AS n,
               timestamptz '2023-03-01 00:00:00+00' + random() * interval '640 days' AS created
          FROM generate_series(1, $CONVS) i) c;
EOF

# ---- messages, in chunks of conversations, JOBS sessions at a time --------
# Message id = conversation id * 64 + seq (seq < 64): fixed whatever the order
# in which chunks run.
gen_chunk() { # CHUNK_NO
	local k=$1 lo hi
	lo=$((k * CHUNK + 1))
	hi=$(((k + 1) * CHUNK))
	sql -o /dev/null <<EOF
SET client_min_messages = warning;
SET max_parallel_workers_per_gather = 0;
SET synchronous_commit = off;
SELECT setseed(((($k + 1) * 7919) % 100000) / 100000.0);
INSERT INTO messages (id, conversation_id, seq, role, content, tokens, created_at, metadata)
SELECT m.id, m.cid, m.seq, m.role, m.content, length(m.content) / 4 + 3, m.created,
       CASE WHEN m.role = 'assistant' THEN jsonb_build_object(
                'model', m.model,
                'finish_reason', (ARRAY['stop', 'stop', 'stop', 'stop', 'length', 'tool_calls'])[1 + floor(random() * 6)::int],
                'usage', jsonb_build_object('prompt_tokens', 20 + floor(random() * 4000)::int,
                                            'completion_tokens', length(m.content) / 4 + 3),
                'latency_ms', 180 + floor(random() * random() * 9000)::int,
                'request_id', 'req_' || substr(md5(m.id::text), 1, 24),
                'safety', jsonb_build_object('flagged', random() < 0.01, 'score', round(random()::numeric, 3)),
                'tools', CASE WHEN random() < 0.1 THEN '["web_search"]'::jsonb ELSE '[]'::jsonb END)
            ELSE jsonb_build_object(
                'client', jsonb_build_object('app', (ARRAY['web', 'ios', 'android'])[1 + floor(random() * 3)::int],
                                             'version', '2.' || floor(random() * 20)::int || '.' || floor(random() * 10)::int),
                'lang', (ARRAY['en', 'en', 'en', 'de', 'fr', 'zh', 'es'])[1 + floor(random() * 7)::int],
                'attachments', CASE WHEN random() < 0.05 THEN jsonb_build_array(jsonb_build_object(
                    'type', 'image/png', 'bytes', floor(random() * 2000000)::int,
                    'sha256', md5(m.id::text) || md5(m.cid::text))) ELSE '[]'::jsonb END)
       END
  FROM (SELECT c.id * 64 + s.seq AS id, c.id AS cid, s.seq, c.model,
               CASE WHEN s.seq = 1 AND c.id % 3 = 0 THEN 'system'
                    WHEN s.seq % 2 = 0 THEN 'assistant'
                    WHEN s.seq % 7 = 5 THEN 'tool'
                    ELSE 'user' END AS role,
               c.created_at + s.seq * interval '97 seconds' + random() * interval '60 seconds' AS created,
               (SELECT string_agg(p.s, ' ' ORDER BY p.id) FROM bench_sentences p
                 WHERE p.id BETWEEN r.a AND r.a + r.na) ||
               CASE WHEN r.nb >= 0 THEN E'\n\n' || (SELECT string_agg(p.s, ' ' ORDER BY p.id) FROM bench_sentences p
                 WHERE p.id BETWEEN r.b AND r.b + r.nb) ELSE '' END ||
               CASE WHEN r.x < 0.06 THEN E'\n\nOrder #' || (100000 + floor(random() * 900000)::int) ||
                        ', see https://app.example.com/t/' || substr(md5(c.id::text || s.seq), 1, 16)
                    WHEN r.x < 0.12 AND s.seq % 2 = 0 THEN E'\n\n\`\`\`sql\nSELECT id, status, created_at FROM t_' ||
                        substr(md5(s.seq::text || c.id), 1, 8) || E'\n WHERE id = ' || floor(random() * 1e7)::int ||
                        E'\n ORDER BY created_at DESC LIMIT ' || (10 + s.seq) || E';\n\`\`\`'
                    ELSE '' END AS content
          FROM conversations c
          CROSS JOIN LATERAL generate_series(1, c.message_count) s(seq)
          CROSS JOIN LATERAL (SELECT 1 + floor(random() * 399990)::int AS a,
                                     CASE WHEN s.seq % 2 = 0 THEN 1 + floor(random() * 6)::int ELSE floor(random() * 2)::int END AS na,
                                     1 + floor(random() * 399990)::int AS b,
                                     CASE WHEN s.seq % 2 = 0 THEN floor(random() * 6)::int - 1 ELSE -1 END AS nb,
                                     random() AS x
                              OFFSET 0) r
         WHERE c.id BETWEEN $lo AND $hi) m;
EOF
}

pids=()
for ((k = 0; k < NCHUNKS; k++)); do
	if [ "${#pids[@]}" -ge "$JOBS" ]; then
		wait "${pids[0]}" || { echo "dataset: a message chunk failed" >&2; exit 1; }
		pids=("${pids[@]:1}")
	fi
	gen_chunk "$k" &
	pids+=($!)
done
for p in "${pids[@]}"; do
	wait "$p" || { echo "dataset: a message chunk failed" >&2; exit 1; }
done

# ---- feedback, indexes, statistics ------------------------------------------
sql -o /dev/null <<EOF
SET client_min_messages = warning;
SET maintenance_work_mem = '256MB';
SELECT setseed(0.8765);
INSERT INTO feedback (message_id, user_id, rating, reasons, comment, created_at)
SELECT m.id, c.user_id, CASE WHEN random() < 0.7 THEN 1 ELSE -1 END,
       CASE WHEN random() < 0.4 THEN ARRAY['inaccurate', 'too long'] ELSE '{}' END,
       CASE WHEN random() < 0.3 THEN (SELECT s FROM bench_sentences WHERE id = 1 + (m.id % 399999)::int) END,
       m.created_at + interval '3 minutes'
  FROM messages m JOIN conversations c ON c.id = m.conversation_id
 WHERE m.role = 'assistant' AND m.id % 53 = 0;

CREATE UNIQUE INDEX users_email_key ON users (lower(email));
CREATE INDEX conversations_user_updated_idx ON conversations (user_id, updated_at DESC);
CREATE INDEX conversations_metadata_gin ON conversations USING gin (metadata jsonb_path_ops);
CREATE INDEX messages_conversation_seq_idx ON messages (conversation_id, seq);
CREATE INDEX messages_created_at_idx ON messages (created_at);
CREATE INDEX messages_metadata_gin ON messages USING gin (metadata jsonb_path_ops);
CREATE INDEX feedback_user_idx ON feedback (user_id);
DROP TABLE bench_sentences, bench_words;
VACUUM (FREEZE, ANALYZE);
EOF

summary=$(sql -A -t -F ' ' -c "SELECT (pg_database_size(current_database()) + 524288) / 1048576,
	(SELECT count(*) FROM users), (SELECT count(*) FROM conversations),
	(SELECT count(*) FROM messages), (SELECT count(*) FROM feedback)")
read -r size nu nc nm nf <<<"$summary"
printf 'dataset: %s %s MB on disk, %s users, %s conversations, %s messages, %s feedback, %.0f s\n' \
	"$DB" "$size" "$nu" "$nc" "$nm" "$nf" "$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { print b - a }')"
