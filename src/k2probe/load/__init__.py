"""Load testing a route (`k2probe bench`): a lean client in worker processes, closed and open loops, mergeable
histograms (HdrHistogram) — measuring the server, not the client."""
