"""``manage.py export_example_model OUTDIR``: write a spec.json and model.safetensors to try the API.

The model is an untrained MLP (fixed seed) for the flights schema of the quick start in docs/api.md;
its preprocessing is fitted on synthetic rows. Real models come from your training code or,
later, from the control room's own retraining.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import torch
from django.core.management.base import BaseCommand, CommandParser

from adaptive.ml.architectures import build_model
from adaptive.ml.preprocessing import fit_preprocessing, input_spec, parse_schema
from adaptive.ml.weights import state_dict_to_bytes

FLIGHTS_SCHEMA = [
    {"name": "dep_delay", "type": "numeric"},
    {"name": "distance", "type": "numeric"},
    {"name": "carrier", "type": "categorical"},
    {"name": "origin", "type": "categorical"},
]


class Command(BaseCommand):
    help = "Write an example model (spec.json + model.safetensors) for the flights schema."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("outdir")
        parser.add_argument("--architecture", default="mlp", choices=["mlp", "deepfm"])
        parser.add_argument("--seed", type=int, default=0)

    def handle(self, *args: Any, outdir: str, architecture: str, seed: int, **options: Any) -> None:
        rng = random.Random(seed)
        rows = [
            {
                "dep_delay": rng.gauss(12, 40),
                "distance": rng.uniform(80, 4983),
                "carrier": rng.choice(["UA", "B6", "EV", "DL", "AA", "MQ", "US", "9E", "WN"]),
                "origin": rng.choice(["EWR", "JFK", "LGA"]),
            }
            for _ in range(2000)
        ]
        schema = parse_schema(FLIGHTS_SCHEMA)
        stats = fit_preprocessing(schema, rows)
        torch.manual_seed(seed)
        config = {"hidden": [32, 16]}
        model = build_model(architecture, config, input_spec(schema, stats), 1)
        out = Path(outdir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "model.safetensors").write_bytes(state_dict_to_bytes(model))
        spec = {"architecture": architecture, "config": config, "preprocessing": stats}
        (out / "spec.json").write_text(json.dumps(spec, indent=2))
        (out / "schema.json").write_text(json.dumps(FLIGHTS_SCHEMA, indent=2))
        self.stdout.write(f"wrote {out / 'model.safetensors'}, {out / 'spec.json'} and {out / 'schema.json'}")
