"""The load `bench/bench_load.py` asks of locust: the same body as wrk and k2probe bench, POSTed with no wait between
requests. LOCUST_FAST=1 uses FastHttpUser (geventhttpclient, locust's fast client), else HttpUser (requests).
Run by bench_load.py in a venv of its own (locust is no dependency of k2probe)."""

import json
import os

from locust import HttpUser, constant, task
from locust.contrib.fasthttp import FastHttpUser

BODY = os.environ["BENCH_BODY"]
HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer " + os.environ["BENCH_KEY"]}
json.loads(BODY)  # refuse a broken body before any request

Base = FastHttpUser if os.environ.get("LOCUST_FAST") == "1" else HttpUser


class Poster(Base):  # type: ignore[valid-type,misc]
    wait_time = constant(0)

    @task
    def post(self) -> None:
        self.client.post("/chat/completions", data=BODY, headers=HEADERS)
