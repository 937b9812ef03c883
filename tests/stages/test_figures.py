"""Heartbeat figures are declared once, by their stage, and everything that reads them reads the declarations.

Before (issue 28): status, metrics, doctor and the replay progress bar each spelled the keys they read, and a
figure a stage renamed silently vanished from all of them.
"""

from __future__ import annotations

import ast
import inspect

import pytest

from edgecount import stages
from edgecount.runtime.figures import COMMON, Figure, declared, details, labelled_values
from edgecount.stages import uplink_sinks
from edgecount.stages.figures import COUNTER, INFERENCE, UPLINK
from edgecount.supervisor.metrics import families, render, samples


def _key_shapes(fn: object) -> list[str]:
    """The keys a ``stats()``/``status()`` method writes, with every formatted part as ``a``."""
    tree = ast.parse(inspect.cleandoc("\n" + inspect.getsource(fn)))  # type: ignore[arg-type]
    keys: list[ast.expr] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            keys += [k for k in node.keys if k is not None]
        elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store):
            keys.append(node.slice)
    out = []
    for k in keys:
        if isinstance(k, ast.Constant) and isinstance(k.value, str):
            out.append(k.value)
        elif isinstance(k, ast.JoinedStr):
            out.append("".join(v.value if isinstance(v, ast.Constant) else "a" for v in k.values))
    return out


@pytest.mark.parametrize("stage", stages.STAGES, ids=lambda s: s.name)
def test_every_figure_a_stage_writes_is_declared(stage: stages.Stage) -> None:
    shapes = _key_shapes(stage.load().stats)
    assert len(shapes) >= 3, "the check must see the keys, or it proves nothing"
    # ``{prefix}line...``: the prefix is ``camera.NAME.`` or nothing.
    undeclared = [k for k in shapes
                  if declared(stage.reported(), k) is None and declared(stage.reported(), k.removeprefix("a")) is None]
    assert undeclared == [], f"{stage.name} reports figures stages/figures.py does not declare: {undeclared}"


def test_every_sink_status_is_declared_by_the_uplink() -> None:
    for name in ("JsonlSink", "MqttSink", "WebhookSink"):
        shapes = _key_shapes(getattr(uplink_sinks, name).status)
        assert shapes and all(declared(stages.stage("uplink").reported(), k) for k in shapes), (name, shapes)


def test_the_check_catches_an_undeclared_figure() -> None:
    class Fake:
        def stats(self) -> dict[str, int]:
            return {"processed": 1, "frames_in_a_new_name": 2}

    shapes = _key_shapes(Fake.stats)
    assert [k for k in shapes if declared(stages.stage("counter").reported(), k) is None] == ["frames_in_a_new_name"]


def test_one_family_has_one_type_and_one_meaning() -> None:
    by_metric: dict[str, set[tuple[str, str]]] = {}
    for figs in stages.figures_by_stage().values():
        for f in figs:
            if f.metric:
                by_metric.setdefault(f.metric, set()).add((f.kind, f.text))
    assert {m: v for m, v in by_metric.items() if len(v) > 1} == {}
    assert all(m.startswith("edgecount_") for m in by_metric)
    assert all(m.endswith("_total") == (k == "counter") for m, v in by_metric.items() for k, _ in v)


def test_keys_with_labels_and_camera_prefixes() -> None:
    stats = {"line.door.1.in": 3, "camera.front.line.door.in": 4, "line.door.1.people_s_since_count": 9.0,
             "delivered.mqtt": 5}
    assert sorted(labelled_values(COUNTER.crossed_in, stats), key=str) == [
        ({"camera": "front", "direction": "in", "line": "door"}, 4.0),
        ({"camera": "main", "direction": "in", "line": "door.1"}, 3.0)]
    assert labelled_values(UPLINK.delivered, stats) == [({"sink": "mqtt"}, 5.0)]
    # A stage total is exported once; its shares per camera are not added to the same family.
    assert labelled_values(INFERENCE.processed, {"processed": 9, "camera.a.processed": 4}) == [({}, 9.0)]
    assert INFERENCE.processed.read({"camera.a.processed": 4}, camera="a") == 4.0
    assert COUNTER.quiet_line.read(stats, line="door.1") == 9.0 and COUNTER.quiet_line.read({}, line="x") == 0.0


def test_latency_is_scaled_to_seconds_and_labelled_by_quantile() -> None:
    figs = stages.figures_by_stage()
    text = render(samples([{"service": "inference", "state": "ok",
                            "stats": {"latency_ms_p50": 25.0, "latency_ms_p95": 40.0, "processed": 3}}], figs), figs)
    assert 'edgecount_inference_latency_seconds{quantile="0.5"} 0.025' in text
    assert 'edgecount_inference_latency_seconds{quantile="0.95"} 0.04' in text
    assert text.count("# TYPE edgecount_inference_latency_seconds gauge") == 1
    assert set(families(figs)) >= {f.metric for f in COMMON if f.metric}


def test_status_shows_what_the_stage_declares_and_highlights_trouble() -> None:
    capture = stages.stage("capture").reported()
    calm = details(capture, {"fps_in": 7.5, "frames_read": 100, "reconnects": 0, "source_down_s": 0.0,
                             "retry_in_s": 0.0, "ring_error": ""})
    assert calm == [("fps in 7.5", False), ("frames 100", False), ("reconnects 0", False)]
    down = details(capture, {"fps_in": 0, "source_down_s": 12.5, "retry_in_s": 4.0, "disk_full_s": 3.0})
    assert ("CAMERA UNAVAILABLE for 12.5 s", True) in down and ("DISK FULL for 3.0 s", True) in down
    assert ("SINK DEGRADED", True) in details(stages.stage("uplink").reported(), {"sink_degraded": True})
    assert details((Figure("x", "x", label="x"),), {}) == []
