"""What each stage reports in its heartbeat, declared beside the topology that names the stage.

The stage writes these keys; the supervisor's metrics, ``status``, ``doctor``
and ``replay`` read them through these declarations (:mod:`edgecount.runtime.figures`),
so a key is spelled here and in the stage that fills it, nowhere else. A
heartbeat figure a stage did not declare is left out of its heartbeat.
"""

from __future__ import annotations

from edgecount.runtime.figures import Figure

__all__ = ["CAPTURE", "COUNTER", "INFERENCE", "PRIVACY", "UPLINK"]


class CAPTURE:
    source_down_s = Figure("source_down_s", "how long the camera has been unavailable",
                           label="CAMERA UNAVAILABLE for {} s", alarm=True)
    retry_in_s = Figure("retry_in_s", "when capture opens the source again", label="retry in {} s", alarm=True)
    ring_error = Figure("ring_error", "why capture has no frame ring (it retries)", label="no frame ring: {}",
                        alarm=True)
    fps_in = Figure("fps_in", "frames per second read lately", label="fps in")
    frames_read = Figure("frames_read", "frames capture read from the camera", "edgecount_frames_read_total",
                         "counter", label="frames")
    reconnects = Figure("reconnects", "times the source was opened again after it failed", label="reconnects")
    others = (Figure("published", "frames announced to inference"),
              Figure("resends", "replay frames announced again after a restart downstream"),
              Figure("ended", "the file source reached its end"), Figure("camera", "the camera this capture serves"),
              Figure("capped", "frames dropped to keep under capture.max_fps"),
              Figure("source_fps", "the frame rate the source declares"),
              Figure("in_flight", "replay frames announced and not yet counted"),
              Figure("stale_acks", "acknowledgements of frames this capture never announced (ignored)"))


class INFERENCE:
    model = Figure("model", "the detector model", label="model")
    backend = Figure("backend", "where the detector runs (edgetpu or cpu)", label="on")
    degraded = Figure("degraded", "running on the CPU twin instead of the Edge TPU", label="DEGRADED", alarm=True)
    latency_p50 = Figure("latency_ms_p50", "detector latency over the last frames, by quantile",
                         "edgecount_inference_latency_seconds", scale=0.001, fixed=(("quantile", "0.5"),),
                         label="p50 {} ms")
    latency_p95 = Figure("latency_ms_p95", "detector latency over the last frames, by quantile",
                         "edgecount_inference_latency_seconds", scale=0.001, fixed=(("quantile", "0.95"),))
    processed = Figure("processed", "frames inference ran the detector on", "edgecount_frames_processed_total",
                       "counter", label="processed")
    skipped = Figure("skipped", "frames inference skipped to keep up (live: newest frame wins)",
                     "edgecount_frames_skipped_total", "counter", label="skipped")
    overwritten = Figure("overwritten", "frames overwritten in the ring before inference read them",
                         "edgecount_frames_dropped_total", "counter", label="overwritten")
    others = (Figure("unknown_camera", "frames from a camera not in the configuration"),
              Figure("ring_errors", "frames whose ring slot could not be read"),
              Figure("torn_colours", "colour features dropped because the slot changed while read"),
              Figure("degraded_reason", "why inference runs degraded"))


class COUNTER:
    processed = Figure("processed", "frames the counter tracked and committed", label="frames")
    active_tracks = Figure("active_tracks", "confirmed tracks now", label="tracks")
    events = Figure("events", "crossings and zone changes the counter made durable", "edgecount_events_total",
                    "counter", label="events")
    crossed_in = Figure("line.{line}.in", "people the counter counted crossing a line, per camera, line and "
                        "direction (starts again only when the lines change)", "edgecount_line_crossings_total",
                        "counter", fixed=(("direction", "in"),), each_camera=True)
    crossed_out = Figure("line.{line}.out", crossed_in.text, crossed_in.metric, "counter",
                         fixed=(("direction", "out"),), each_camera=True)
    quiet_line = Figure("line.{line}.people_s_since_count", "person-seconds seen since the line last counted "
                        "(doctor's quiet-line check)")
    occupancy = Figure("zone.{zone}.occupancy", "people in the zone now")
    others = (Figure("last_seq", "the last frame counted"), Figure("tracker_ms", "tracker time per frame"),
              Figure("out_of_order", "frames held back until capture re-announced a gap"),
              Figure("tracklets_joined", "broken tracks the linker joined"),
              Figure("unknown_camera", "detections from a camera not in the configuration"))


