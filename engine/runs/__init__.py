"""The run layer: a job queue in the database, workers that run each job in a process of its
own, and one progress protocol.

- :mod:`engine.runs.kinds`: the job kinds (kind -> "module:function"); a kind is one handler;
- :mod:`engine.runs.context`: what a handler gets (:class:`~engine.runs.context.JobContext`)
  and the rules it keeps;
- :mod:`engine.runs.progress`: the progress protocol and its no-op and console
  implementations; :mod:`engine.runs.job_progress`: a job's, in the database;
- :mod:`engine.runs.queue`: queue a job, read one back as JSON;
- :mod:`engine.runs.worker`: the worker loop, heartbeat, cancellation, stopping;
  :mod:`engine.runs.child`: the process that runs one job;
- :mod:`engine.runs.detach`: detached workers (pidfile, log), ``ensure_worker``, status, stop;
- :mod:`engine.runs.config`: the tunables (lease, heartbeat, poll, attempts, grace);
  :mod:`engine.runs.paths`: where pidfiles and logs live.

The queue's rules (claiming, leases, attempts, dependencies) are in db/jobs.py.
"""
