"""Writes trainer/tests/fixtures/tensorboard_reference.tfevents with the Python `tensorboard`
package (its protobuf classes and its TFRecord writer), for the byte-for-byte check of
trainer/src/tensorboard.rs (test `tensorboard_events_match_the_python_writer`). Run by hand:

    python3 -m venv /tmp/tbvenv && /tmp/tbvenv/bin/pip install tensorboard
    /tmp/tbvenv/bin/python trainer/tests/tensorboard_fixture.py

The wall times are pinned, so the output is reproducible. The script also reads the file back
with TensorBoard's own event loader and checks the scalars it finds.
"""

import os

from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.record_writer import RecordWriter

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures", "tensorboard_reference.tfevents")

# (wall_time, step, [(tag, value)]) — the same list is in the Rust test.
SCALARS = [
    (1700000000.25, 1, [("train/loss", 3.4657359), ("train/lr", 1e-4)]),
    (1700000001.5, 2, [("train/loss", 2.5), ("train/grad_norm", 0.0)]),
    (1700000002.75, 300, [("eval/i2t_r1", 0.25), ("train/loss", float("nan"))]),
]


def main():
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "wb") as f:
        w = RecordWriter(f)
        w.write(event_pb2.Event(wall_time=1700000000.0, file_version="brain.Event:2").SerializeToString())
        w.write(
            event_pb2.Event(
                wall_time=1700000000.125, step=40, session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START)
            ).SerializeToString()
        )
        for wall, step, values in SCALARS:
            summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=t, simple_value=v) for t, v in values])
            w.write(event_pb2.Event(wall_time=wall, step=step, summary=summary).SerializeToString())
        w.flush()
    # Read back with TensorBoard's loader.
    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader

    events = [event_pb2.Event.FromString(r) for r in RawEventFileLoader(OUT).Load()]
    assert events[0].file_version == "brain.Event:2"
    assert events[1].session_log.status == event_pb2.SessionLog.START and events[1].step == 40
    got = [(e.step, [(v.tag, v.simple_value) for v in e.summary.value]) for e in events[2:]]
    assert [s for s, _ in got] == [1, 2, 300], got
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes, {len(events)} events)")


if __name__ == "__main__":
    main()
