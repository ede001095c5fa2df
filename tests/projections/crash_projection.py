"""The app the projection crash tests run in a subprocess: per key, a running sum and count of numbers."""

from eventbus import App, Event
from eventbus.projections import View

app = App("crashfold")
app.topic("numbers", partitions=3)
totals = app.projection("totals", topics="numbers")


@totals.on("n")
def add(event: Event, view: View) -> None:
    key = event.data["key"]
    row = view.get(key, {"sum": 0, "count": 0})
    row["sum"] += event.data["n"]
    row["count"] += 1
    view[key] = row