class PRIVACY:
    records = Figure("records", "count records made", label="records")
    log_pending = Figure("log_pending", "counter events not yet applied", label="log pending")
    lost = Figure("lost", "events the counter trimmed before privacy applied them (its state was lost)",
                  label="{} events LOST", alarm=True)
    late_events = Figure("late_events", "crossings privacy could not count: their bucket had been sent",
                         "edgecount_late_events_total", "counter")
    clock_steps_back = Figure("clock_steps_back", "backward steps of the wall clock seen in the frame times",
                              "edgecount_clock_steps_back_total", "counter")
    clock_ahead_s = Figure("clock_ahead_s", "how far bucket times run ahead of the clock after a step back",
                           "edgecount_bucket_clock_ahead_seconds")
    stream_gaps = Figure("stream_gaps", "stretches without frames too long to fill with zero rows",
                         "edgecount_stream_gaps_total", "counter")
    stream_gap_s = Figure("stream_gap_s", "stream time in those gaps (no rows: the device did not watch)",
                          "edgecount_stream_gap_seconds_total", "counter")
    others = (Figure("snapshots", "redacted stills taken"), Figure("applied", "counter events applied"),
              Figure("gaps", "holes in the counter's log noticed"), Figure("recovered", "events fetched again"),
              Figure("duplicates", "events seen twice (ignored)"),
              Figure("unknown_camera", "events from a camera not in the configuration"),
              Figure("resets", "times the counter's log started again"))


class UPLINK:
    backlog = Figure("backlog", "records some sink has not confirmed yet", "edgecount_outbox_backlog_records",
                     label="outbox backlog")
    broker_connected = Figure("broker_connected", "the MQTT session is up", label="broker connected")
    sink_degraded = Figure("sink_degraded", "a sink cannot deliver", label="SINK DEGRADED", alarm=True)
    oldest_undelivered_s = Figure("oldest_undelivered_s", "age of the oldest record not yet confirmed",
                                  "edgecount_outbox_oldest_undelivered_age_seconds")
    dropped_records = Figure("dropped_records", "records merged or dropped to bound the outbox",
                             "edgecount_outbox_dropped_records_total", "counter")
    delivered = Figure("delivered.{sink}", "records a sink confirmed (file fsynced, MQTT PUBACK, 2xx)",
                       "edgecount_records_delivered_total", "counter")
    others = (Figure("applied", "privacy records applied"), Figure("recovered", "records fetched again"),
              Figure("lost", "records privacy trimmed before the uplink applied them"),
              Figure("resets", "times privacy's log started again"),
              Figure("jsonl_path", "the JSON-lines file"), Figure("jsonl_rotations", "times the file was rotated"),
              Figure("broker", "the MQTT broker, host:port"), Figure("mqtt_error", "the broker's last refusal"),
              Figure("mqtt_inflight", "publishes awaiting PUBACK"), Figure("mqtt_published", "publishes confirmed"),
              Figure("mqtt_refused", "publishes the broker refused"),
              Figure("mqtt_ack_timeouts", "publishes never acknowledged in time"),
              Figure("webhook_error", "the webhook's last error"))


def declared_by(namespace: type) -> tuple[Figure, ...]:
    """Every figure a stage's namespace declares, in declaration order."""
    out: list[Figure] = []
    for value in vars(namespace).values():
        out += [value] if isinstance(value, Figure) else list(value) if isinstance(value, tuple) else []
    return tuple(out)
