"""The ingest worker's HTTP side, by responsibility:

- `ports`: IngestHTTP, the worker's two ports (devices; /metrics and /healthz) and what serves them;
- `server`: a bounded HTTP server (deadlines, at most so many requests at once and per address);
- `endpoints`: /owntracks and /osmand/<token>, which read a Request and answer a Reply
  (`core.http`) and so know no server;
- `accounts`: logging in with a broker account; `throttle`: slowing guessers down, and who a
  request comes from behind a trusted proxy."""
