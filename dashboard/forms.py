"""The adaptation settings form: rendered by Django (labels, help, current values), submitted by the
page's script as a PATCH to the REST API, which validates it (the same rules as for API clients)."""

from __future__ import annotations

from django import forms

from adaptive.models import Deployment
from adaptive.services.deployments import SETTINGS

HELP = {
    "compensation_enabled": "Off: serve the base score; the memory keeps learning.",
    "memory_kind": "Sketch keeps a constant cost for large memories.",
    "memory_capacity": "Error samples kept; the oldest are evicted.",
    "memory_k": "Neighbours read per prediction (exact memory).",
    "compensation_lambda": "Weight of the error estimate, 0 to 1.",
    "compensation_gamma": "0 to 1: 1 compares neighbours' labels with this score, 0 with their own scores.",
    "compensation_tau": "Softmax temperature of the neighbour weights.",
    "window_events": "Close a window every N labels.",
    "window_minutes": "…or every T minutes.",
    "drift_p_value": "A column's false-alarm rate per window (calibrated on the reference).",
    "drift_distance": "Smallest effect size (shift in std, or JS distance) that counts as drift.",
    "retrain_policy": "Manual flags drift; automatic queues a retrain.",
    "retrain_cooldown_minutes": "Minimum time between automatic retrains.",
    "gate_min_metric_delta": "A candidate must gain at least this AUC.",
    "gate_max_nfr": "Upper bound of the NFR interval a candidate may reach.",
}
STEPS = {
    "compensation_lambda": "0.01",
    "compensation_gamma": "0.01",
    "compensation_tau": "0.001",
    "drift_p_value": "0.001",
    "drift_distance": "0.01",
    "gate_min_metric_delta": "0.001",
    "gate_max_nfr": "0.001",
}


class SettingsForm(forms.ModelForm):
    class Meta:
        model = Deployment
        fields = list(SETTINGS)

    def __init__(self, *args: object, read_only: bool = False, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        for name, field in self.fields.items():
            field.help_text = HELP.get(name, "")
            if name in STEPS:
                field.widget.attrs["step"] = STEPS[name]
            field.widget.attrs["id"] = f"setting-{name}"
            field.widget.attrs["aria-describedby"] = f"setting-{name}-help setting-{name}-error"
            if read_only:
                field.disabled = True
