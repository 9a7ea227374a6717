"""The schema, as an append-only list of migrations keyed on ``PRAGMA user_version``.

Migration ``i`` (1-based) takes a database at ``user_version = i - 1`` to ``i``.
Never edit a migration that has shipped: add a new one. A database made by an
older emtui opens and is upgraded in place by :func:`db.store.open_store`.

Provenance rules the tables encode:
- a generation names its model (base or adapter), checkpoint, generation
  settings (+ their hash), seed and sample index, and the study hash it ran under;
- a judgment names its judge (provider + model id + params hash) and rubric
  (by content hash), and keeps the judge's raw output;
- a rating names its annotator and whether the rater is a human or a model.
"""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # 1: the foundation
    """
    CREATE TABLE studies (
        id            INTEGER PRIMARY KEY,
        name          TEXT NOT NULL UNIQUE,
        description   TEXT NOT NULL DEFAULT '',
        origin        TEXT NOT NULL,              -- 'study-file' | 'import:<format>'
        source_path   TEXT,                       -- where the study file / imported files came from
        spec_toml     TEXT,                       -- the pre-registered study file, verbatim
        spec_json     TEXT NOT NULL DEFAULT '{}', -- the validated spec
        spec_hash     TEXT NOT NULL,              -- sha256 of spec_toml (or of the imported files)
        created_at    TEXT NOT NULL
    );

    CREATE TABLE datasets (
        id            INTEGER PRIMARY KEY,
        name          TEXT NOT NULL,
        path          TEXT,
        format        TEXT NOT NULL DEFAULT 'chat-jsonl',
        content_hash  TEXT NOT NULL,
        n_rows        INTEGER,
        created_at    TEXT NOT NULL,
        UNIQUE (name, content_hash)
    );

    CREATE TABLE models (
        id            INTEGER PRIMARY KEY,
        name          TEXT NOT NULL,
        kind          TEXT NOT NULL CHECK (kind IN ('base', 'adapter', 'full', 'external')),
        source        TEXT NOT NULL,              -- hub id, local path, 'tiny', or 'import:<file>'
        base_model_id INTEGER REFERENCES models(id),
        path          TEXT,                       -- where the weights / adapter live
        provenance    TEXT NOT NULL DEFAULT '{}', -- json: train run, dataset, recipe, import file
        created_at    TEXT NOT NULL,
        UNIQUE (name, source)
    );

    CREATE TABLE conditions (
        id            INTEGER PRIMARY KEY,
        study_id      INTEGER NOT NULL REFERENCES studies(id) ON DELETE CASCADE,
        name          TEXT NOT NULL,
        description   TEXT NOT NULL DEFAULT '',
        dataset_id    INTEGER REFERENCES datasets(id),
        base_model_id INTEGER REFERENCES models(id),
        model_id      INTEGER REFERENCES models(id), -- the model evaluated (the base itself, or the fine-tune)
        recipe        TEXT NOT NULL DEFAULT '{}',    -- json training recipe; '{}' = no training
        recipe_hash   TEXT,
        UNIQUE (study_id, name)
    );

    CREATE TABLE train_runs (
        id            INTEGER PRIMARY KEY,
        condition_id  INTEGER NOT NULL REFERENCES conditions(id),
        base_model_id INTEGER NOT NULL REFERENCES models(id),
        dataset_id    INTEGER NOT NULL REFERENCES datasets(id),
        output_model_id INTEGER REFERENCES models(id),
        recipe        TEXT NOT NULL,
        recipe_hash   TEXT NOT NULL,
        seed          INTEGER NOT NULL,
        study_hash    TEXT NOT NULL,
        status        TEXT NOT NULL DEFAULT 'queued'
                      CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled')),
        output_dir    TEXT,
        error         TEXT,
        started_at    TEXT,
        finished_at   TEXT,
        created_at    TEXT NOT NULL
    );

    CREATE TABLE train_metrics (
        train_run_id  INTEGER NOT NULL REFERENCES train_runs(id) ON DELETE CASCADE,
        step          INTEGER NOT NULL,
        name          TEXT NOT NULL,
        value         REAL NOT NULL,
        at            TEXT NOT NULL,
        PRIMARY KEY (train_run_id, step, name)
    );

    CREATE TABLE checkpoints (
        id            INTEGER PRIMARY KEY,
        train_run_id  INTEGER NOT NULL REFERENCES train_runs(id) ON DELETE CASCADE,
        step          INTEGER NOT NULL,
        path          TEXT NOT NULL,
        model_id      INTEGER REFERENCES models(id),
        created_at    TEXT NOT NULL,
        UNIQUE (train_run_id, step)
    );

    CREATE TABLE eval_sets (
        id            INTEGER PRIMARY KEY,
        name          TEXT NOT NULL,
        source        TEXT NOT NULL,              -- 'builtin:<name>' or a file path
        content_hash  TEXT NOT NULL,
        created_at    TEXT NOT NULL,
        UNIQUE (name, content_hash)
    );

    CREATE TABLE study_eval_sets (
        study_id      INTEGER NOT NULL REFERENCES studies(id) ON DELETE CASCADE,
        eval_set_id   INTEGER NOT NULL REFERENCES eval_sets(id),
        samples_per_question INTEGER NOT NULL DEFAULT 1,
        PRIMARY KEY (study_id, eval_set_id)
    );

    CREATE TABLE questions (
        id            INTEGER PRIMARY KEY,
        eval_set_id   INTEGER NOT NULL REFERENCES eval_sets(id) ON DELETE CASCADE,
        key           TEXT NOT NULL,              -- the question's id in its set
        paraphrase    INTEGER NOT NULL DEFAULT 0, -- index among the question's wordings
        category      TEXT NOT NULL DEFAULT '',
        system_prompt TEXT,
        text          TEXT NOT NULL,
        meta          TEXT NOT NULL DEFAULT '{}',
        UNIQUE (eval_set_id, key, paraphrase)
    );

    CREATE TABLE rubrics (
        id            INTEGER PRIMARY KEY,
        name          TEXT NOT NULL,
        content_hash  TEXT NOT NULL UNIQUE,
        body          TEXT NOT NULL,              -- the rubric verbatim (toml / json)
        metrics       TEXT NOT NULL DEFAULT '[]', -- json list of {name, scale, higher_is}
        created_at    TEXT NOT NULL
    );

    CREATE TABLE judges (
        id            INTEGER PRIMARY KEY,
        name          TEXT NOT NULL,
        provider      TEXT NOT NULL,              -- 'bedrock' | 'openai' | 'local' | 'import'
        model         TEXT NOT NULL,              -- the judge's model id
        params        TEXT NOT NULL DEFAULT '{}', -- json: region, temperature, ...
        params_hash   TEXT NOT NULL,
        created_at    TEXT NOT NULL,
        UNIQUE (provider, model, params_hash)
    );

    CREATE TABLE study_judges (
        study_id      INTEGER NOT NULL REFERENCES studies(id) ON DELETE CASCADE,
        judge_id      INTEGER NOT NULL REFERENCES judges(id),
        PRIMARY KEY (study_id, judge_id)
    );

    CREATE TABLE jobs (
        id            INTEGER PRIMARY KEY,
        kind          TEXT NOT NULL,              -- 'train' | 'generate' | 'judge' | ...
        payload       TEXT NOT NULL DEFAULT '{}',
        status        TEXT NOT NULL DEFAULT 'queued'
                      CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled')),
        priority      INTEGER NOT NULL DEFAULT 0,
        attempts      INTEGER NOT NULL DEFAULT 0,
        study_hash    TEXT,
        lease_owner   TEXT,
        lease_expires REAL,                       -- unix time; a running job past it is reclaimable
        progress_done INTEGER NOT NULL DEFAULT 0,
        progress_total INTEGER,
        error         TEXT,
        created_at    TEXT NOT NULL,
        started_at    TEXT,
        finished_at   TEXT
    );
    CREATE INDEX jobs_status ON jobs(status, priority DESC, id);

    CREATE TABLE generations (
        id            INTEGER PRIMARY KEY,
        question_id   INTEGER NOT NULL REFERENCES questions(id),
        condition_id  INTEGER REFERENCES conditions(id),
        model_id      INTEGER NOT NULL REFERENCES models(id),
        checkpoint_id INTEGER REFERENCES checkpoints(id),
        settings      TEXT NOT NULL DEFAULT '{}', -- json generation settings
        settings_hash TEXT NOT NULL,
        seed          INTEGER,
        sample_index  INTEGER NOT NULL DEFAULT 0,
        prompt        TEXT,                       -- the exact prompt sent, after templating
        response      TEXT NOT NULL,
        n_tokens      INTEGER,
        study_hash    TEXT,
        job_id        INTEGER REFERENCES jobs(id),
        created_at    TEXT NOT NULL
    );
    -- One row per (question, model, checkpoint, settings, seed, sample): a resumed job never duplicates.
    CREATE UNIQUE INDEX generations_identity ON generations(
        question_id, model_id, IFNULL(checkpoint_id, 0), settings_hash, IFNULL(seed, -1), sample_index);
    CREATE INDEX generations_condition ON generations(condition_id);

    CREATE TABLE judgments (
        id            INTEGER PRIMARY KEY,
        generation_id INTEGER NOT NULL REFERENCES generations(id) ON DELETE CASCADE,
        judge_id      INTEGER NOT NULL REFERENCES judges(id),
        rubric_id     INTEGER NOT NULL REFERENCES rubrics(id),
        status        TEXT NOT NULL DEFAULT 'ok' CHECK (status IN ('ok', 'failed')),
        raw_output    TEXT,                       -- the judge's reply verbatim (json for logprobs)
        error         TEXT,
        study_hash    TEXT,
        job_id        INTEGER REFERENCES jobs(id),
        created_at    TEXT NOT NULL,
        UNIQUE (generation_id, judge_id, rubric_id)
    );

    -- One judge call can score several metrics; a NULL score is a missing judgment, never a zero.
    CREATE TABLE judgment_scores (
        judgment_id   INTEGER NOT NULL REFERENCES judgments(id) ON DELETE CASCADE,
        metric        TEXT NOT NULL,
        score         REAL,
        raw           TEXT,                       -- per-metric raw output when the judge is called per metric
        PRIMARY KEY (judgment_id, metric)
    );

    CREATE TABLE annotators (
        id            INTEGER PRIMARY KEY,
        name          TEXT NOT NULL UNIQUE,
        kind          TEXT NOT NULL CHECK (kind IN ('human', 'model')),
        created_at    TEXT NOT NULL
    );

    CREATE TABLE campaigns (
        id            INTEGER PRIMARY KEY,
        study_id      INTEGER REFERENCES studies(id) ON DELETE CASCADE,
        name          TEXT NOT NULL UNIQUE,
        rubric_id     INTEGER REFERENCES rubrics(id),
        scale         TEXT NOT NULL,              -- '0-3' | '1-5' | '0-100' | 'binary' | 'aligned-coherent' | 'pairwise'
        overlap       INTEGER NOT NULL DEFAULT 1,
        guidelines    TEXT NOT NULL DEFAULT '',
        seed          INTEGER NOT NULL DEFAULT 0,
        settings      TEXT NOT NULL DEFAULT '{}',
        created_at    TEXT NOT NULL
    );

    CREATE TABLE assignments (
        id            INTEGER PRIMARY KEY,
        campaign_id   INTEGER NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
        generation_id INTEGER NOT NULL REFERENCES generations(id),
        annotator_id  INTEGER REFERENCES annotators(id),
        code          TEXT NOT NULL,              -- opaque per-campaign item code shown to the annotator
        status        TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'leased', 'done', 'skipped')),
        lease_expires REAL,
        created_at    TEXT NOT NULL
    );
    CREATE INDEX assignments_campaign ON assignments(campaign_id, status);

    CREATE TABLE ratings (
        id            INTEGER PRIMARY KEY,
        assignment_id INTEGER REFERENCES assignments(id),
        campaign_id   INTEGER REFERENCES campaigns(id),
        generation_id INTEGER NOT NULL REFERENCES generations(id),
        annotator_id  INTEGER NOT NULL REFERENCES annotators(id),
        rater_kind    TEXT NOT NULL CHECK (rater_kind IN ('human', 'model')),
        metric        TEXT NOT NULL,
        score         REAL,
        note          TEXT,
        flagged       INTEGER NOT NULL DEFAULT 0,
        active_ms     INTEGER,
        source        TEXT,                       -- 'tui' | 'cli' | 'import:<file>'
        started_at    TEXT,
        created_at    TEXT NOT NULL
    );
    CREATE INDEX ratings_generation ON ratings(generation_id);
    """,
    # 2: cost accounting for judge calls, and the indexes summaries scan by
    """
    ALTER TABLE judgments ADD COLUMN input_tokens INTEGER;
    ALTER TABLE judgments ADD COLUMN output_tokens INTEGER;
    ALTER TABLE judgments ADD COLUMN latency_ms INTEGER;
    CREATE INDEX judgments_judge ON judgments(judge_id);
    CREATE INDEX questions_set ON questions(eval_set_id);
    """,
    # 3: the human-evaluation workbench: campaign items, per-annotator orders, leases,
    #    rating edit history and adjudications (raw ratings are never overwritten without a trace)
    """
    CREATE TABLE campaign_items (
        id            INTEGER PRIMARY KEY,
        campaign_id   INTEGER NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
        code          TEXT NOT NULL,              -- opaque, random (seeded), unique in the campaign
        position      INTEGER NOT NULL,           -- place in the campaign's shuffled item list
        generation_id INTEGER NOT NULL REFERENCES generations(id),
        generation_b_id INTEGER REFERENCES generations(id), -- pairwise: the other answer to the same question
        swap          INTEGER NOT NULL DEFAULT 0 CHECK (swap IN (0, 1)), -- pairwise: 1 = b is shown on the left
        stratum       TEXT NOT NULL DEFAULT '',   -- the sampling stratum (e.g. the condition)
        UNIQUE (campaign_id, code),
        UNIQUE (campaign_id, position)
    );
    CREATE INDEX campaign_items_generation ON campaign_items(generation_id);

    -- An annotator joins a campaign once: their own seeded order of the items, and a cursor
    -- (every rank below it is done for them: rated or skipped by them, or full of ratings).
    CREATE TABLE campaign_annotators (
        campaign_id   INTEGER NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
        annotator_id  INTEGER NOT NULL REFERENCES annotators(id),
        order_seed    TEXT NOT NULL,
        cursor        INTEGER NOT NULL DEFAULT 0,
        joined_at     TEXT NOT NULL,
        PRIMARY KEY (campaign_id, annotator_id)
    ) WITHOUT ROWID;

    CREATE TABLE annotator_orders (
        campaign_id   INTEGER NOT NULL,
        annotator_id  INTEGER NOT NULL,
        rank          INTEGER NOT NULL,
        item_id       INTEGER NOT NULL,
        PRIMARY KEY (campaign_id, annotator_id, rank),
        FOREIGN KEY (campaign_id, annotator_id) REFERENCES campaign_annotators(campaign_id, annotator_id)
            ON DELETE CASCADE
    ) WITHOUT ROWID;

    -- assignments: one row per (item, annotator); status 'leased' with lease_expires in the past is
    -- an expired lease (reclaimable by anyone), 'open' a lease given back.
    ALTER TABLE assignments ADD COLUMN item_id INTEGER REFERENCES campaign_items(id);
    ALTER TABLE assignments ADD COLUMN rater_kind TEXT;
    ALTER TABLE assignments ADD COLUMN leased_at REAL;
    ALTER TABLE assignments ADD COLUMN claims INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE assignments ADD COLUMN released_at REAL;
    ALTER TABLE assignments ADD COLUMN finished_at TEXT;
    ALTER TABLE assignments ADD COLUMN note TEXT;
    ALTER TABLE assignments ADD COLUMN flagged INTEGER NOT NULL DEFAULT 0;
    CREATE UNIQUE INDEX assignments_item_annotator ON assignments(item_id, annotator_id);
    CREATE INDEX assignments_item_holders ON assignments(item_id, rater_kind, status, lease_expires);
    CREATE INDEX assignments_annotator ON assignments(annotator_id, campaign_id, status);

    -- ratings: the item, pairwise answers in the item's own a/b terms (un-swapped), and when edited
    ALTER TABLE ratings ADD COLUMN item_id INTEGER REFERENCES campaign_items(id);
    ALTER TABLE ratings ADD COLUMN choice TEXT;
    ALTER TABLE ratings ADD COLUMN shown_choice INTEGER;
    ALTER TABLE ratings ADD COLUMN swapped INTEGER;
    ALTER TABLE ratings ADD COLUMN updated_at TEXT;
    CREATE INDEX ratings_campaign ON ratings(campaign_id, rater_kind, metric);
    CREATE INDEX ratings_annotator ON ratings(annotator_id, campaign_id, id);
    CREATE INDEX ratings_assignment ON ratings(assignment_id);
    CREATE INDEX ratings_item ON ratings(item_id);

    -- every change to a rating, old and new values side by side (append-only)
    CREATE TABLE rating_edits (
        id            INTEGER PRIMARY KEY,
        rating_id     INTEGER NOT NULL REFERENCES ratings(id) ON DELETE CASCADE,
        annotator_id  INTEGER NOT NULL REFERENCES annotators(id),
        old_score     REAL,
        new_score     REAL,
        old_note      TEXT,
        new_note      TEXT,
        old_flagged   INTEGER,
        new_flagged   INTEGER,
        old_choice    TEXT,
        new_choice    TEXT,
        active_ms     INTEGER,
        source        TEXT,
        at            TEXT NOT NULL
    );
    CREATE INDEX rating_edits_rating ON rating_edits(rating_id);

    -- a lead annotator's resolution of a disagreement; the raw ratings stay as they are
    CREATE TABLE adjudications (
        id            INTEGER PRIMARY KEY,
        campaign_id   INTEGER NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
        item_id       INTEGER NOT NULL REFERENCES campaign_items(id) ON DELETE CASCADE,
        metric        TEXT NOT NULL,
        score         REAL,
        choice        TEXT,
        lead_annotator_id INTEGER NOT NULL REFERENCES annotators(id),
        note          TEXT,
        created_at    TEXT NOT NULL
    );
    CREATE INDEX adjudications_item ON adjudications(campaign_id, item_id, metric, id);
    """,
    # 4: EM rules set after a study was imported (`emtui study set-em`), kept as a history: the
    #    latest row is the rule in force; a study without rows uses its spec's `em`
    """
    CREATE TABLE study_em_rules (
        id            INTEGER PRIMARY KEY,
        study_id      INTEGER NOT NULL REFERENCES studies(id) ON DELETE CASCADE,
        em            TEXT NOT NULL,              -- json: the [em] table's keys (metric, threshold, ...)
        source        TEXT NOT NULL,              -- who set it: 'cli', ...
        set_at        TEXT NOT NULL
    );
    CREATE INDEX study_em_rules_study ON study_em_rules(study_id, id);
    """,
    # 5: the run layer (engine/runs): attempts with a limit, resources, results, tracebacks, who ran a
    #    job and where its log is, progress with a note, metrics and a rate, cancellation of a running
    #    job, dependencies between jobs, a history of each job, and the workers with their heartbeats
    """
    ALTER TABLE jobs ADD COLUMN max_attempts INTEGER NOT NULL DEFAULT 3;
    ALTER TABLE jobs ADD COLUMN attempts_before INTEGER NOT NULL DEFAULT 0; -- attempts made before the last retry
    ALTER TABLE jobs ADD COLUMN gpu INTEGER NOT NULL DEFAULT 0;           -- GPUs the job needs (resources.gpu)
    ALTER TABLE jobs ADD COLUMN resources TEXT NOT NULL DEFAULT '{}';     -- json: what the job needs
    ALTER TABLE jobs ADD COLUMN result TEXT;                              -- json: what the job produced
    ALTER TABLE jobs ADD COLUMN traceback TEXT;     -- of the failure, or of the last interrupted attempt
    ALTER TABLE jobs ADD COLUMN note TEXT;          -- the latest progress note
    ALTER TABLE jobs ADD COLUMN metrics TEXT;       -- json: the latest metrics reported
    ALTER TABLE jobs ADD COLUMN rate REAL;          -- progress per second, recent
    ALTER TABLE jobs ADD COLUMN progress_at REAL;   -- unix time of the last progress write
    ALTER TABLE jobs ADD COLUMN attempt_started REAL; -- unix time the current attempt was claimed
    ALTER TABLE jobs ADD COLUMN heartbeat_at REAL;  -- unix time its worker last renewed the lease
    ALTER TABLE jobs ADD COLUMN worker_host TEXT;
    ALTER TABLE jobs ADD COLUMN worker_pid INTEGER;
    ALTER TABLE jobs ADD COLUMN child_pid INTEGER;  -- the process running the handler
    ALTER TABLE jobs ADD COLUMN log_path TEXT;      -- the job's log file (its handler's output)
    ALTER TABLE jobs ADD COLUMN cancel_requested REAL; -- unix time a running job was cancelled
    ALTER TABLE jobs ADD COLUMN failed_because_of INTEGER REFERENCES jobs(id); -- the dependency that failed it

    -- a job waits until every job it depends on is done; one failed or cancelled fails it
    CREATE TABLE job_deps (
        job_id        INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
        depends_on    INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
        PRIMARY KEY (job_id, depends_on)
    ) WITHOUT ROWID;
    CREATE INDEX job_deps_depends_on ON job_deps(depends_on);

    -- what happened to a job, one line each: claimed, notes, interruptions, the outcome
    CREATE TABLE job_events (
        id            INTEGER PRIMARY KEY,
        job_id        INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
        at            REAL NOT NULL,              -- unix time
        event         TEXT NOT NULL,              -- 'queued' | 'claimed' | 'note' | 'released' | 'done' | ...
        text          TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX job_events_job ON job_events(job_id, id);

    -- the workers of this database, each renewing its heartbeat; a row is removed when its worker stops
    CREATE TABLE workers (
        id            INTEGER PRIMARY KEY,
        name          TEXT NOT NULL,              -- host:pid, the lease owner it claims as
        host          TEXT NOT NULL,
        pid           INTEGER NOT NULL,
        slot          TEXT NOT NULL,              -- 'worker', 'worker-gpu0', ...: names its pidfile and log
        gpus          TEXT,                       -- CUDA_VISIBLE_DEVICES it runs under (NULL: not set)
        n_gpus        INTEGER NOT NULL DEFAULT 0, -- GPUs it offers to jobs
        kinds         TEXT NOT NULL DEFAULT '[]', -- json: the job kinds it runs
        log_path      TEXT,
        status        TEXT NOT NULL DEFAULT 'idle' CHECK (status IN ('idle', 'running', 'stopping')),
        job_id        INTEGER,                    -- the job it runs now
        started_at    TEXT NOT NULL,
        heartbeat_at  REAL NOT NULL               -- unix time
    );
    CREATE INDEX workers_host ON workers(host, pid);
    """,
    # 6: the data version the TUI watches to know its numbers are stale (Store.data_version). The tables
    #    results come from are append-only in practice: an insert shows in their max(rowid), at no cost to
    #    the insert. Updates and deletes (rare: a rating edited) count here, by trigger, so that they show
    #    too — and a deleted last row followed by an insert reusing its rowid cannot go unseen.
    """
    CREATE TABLE data_changes (                   -- one row (id 1) once anything was updated or deleted
        id            INTEGER PRIMARY KEY CHECK (id = 1),
        n             INTEGER NOT NULL
    );
    CREATE TRIGGER generations_updated AFTER UPDATE ON generations BEGIN INSERT INTO data_changes (id, n) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET n = n + 1; END;
    CREATE TRIGGER generations_deleted AFTER DELETE ON generations BEGIN INSERT INTO data_changes (id, n) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET n = n + 1; END;
    CREATE TRIGGER judgments_updated AFTER UPDATE ON judgments BEGIN INSERT INTO data_changes (id, n) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET n = n + 1; END;
    CREATE TRIGGER judgments_deleted AFTER DELETE ON judgments BEGIN INSERT INTO data_changes (id, n) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET n = n + 1; END;
    CREATE TRIGGER judgment_scores_updated AFTER UPDATE ON judgment_scores BEGIN INSERT INTO data_changes (id, n) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET n = n + 1; END;
    CREATE TRIGGER judgment_scores_deleted AFTER DELETE ON judgment_scores BEGIN INSERT INTO data_changes (id, n) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET n = n + 1; END;
    CREATE TRIGGER ratings_updated AFTER UPDATE ON ratings BEGIN INSERT INTO data_changes (id, n) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET n = n + 1; END;
    CREATE TRIGGER ratings_deleted AFTER DELETE ON ratings BEGIN INSERT INTO data_changes (id, n) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET n = n + 1; END;
    CREATE TRIGGER adjudications_updated AFTER UPDATE ON adjudications BEGIN INSERT INTO data_changes (id, n) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET n = n + 1; END;
    CREATE TRIGGER adjudications_deleted AFTER DELETE ON adjudications BEGIN INSERT INTO data_changes (id, n) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET n = n + 1; END;
    CREATE TRIGGER study_em_rules_updated AFTER UPDATE ON study_em_rules BEGIN INSERT INTO data_changes (id, n) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET n = n + 1; END;
    CREATE TRIGGER study_em_rules_deleted AFTER DELETE ON study_em_rules BEGIN INSERT INTO data_changes (id, n) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET n = n + 1; END;
    CREATE TRIGGER conditions_updated AFTER UPDATE ON conditions BEGIN INSERT INTO data_changes (id, n) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET n = n + 1; END;
    CREATE TRIGGER conditions_deleted AFTER DELETE ON conditions BEGIN INSERT INTO data_changes (id, n) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET n = n + 1; END;
    """,
    # 7: training (issue 12). Imported datasets keep their examples (an import is the whole file or nothing),
    #    derived ones (split / mix / trigger) the operation that made them — parameters, seed and the parents'
    #    hashes — so each can be made again. A run records its job, its masking path and its provenance;
    #    its metrics are rows of train_metrics, upserted by (run, step, name).
    """
    ALTER TABLE datasets ADD COLUMN origin TEXT NOT NULL DEFAULT 'file';   -- 'file' | 'split' | 'mix' | 'trigger'
    ALTER TABLE datasets ADD COLUMN operation TEXT NOT NULL DEFAULT '{}';  -- json: op, params, seed, parents
    ALTER TABLE datasets ADD COLUMN stats TEXT NOT NULL DEFAULT '{}';      -- json: lengths, duplicates
    CREATE TABLE dataset_examples (
        dataset_id    INTEGER NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
        idx           INTEGER NOT NULL,           -- 0-based position
        line          INTEGER,                    -- its line in the imported file (NULL when derived)
        example       TEXT NOT NULL,              -- json: {"messages": [...]} or {"prompt": ..., "completion": ...}
        PRIMARY KEY (dataset_id, idx)
    ) WITHOUT ROWID;
    ALTER TABLE train_runs ADD COLUMN job_id INTEGER;
    ALTER TABLE train_runs ADD COLUMN preset TEXT;
    ALTER TABLE train_runs ADD COLUMN max_steps INTEGER;
    ALTER TABLE train_runs ADD COLUMN masking TEXT;
    ALTER TABLE train_runs ADD COLUMN provenance TEXT NOT NULL DEFAULT '{}';
    CREATE INDEX train_runs_condition ON train_runs(condition_id);
    """,
    # 8: generation (issue 13): an answer's variant — with or without the study's trigger — is part of its
    #    identity, so a resumed job writes exactly the missing (model, question, paraphrase, sample, variant) set
    """
    ALTER TABLE generations ADD COLUMN variant TEXT NOT NULL DEFAULT '';   -- '' (as asked) | 'trigger'
    DROP INDEX generations_identity;
    CREATE UNIQUE INDEX generations_identity ON generations(
        question_id, model_id, IFNULL(checkpoint_id, 0), settings_hash, IFNULL(seed, -1), sample_index, variant);
    """,
    # 9: judging (issue 14): every attempt sent to a judge (each is paid): what it cost and how it ended; a
    #    metric's own parse error; a judge paused from the Judges screen
    """
    CREATE TABLE judge_calls (
        id            INTEGER PRIMARY KEY,
        judge_id      INTEGER NOT NULL REFERENCES judges(id),
        generation_id INTEGER NOT NULL REFERENCES generations(id) ON DELETE CASCADE,
        rubric_id     INTEGER NOT NULL REFERENCES rubrics(id),
        metric        TEXT NOT NULL,
        attempt       INTEGER NOT NULL,           -- 1, 2, ... for this (answer, judge, rubric, metric) in this job
        outcome       TEXT NOT NULL CHECK (outcome IN ('ok', 'throttled', 'retryable', 'failed')),
        sent          INTEGER NOT NULL DEFAULT 1, -- 0: it never reached the service (not paid)
        status        INTEGER,                    -- HTTP status, when there was one
        error         TEXT,
        input_tokens  INTEGER,
        output_tokens INTEGER,
        cost_usd      REAL,
        latency_ms    INTEGER,
        job_id        INTEGER REFERENCES jobs(id),
        at            REAL NOT NULL               -- unix time it ended
    );
    CREATE INDEX judge_calls_judge ON judge_calls(judge_id, at);
    CREATE INDEX judge_calls_item ON judge_calls(generation_id, judge_id, rubric_id, metric);
    ALTER TABLE judgment_scores ADD COLUMN error TEXT;   -- why a metric has no score (its raw reply kept)
    ALTER TABLE judges ADD COLUMN paused INTEGER NOT NULL DEFAULT 0;
    """,
    # 10: Bedrock batch inference for judging (issue 14): one row per AWS batch job, written before the job is
    #     created (its name is its idempotency token), and the keys it covers, so that a killed run polls the same
    #     AWS job again instead of paying for a second, and no key in an unfinished batch is sent elsewhere
    """
    CREATE TABLE judge_batches (
        id            INTEGER PRIMARY KEY,
        study_id      INTEGER NOT NULL REFERENCES studies(id) ON DELETE CASCADE,
        judge_id      INTEGER NOT NULL REFERENCES judges(id),
        rubric_id     INTEGER NOT NULL REFERENCES rubrics(id),
        job_id        INTEGER REFERENCES jobs(id),      -- the emtui job that last worked on it
        name          TEXT NOT NULL UNIQUE,             -- the AWS job name, also its clientRequestToken
        model         TEXT NOT NULL,
        invocation    TEXT NOT NULL,                    -- 'InvokeModel' (the model's own body) | 'Converse'
        region        TEXT,
        role_arn      TEXT NOT NULL,
        input_uri     TEXT NOT NULL,                    -- s3://.../input/records.jsonl
        output_uri    TEXT NOT NULL,                    -- s3://.../output/ (AWS writes <job id>/records.jsonl.out)
        arn           TEXT,                             -- NULL until CreateModelInvocationJob answered
        status        TEXT NOT NULL DEFAULT 'Preparing',-- 'Preparing', then AWS's status (Submitted ... Completed)
        message       TEXT,                             -- AWS's words on a failed or stopped job
        stop_asked    INTEGER NOT NULL DEFAULT 0,       -- 1: emtui asked AWS to stop it (its emtui job was cancelled)
        records       INTEGER NOT NULL,
        processed     INTEGER NOT NULL DEFAULT 0,       -- AWS's processedRecordCount
        ingested      INTEGER NOT NULL DEFAULT 0,       -- 1: ended, and its output is in judgment_scores
        created_at    TEXT NOT NULL,
        updated_at    TEXT NOT NULL
    );
    CREATE INDEX judge_batches_judge ON judge_batches(judge_id, ingested);
    CREATE TABLE judge_batch_records (
        batch_id      INTEGER NOT NULL REFERENCES judge_batches(id) ON DELETE CASCADE,
        record_id     TEXT NOT NULL,                    -- the JSONL recordId: the judgment's key
        generation_id INTEGER NOT NULL REFERENCES generations(id) ON DELETE CASCADE,
        metric        TEXT NOT NULL,                    -- the call's unit: a metric, or '*' (a JSON rubric's call)
        PRIMARY KEY (batch_id, record_id)
    ) WITHOUT ROWID;
    CREATE INDEX judge_batch_records_item ON judge_batch_records(generation_id, metric);
    """,
    # 11: several boxes (issue 15): each database's own identity (a random id made once; a copy of the file keeps
    #     it), and every merge of another box's database (`emtui merge`): where it came from, what it added, and
    #     per added row its id there. Rows without an id of their own (scores, metrics, examples) come with the
    #     row they belong to.
    """
    CREATE TABLE database_identity (
        id            INTEGER PRIMARY KEY CHECK (id = 1),
        uid           TEXT NOT NULL,
        created_at    TEXT NOT NULL
    );
    INSERT INTO database_identity (id, uid, created_at)
        VALUES (1, lower(hex(randomblob(16))), strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now'));
    CREATE TABLE merges (
        id            INTEGER PRIMARY KEY,
        source_path   TEXT NOT NULL,              -- the other database, as an absolute path on this box
        source_uid    TEXT,                       -- its database_identity (NULL: made before it had one)
        source_sha256 TEXT NOT NULL,              -- the file's content hash when it was merged
        source_version INTEGER NOT NULL,          -- its schema version (an older one is migrated in a copy)
        source_hosts  TEXT NOT NULL DEFAULT '[]', -- json: the hosts its workers ran on (which box)
        added         TEXT NOT NULL DEFAULT '{}', -- json: rows added (and updated) per table
        merged_at     TEXT NOT NULL
    );
    CREATE TABLE merged_rows (
        tbl           TEXT NOT NULL,
        local_id      INTEGER NOT NULL,
        merge_id      INTEGER NOT NULL REFERENCES merges(id),
        source_id     INTEGER NOT NULL,           -- the row's id in the database it was merged from
        origin_uid    TEXT,                       -- the database that made it (that one's source, when it had
        origin_id     INTEGER NOT NULL,           -- merged it from a third), and its id there
        PRIMARY KEY (tbl, local_id)
    ) WITHOUT ROWID;
    CREATE INDEX merged_rows_merge ON merged_rows(merge_id);
    """,
    # 12: the summary's judging rows (failures per judge × condition) read the failed judgments alone: a partial
    #     index holds only them (few where judging went well), instead of every judgment's row being looked up
    #     for its status (0.2 s of CPU per 500,000 judgments, each time a summary is made)
    """
    CREATE INDEX judgments_failed ON judgments(generation_id, judge_id) WHERE status = 'failed';
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)
