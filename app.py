"""The sparkgate Chalice app: registers the blueprints and nothing else."""

from chalice import Chalice

from chalicelib.api import (
    console,
    entrance,
    events,
    files,
    gateway_tokens,
    geo,
    stream,
    tasks,
    token,
    users,
    websocket,
    works,
)
from chalicelib.api.middleware import register_middleware

app = Chalice(app_name="sparkgate", configure_logs=False)
app.experimental_feature_flags.update(["WEBSOCKETS"])
register_middleware(app)
app.api.binary_types.append("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")  # resultsetToExcel
for module in (token, console, users, works, tasks, files, entrance, gateway_tokens, geo, websocket, stream, events):
    app.register_blueprint(module.blueprint)
