"""The app the crash tests run in a subprocess: every input event produces exactly one output event."""

from eventbus import App, Event

app = App("crash")
app.topic("crash-in", partitions=3)
app.topic("crash-out", partitions=3)


@app.processor("crash-in", to="crash-out")
def transform(event: Event) -> Event:
    return Event("crash.done", {"seq": event.data["seq"]}, partitionkey=str(event.data["seq"] % 17))
