"""`ctdenoise serve`: denoise on arrival. It watches a PACS through QIDO-RS for CT series that
match its rules, denoises each with the model, and stores the derived series into the
source's study (docs/design.md, "Denoise on arrival (`serve`)").

- `journal`: the durable record of every matching series (SQLite), what makes a restart resume;
- `watch`: the rules and the poll that journals what the PACS holds;
- `worker`: one series from the PACS, through the model, back to the PACS;
- `health`: `/healthz` and `/metrics` (Prometheus text) on a local port;
- `service`: the loop, its workers, model changes and SIGTERM.
"""
